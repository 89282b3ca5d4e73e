//! Reading lines into the batch: fair turns, rate limits, truncation.
//!
//! Files take turns of at most [`TURN_LINES`] lines, round after round,
//! until the batch is full or no file has anything left; the next fill
//! starts with the file after the last one served. So a huge backlog in one
//! file cannot keep another file's lines out of the next batches. A source
//! with `max_lines_per_second` reads no more than its token bucket allows;
//! the rest waits in the file, not in memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use soc_protocol::Record;

use crate::batch::{Building, Mark, Pending};
use crate::identity::{self, FileId, Ident};
use crate::tail::{Format, Stop, Tail};

use super::Files;

/// Most lines one file gives per turn.
pub const TURN_LINES: usize = 64;

impl Files {
    /// Reads lines into `batch` until it is full or every file is at its
    /// end (or at its source's rate limit), taking files in turns.
    pub fn fill(&mut self, batch: &mut Building, now: Instant) {
        let initial: Vec<Option<usize>> = self
            .buckets
            .iter_mut()
            .map(|b| b.as_mut().map(|b| b.available(now)))
            .collect();
        let mut budget = initial.clone();
        loop {
            let ids: Vec<FileId> = match self.cursor {
                Some(c) => self
                    .watched
                    .range(c..)
                    .chain(self.watched.range(..c))
                    .map(|(id, _)| *id)
                    .collect(),
                None => self.watched.keys().copied().collect(),
            };
            let mut progressed = false;
            for (i, id) in ids.iter().enumerate() {
                if !batch.has_room() {
                    self.cursor = Some(*id);
                    self.spend(&initial, &budget);
                    return;
                }
                let Some(si) = self.watched.get(id).map(|w| w.source) else {
                    continue;
                };
                let quota = budget[si].map_or(TURN_LINES, |b| b.min(TURN_LINES));
                if quota == 0 {
                    continue;
                }
                let n = self.fill_one(*id, batch, now, quota);
                if let Some(b) = budget[si].as_mut() {
                    *b -= n.min(*b);
                }
                progressed |= n > 0;
                self.cursor = ids.get(i + 1).copied();
            }
            self.cursor = None;
            if !progressed {
                break;
            }
        }
        self.spend(&initial, &budget);
    }

    /// Takes what was read from the token buckets.
    fn spend(&mut self, initial: &[Option<usize>], left: &[Option<usize>]) {
        for ((b, had), left) in self.buckets.iter_mut().zip(initial).zip(left) {
            if let (Some(b), Some(had), Some(left)) = (b.as_mut(), had, left) {
                b.take(had.saturating_sub(*left));
            }
        }
    }

