//! Decoding a log file on every core while one thread takes the events in
//! file order (`socctl rules test --replay`).
//!
//! The file is read in batches of whole lines. Each batch gets a slot in a
//! queue kept in file order; decoding threads take the slots in that order,
//! and the calling thread takes the decoded batches from the front and hands
//! them to its callback (the engine). While the front batch is still being
//! decoded, the calling thread decodes the next batch nobody has taken,
//! instead of waiting: no core idles while the engine waits for the
//! decoders, and no more threads run than there are cores.

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use soc_rules::Event;

/// Lines per batch. Small, so that a batch's events (a few KiB each) are
/// still in the cache when the engine reads them and when the decoding
/// thread frees them: at 4,096 lines a batch outgrew the cache, and
/// replaying the bench corpus took 30% more CPU time; at 256 it took 16%
/// more than at 64 (median user time of 9 alternating runs, 7.06 s against
/// 6.06 s), most of it in the allocator reaching for blocks no longer in the
/// cache.
pub(crate) const BATCH_LINES: usize = 64;
/// Batches queued per thread, so that the decoders work ahead of the engine
/// and a thread the scheduler set aside for a moment leaves nobody waiting.
const IN_FLIGHT: usize = 4;

/// Decodes the lines of `reader` with `decode` (given the id of a batch's
/// first line, ids counting from 1, and the batch) on `threads` threads in
/// all, the calling thread included, and calls `each` on the calling thread
/// with every batch's events and the batch, in file order. Stops at the
/// first error of `each` or of reading.
pub(crate) fn decode_in_order<R, D, E>(
    reader: R,
    threads: usize,
    decode: &D,
    mut each: E,
) -> anyhow::Result<()>
where
    R: BufRead,
    D: Fn(u64, &Batch) -> Vec<Event> + Sync,
    E: FnMut(&[Event], &Batch) -> anyhow::Result<()>,
{
    let helpers = threads.max(1) - 1;
    let mut batches = Batches { reader, next_id: 1 };
    // Slots go to the helpers through one queue, in file order.
    let (to_helpers, from_main) = sync_channel::<Arc<Slot>>((helpers + 1) * IN_FLIGHT);
    let from_main = Mutex::new(from_main);
    std::thread::scope(|s| -> anyhow::Result<()> {
        // The events each helper decoded come back to it to be freed:
        // memory is cheapest freed by the thread that allocated it.
        let mut garbage = Vec::new();
        for who in 0..helpers {
            let (tx, rx) = sync_channel::<Vec<Event>>(IN_FLIGHT);
            garbage.push(tx);
            let from_main = &from_main;
            std::thread::Builder::new()
                .name("decode".into())
                .spawn_scoped(s, move || helper(who, from_main, &rx, decode))
                .context("starting a decoding thread")?;
        }
        let result = run(
            &mut batches,
            &to_helpers,
            &garbage,
            helpers,
            decode,
            &mut each,
        );
        // Closing the queue ends the helpers; the scope waits for them.
        drop(to_helpers);
        result
    })
}

/// The calling thread's part of [`decode_in_order`].
fn run<R, D, E>(
    batches: &mut Batches<R>,
    to_helpers: &SyncSender<Arc<Slot>>,
    garbage: &[SyncSender<Vec<Event>>],
    helpers: usize,
    decode: &D,
    each: &mut E,
) -> anyhow::Result<()>
where
    R: BufRead,
    D: Fn(u64, &Batch) -> Vec<Event> + Sync,
    E: FnMut(&[Event], &Batch) -> anyhow::Result<()>,
{
    let mut queue: VecDeque<Arc<Slot>> = VecDeque::new();
    let mut spare: Vec<Batch> = Vec::new();
    loop {
        while queue.len() < (helpers + 1) * IN_FLIGHT {
            let buf = spare.pop().unwrap_or_else(|| Batch {
                bytes: Vec::with_capacity(BATCH_LINES * 256),
                ends: Vec::with_capacity(BATCH_LINES),
            });
            let Some((first_id, lines)) = batches.next_batch(buf)? else {
                break;
            };
            let slot = Arc::new(Slot {
                first_id,
                state: Mutex::new(State::Waiting(lines)),
                done: Condvar::new(),
                waited: AtomicBool::new(false),
            });
            if helpers > 0 {
                // Full: the helpers have enough to do; this batch is left to
                // the calling thread. (Closed cannot happen: the receiving
                // end lives as long as the scope.)
                let _ = to_helpers.try_send(slot.clone());
            }
            queue.push_back(slot);
        }
        let Some(front) = queue.pop_front() else {
            return Ok(());
        };
        let (events, lines, by) = loop {
            if let Some(done) = front.take_done()? {
                break done;
            }
            // Decode the next batch nobody has taken rather than wait; the
            // front itself when no helper took it yet.
            let free = std::iter::once(&front)
                .chain(queue.iter())
                .find_map(|slot| slot.take_waiting().map(|lines| (slot, lines)));
            match free {
                Some((slot, lines)) => {
                    let events = decode(slot.first_id, &lines);
                    slot.finish(State::Done((events, lines, None)));
                }
                None => front.wait(),
            }
        };
        each(&events, &lines)?;
        spare.push(lines);
        if let Some(who) = by {
            // A full or closed return queue: dropped (freed) here instead.
            let _ = garbage[who].try_send(events);
        }
    }
}

/// A decoding thread: decodes the slots nobody took yet, in queue order.
fn helper<D>(
    who: usize,
    from_main: &Mutex<Receiver<Arc<Slot>>>,
    garbage: &Receiver<Vec<Event>>,
    decode: &D,
) where
    D: Fn(u64, &Batch) -> Vec<Event> + Sync,
{
    loop {
        let slot = match lock(from_main).recv() {
            Ok(slot) => slot,
            Err(_) => return,
        };
        garbage.try_iter().for_each(drop);
        let Some(lines) = slot.take_waiting() else {
            // The calling thread took it.
            continue;
        };
        // A panic must not leave the calling thread waiting on this slot.
        let events = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decode(slot.first_id, &lines)
        }));
        match events {
            Ok(events) => slot.finish(State::Done((events, lines, Some(who)))),
            Err(_) => {
                slot.finish(State::Failed);
                return;
            }
        }
    }
}

/// One batch on its way through the decoders.
struct Slot {
    first_id: u64,
    state: Mutex<State>,
    /// Signalled when the state becomes `Done` or `Failed`, if a thread
    /// waits for it.
    done: Condvar,
    /// A thread waits on `done`. Read and written with `state` locked, so
    /// that a wait cannot miss the signal; most batches are done before
    /// anyone waits, and a signal nobody waits for is still a system call
    /// (one per batch: 15,600 for a million lines).
    waited: AtomicBool,
}

/// A decoded batch: its events, the batch (its buffers to be used again)
/// and the helper that decoded it (`None`: the calling thread).
type Decoded = (Vec<Event>, Batch, Option<usize>);

enum State {
    /// Read, not yet taken by a thread.
    Waiting(Batch),
    /// Being decoded.
    Taken,
    /// Decoded.
    Done(Decoded),
    /// The decoding thread panicked.
    Failed,
}

impl Slot {
    /// The lines, when no thread has taken them yet; taken.
    fn take_waiting(&self) -> Option<Batch> {
        let mut state = lock(&self.state);
        if !matches!(*state, State::Waiting(_)) {
            return None;
        }
        match std::mem::replace(&mut *state, State::Taken) {
            State::Waiting(lines) => Some(lines),
            _ => None,
        }
    }

    /// The decoded batch, when it is done; taken.
    fn take_done(&self) -> anyhow::Result<Option<Decoded>> {
        let mut state = lock(&self.state);
        match &*state {
            State::Done(_) => match std::mem::replace(&mut *state, State::Taken) {
                State::Done(decoded) => Ok(Some(decoded)),
                _ => Ok(None),
            },
            State::Failed => anyhow::bail!("a decoding thread failed (panicked)"),
            State::Waiting(_) | State::Taken => Ok(None),
        }
    }