    /// Reads at most `quota` lines of one file; returns how many.
    fn fill_one(&mut self, id: FileId, batch: &mut Building, now: Instant, quota: usize) -> usize {
        let Some(w) = self.watched.get_mut(&id) else {
            return 0;
        };
        let (len, mtime) = match w.file.metadata() {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %w.path.display(), error = %e, "Cannot stat open file.");
                return 0;
            }
        };
        if len != w.len {
            w.len = len;
            w.changed_at = now;
        }
        if len != w.checked_len || mtime != w.checked_mtime || w.first_line_pending {
            w.checked_len = len;
            w.checked_mtime = mtime;
            match self.check_truncated(id, len) {
                Some(new_id) => return self.fill_one_checked(new_id, batch, now, quota),
                None => return 0,
            }
        }
        self.fill_one_checked(id, batch, now, quota)
    }

    /// Whether the file still holds what was read from it; restarts it as
    /// a new generation when not. Returns the identity to read it under,
    /// `None` when it cannot be read now.
    pub(super) fn check_truncated(&mut self, id: FileId, len: u64) -> Option<FileId> {
        let w = self.watched.get_mut(&id)?;
        let offset = w.tail.offset();
        let ident = identity::identify(&w.file);
        if w.first_line_pending {
            return match ident {
                Ok(Ident::Text(new_id, sniffed)) => {
                    let fmt = Format {
                        encoding: sniffed.encoding,
                        bom_len: sniffed.bom_len,
                        ..w.tail.format()
                    };
                    w.tail = Tail::new(0, fmt);
                    w.first_line_pending = false;
                    Some(self.rekey(id, new_id))
                }
                _ => None,
            };
        }
        let shrunk = len < offset;
        // Nothing read of it yet, only another first line tells: it was
        // truncated and written again since it was taken under this one.
        let rewritten = !shrunk
            && if offset > w.tail.format().bom_len {
                rewritten_before(&w.file, &id, &ident, w.read_guard, offset)
            } else {
                matches!(&ident, Ok(Ident::Text(now, _)) if now.first_line != id.first_line)
            };
        if !shrunk && !rewritten {
            return Some(id);
        }
        // Truncated in place (copytruncate, `: > file`): what it holds now
        // is a new stream from offset 0.
        self.stats.truncations.fetch_add(1, Ordering::Relaxed);
        let (stream, acked, si) = (w.stream.clone(), w.acked, w.source);
        let check = w.read_guard.map(|g| (offset, g));
        w.generation += 1;
        w.tracking = {
            self.next_tracking += 1;
            self.next_tracking
        };
        w.acked = 0;
        w.acked_guard = None;
        w.read_guard = None;
        let marks = std::mem::take(&mut w.marks);
        let src = self.sources[si].name.clone();
        tracing::warn!(source = %src, path = %w.path.display(), len, offset, stream = %stream, "File was truncated in place; reading it from the start as a new stream.");
        let new_id = match ident {
            Ok(Ident::Text(new_id, sniffed)) => {
                let fmt = Format {
                    encoding: sniffed.encoding,
                    bom_len: sniffed.bom_len,
                    ..w.tail.format()
                };
                w.tail = Tail::new(0, fmt);
                Some(new_id)
            }
            _ => {
                w.tail = Tail::new(0, w.tail.format());
                w.first_line_pending = true;
                None
            }
        };
        self.retire(&stream, &src, id.first_line, acked, check, marks);
        match new_id {
            Some(new_id) => Some(self.rekey(id, new_id)),
            None => {
                let stream = self.checkpoints.new_stream(&id.to_string());
                if let Some(w) = self.watched.get_mut(&id) {
                    w.stream = stream;
                }
                self.store(&id);
                None
            }
        }
    }

    /// Moves a watched file to its new identity (after a truncation) and
    /// names its stream after it.
    fn rekey(&mut self, old: FileId, new: FileId) -> FileId {
        let Some(mut w) = self.watched.remove(&old) else {
            return old;
        };
        self.checkpoints.remove(&old.to_string());
        w.stream = self.checkpoints.new_stream(&new.to_string());
        if self.cursor == Some(old) {
            self.cursor = None;
        }
        self.by_dev_ino.insert(new.dev_ino, new);
        self.watched.insert(new, w);
        self.store(&new);
        new
    }

    pub(super) fn fill_one_checked(
        &mut self,
        id: FileId,
        batch: &mut Building,
        now: Instant,
        quota: usize,
    ) -> usize {
        let Some(w) = self.watched.get_mut(&id) else {
            return 0;
        };
        let len = w.len;
        let src = &self.sources[w.source];
        let read_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // One copy of each per turn, shared by the lines it reads.
        let path: Arc<str> = w.path.to_string_lossy().into();
        let stream: Arc<str> = w.stream.as_str().into();
        let source: Arc<str> = src.name.as_str().into();
        let source_type: Arc<str> = src.source_type.as_str().into();
        let tracking = w.tracking;
        let (mut truncated_lines, mut pieces, mut count) = (0u64, 0u64, 0usize);
        let mut last_guard = None;
        let batch_before = batch.len();
        let mut emit = |line: crate::tail::Line| {
            let mut record = Record {
                stream: stream.clone(),
                source: source.clone(),
                source_type: source_type.clone(),
                path: path.clone(),
                offset: line.offset,
                read_time_ms,
                line: None,
                line_b64: None,
                truncated: line.truncated,
            };
            record.set_raw(&line.bytes);
            if line.piece {
                pieces += 1;
            } else {
                truncated_lines += u64::from(line.truncated);
            }
            count += 1;
            last_guard = Some((line.next, line.guard));
            batch.push(Pending {
                record,
                mark: Mark {
                    file: id,
                    tracking,
                    next: line.next,
                    len: line.bytes.len(),
                    read_at: now,
                    guard: line.guard,
                },
            });
            batch.has_room() && count < quota
        };
        let tail_before = w.tail.clone();
        let mut result = w.tail.poll(&w.file, &mut self.scratch, &mut emit);
        // A rotated-away file that stayed unchanged: its last line will
        // never get a newline, so send it as it is.
        if matches!(result, Ok(Stop::Eof))
            && (w.orphan || w.rotated)
            && w.tail.has_partial(len)
            && now.duration_since(w.changed_at) >= src.rotate_wait
        {
            result = w.tail.finish(&w.file).map(|line| {
                if let Some(line) = line {
                    emit(line);
                }
                Stop::Eof
            });
        }
        // The check in `fill_one` and this read are not one step: logrotate
        // may truncate the file in between (copytruncate) and the writer
        // fill it again past the point read. What was read would then be
        // the new text under the old stream's offsets, and the copy's lines
        // at those offsets would be dropped by the collector as re-sent.
        // The file's first line and the bytes before the point read tell:
        // when they changed, this read does not count, and the next turn
        // handles the truncation.
        if last_guard.is_some()
            && !w.first_line_pending
            && rewritten_before(
                &w.file,
                &id,
                &identity::identify(&w.file),
                w.read_guard,
                tail_before.offset(),
            )
        {
            batch.truncate(batch_before);
            w.tail = tail_before;
            w.checked_len = u64::MAX;
            tracing::info!(source = %src.name, path = %w.path.display(), "File was truncated while being read; that read is dropped and the file checked again.");
            return 0;
        }
        if let Some((next, g)) = last_guard {
            w.read_guard = Some(g);
            w.marks.push(next, g);
        }
        let read_any = last_guard.is_some();
        self.stats.lines_split.fetch_add(pieces, Ordering::Relaxed);
        if truncated_lines > 0 {
            self.stats
                .lines_truncated
                .fetch_add(truncated_lines, Ordering::Relaxed);
            if !w.warned_truncated {
                w.warned_truncated = true;
                tracing::warn!(source = %src.name, path = %w.path.display(), max_line_bytes = src.max_line_bytes, "Lines longer than max_line_bytes were cut (further cuts in this file are only counted).");
            }
        }
        if let Err(e) = result {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %src.name, path = %w.path.display(), error = %e, "Cannot read file; will try again.");
        }
        if read_any {
            // The read point goes into the checkpoint too.
            self.store(&id);
        }
        count
    }
}

/// Whether `file` no longer holds what was read of it up to `offset`: it
/// starts with another line than the one `id` was taken from (`ident` is
/// what it starts with now), or holds no whole first line, or the bytes
/// `guard` covers just before `offset` changed. Unreadable now, it is taken
/// to hold them still; the next check says what happened.
fn rewritten_before(
    file: &std::fs::File,
    id: &FileId,
    ident: &std::io::Result<Ident>,
    guard: Option<identity::Guard>,
    offset: u64,
) -> bool {
    let first_changed = match ident {
        Ok(Ident::Text(now, _)) => now.first_line != id.first_line,
        Ok(Ident::Incomplete | Ident::Compressed) => true,
        Err(_) => false,
    };
    first_changed || guard.is_some_and(|g| !g.holds(file, offset).unwrap_or(true))
}