    fn finish(&self, state: State) {
        let mut locked = lock(&self.state);
        *locked = state;
        let waited = self.waited.load(Ordering::Relaxed);
        drop(locked);
        if waited {
            self.done.notify_all();
        }
    }

    /// Waits until the thread that took this batch has finished with it.
    fn wait(&self) {
        let mut state = lock(&self.state);
        while matches!(*state, State::Taken) {
            self.waited.store(true, Ordering::Relaxed);
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A lock whose holder never leaves its data half-changed: a panic while
/// holding it (none is expected) does not make the data unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A file read in batches of whole lines, numbered from 1.
struct Batches<R> {
    reader: R,
    next_id: u64,
}

impl<R: BufRead> Batches<R> {
    /// (id of its first line, up to [`BATCH_LINES`] lines with their
    /// newlines), read into `batch` (emptied first: a batch's buffers are
    /// used again for a later batch); `None` at the end.
    fn next_batch(&mut self, mut batch: Batch) -> anyhow::Result<Option<(u64, Batch)>> {
        let Batch { bytes: buf, ends } = &mut batch;
        buf.clear();
        ends.clear();
        let mut lines = 0;
        // Line ends are found with `memchr`'s vector search, where
        // `read_until` looks for them a word at a time (with the byte by
        // byte split of the batch it replaces, 750 instructions a line of
        // the bench corpus).
        while lines < BATCH_LINES {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                if buf.last().is_some_and(|b| *b != b'\n') {
                    // The last line has no newline: give it one so that
                    // the batch splits into whole lines.
                    buf.push(b'\n');
                    ends.push(buf.len());
                    lines += 1;
                }
                break;
            }
            let mut taken = 0;
            for end in memchr::memchr_iter(b'\n', available) {
                taken = end + 1;
                ends.push(buf.len() + taken);
                lines += 1;
                if lines == BATCH_LINES {
                    break;
                }
            }
            if taken == 0 {
                // No line ends in what is buffered: take it all, the line
                // goes on in the next read.
                taken = available.len();
            }
            buf.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
        }
        if lines == 0 {
            return Ok(None);
        }
        let first = self.next_id;
        self.next_id += lines as u64;
        Ok(Some((first, batch)))
    }
}

/// Whole lines read from a file, each with its newline, and where each
/// ends: the lines are found once, when they are read, and not again by
/// the thread that decodes them nor by the one that shows their alerts.
pub(crate) struct Batch {
    bytes: Vec<u8>,
    /// The end of each line in `bytes` (after its newline), in order.
    ends: Vec<usize>,
}

impl Batch {
    /// The lines, each with its newline.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.bytes[start..end];
            start = end;
            line
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event per line, carrying the line's id and its text.
    fn decode(first_id: u64, batch: &Batch) -> Vec<Event> {
        batch
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
                let fields = serde_json::from_value(serde_json::json!({ "message": text }))
                    .unwrap_or_default();
                Event {
                    id: first_id + i as u64,
                    timestamp_ms: 0,
                    fields,
                }
            })
            .collect()
    }

    fn text(lines: usize, last_newline: bool) -> String {
        let mut t: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
        if !last_newline {
            t.pop();
        }
        t
    }

    /// (id, message) of every event, in the order `each` saw them.
    fn run(input: &str, threads: usize) -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        decode_in_order(input.as_bytes(), threads, &decode, |events, batch| {
            // The batch's lines come with its events, one for one.
            let texts: Vec<&[u8]> = batch.lines().collect();
            assert_eq!(texts.len(), events.len());
            for (ev, line) in events.iter().zip(texts) {
                let msg = ev.get_str("message").unwrap_or_default().to_string();
                assert_eq!(line.strip_suffix(b"\n").unwrap_or(line), msg.as_bytes());
                seen.push((ev.id, msg));
            }
            Ok(())
        })
        .expect("replays");
        seen
    }

    #[test]
    fn every_line_comes_back_once_in_file_order_on_any_number_of_threads() {
        // Several batches, a partial last one, and a last line without a
        // newline.
        let lines = BATCH_LINES * 37 + 5;
        let input = text(lines, false);
        let want: Vec<(u64, String)> = (1..=lines as u64)
            .map(|i| (i, format!("line {i}")))
            .collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(run(&input, threads), want, "{threads} thread(s)");
        }
        assert!(run("", 2).is_empty());
        assert_eq!(run("only\n", 2), vec![(1, "only".to_string())]);
    }

    #[test]
    fn lines_longer_than_the_read_buffer_and_batches_cut_inside_a_read_are_whole() {
        // Lines of 0 to 40 bytes (empty ones, `\r\n` ends), read through a
        // 7-byte buffer (most lines span reads) and a 64-byte one (most
        // reads hold the ends of several lines, so batches end inside a
        // read).
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut input = String::new();
        let mut want = Vec::new();
        for i in 1..=(BATCH_LINES * 5 + 3) as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text: String = "abcdefghij".repeat(4)[..(x % 41) as usize].to_string();
            let end = if x.is_multiple_of(5) { "\r\n" } else { "\n" };
            input.push_str(&text);
            input.push_str(end);
            want.push((i, format!("{text}{}", end.trim_end_matches('\n'))));
        }
        input.push_str("no newline");
        want.push((want.len() as u64 + 1, "no newline".to_string()));
        for capacity in [7, 64] {
            let mut batches = 0;
            let mut seen = Vec::new();
            let reader = std::io::BufReader::with_capacity(capacity, input.as_bytes());
            decode_in_order(reader, 2, &decode, |events, _| {
                batches += 1;
                assert!(events.len() <= BATCH_LINES, "{capacity}-byte reads");
                for ev in events {
                    let msg = ev.get_str("message").unwrap_or_default().to_string();
                    seen.push((ev.id, msg));
                }
                Ok(())
            })
            .expect("replays");
            assert_eq!(seen, want, "{capacity}-byte reads");
            assert_eq!(batches, want.len().div_ceil(BATCH_LINES));
        }
        let mut batches = Batches {
            reader: &b"a\n\nb"[..],
            next_id: 1,
        };
        let empty = Batch {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        let (first, batch) = batches.next_batch(empty).expect("reads").expect("a batch");
        assert_eq!(first, 1);
        assert_eq!(
            batch.lines().collect::<Vec<_>>(),
            [&b"a\n"[..], b"\n", b"b\n"]
        );
    }

    #[test]
    fn an_error_of_the_callback_stops_the_run_and_is_returned() {
        let input = text(BATCH_LINES * 50, true);
        let mut calls = 0;
        let err = decode_in_order(input.as_bytes(), 2, &decode, |_, _| {
            calls += 1;
            if calls == 3 {
                anyhow::bail!("the engine said no");
            }
            Ok(())
        })
        .expect_err("stops");
        assert_eq!(err.to_string(), "the engine said no");
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_decoder_that_panics_on_a_helper_fails_the_run_instead_of_hanging_it() {
        let input = text(BATCH_LINES * 50, true);
        let main = std::thread::current().id();
        let helper_started = std::sync::atomic::AtomicBool::new(false);
        // Panics on whichever batch the helper thread takes. The calling
        // thread decodes normally, once the helper has taken one (or after
        // ten seconds, and the test fails): it could otherwise decode every
        // batch itself before the helper was ever scheduled.
        let decode = |first_id: u64, batch: &Batch| {
            if std::thread::current().id() != main {
                helper_started.store(true, std::sync::atomic::Ordering::SeqCst);
                panic!("decoder bug");
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !helper_started.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                std::thread::yield_now();
            }
            decode(first_id, batch)
        };
        let result = decode_in_order(input.as_bytes(), 2, &decode, |_, _| Ok(()));
        let err = result.expect_err("a helper's batch cannot be decoded");
        assert!(err.to_string().contains("panicked"), "{err}");
    }
}
