//! The durable journal: every accepted line, in arrival order, under a
//! gap-free sequence number.
//!
//! Appends are serialised by one writer lock, so sequence numbers are handed
//! out in commit order and the detection worker, reading in key order, can
//! never skip an entry that commits late. Each batch is written in one sled
//! transaction together with its de-duplication marks and the agent's
//! counters, then flushed before the caller acknowledges it: a batch is either
//! wholly durable and counted or not there at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use tokio::sync::{Mutex, Notify};

use crate::auth::AgentRecord;
use crate::db::{Db, DbError};

/// Format tag of a value holding one entry (written by format-1 databases).
const ENTRY_FORMAT: u8 = 1;
/// Format tag of a value holding a segment: consecutive entries whose first
/// sequence number is the key. Layout: tag, entry count (u32 LE), postcard
/// list of entries. One sled insert per segment instead of one per line is
/// what makes appends cheap. Read, no longer written.
const SEGMENT_FORMAT: u8 = 2;
/// Format tag of a compressed segment, the one written: tag, entry count
/// (u32 LE), length of the postcard list (u32 LE), the list compressed as
/// one zstd frame. Log lines compress four to six times: the journal
/// writes and stores that much less, and a batch takes that many fewer
/// sled inserts.
const ZSTD_SEGMENT_FORMAT: u8 = 3;
/// zstd level of segments: the fastest, as appends wait for it.
const SEGMENT_ZSTD_LEVEL: i32 = 1;
/// Most entries in one segment.
const SEGMENT_MAX_ENTRIES: usize = 1000;
/// Most bytes in one segment before compression, estimated before encoding
/// (a segment may pass it by one entry). Compressed, a segment of log lines
/// stays near 6 KiB, which is the value size kept on purpose: sled 0.34
/// holds large values in memory whatever its cache capacity. Measured with
/// 2 GiB written, one insert per value: 4 KiB and 8 KiB values stay near 60
/// and 78 MiB of resident memory, 16 KiB values reach 124 MiB after 1 GiB
/// and 1 MiB values keep all of it resident (1 GiB after 1 GiB).
const SEGMENT_MAX_BYTES: usize = 32 * 1024;
/// Largest decompressed segment read back: one entry over
/// [`SEGMENT_MAX_BYTES`] with the longest line an agent may send, with room
/// to spare. A corrupt length cannot make a read allocate more.
const SEGMENT_MAX_DECODED: usize = 16 * 1024 * 1024;

/// Roughly how many bytes an entry takes in a segment.
fn encoded_size(e: &JournalEntry) -> usize {
    let labels: usize = e.labels.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    e.raw.len()
        + e.agent.len()
        + e.stream.len()
        + e.source.len()
        + e.source_type.len()
        + e.path.len()
        + labels
        + 40
}

/// One journalled line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The agent that sent it.
    pub agent: String,
    /// File identity on the agent.
    pub stream: String,
    /// Configured source name on the agent.
    pub source: String,
    /// Decoder hint.
    pub source_type: String,
    /// Path of the file on the agent.
    pub path: String,
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// When the agent read it (ms since epoch).
    pub read_time_ms: i64,
    /// When the collector received it (ms since epoch).
    pub received_ms: i64,
    /// The line, byte-exact.
    #[serde(with = "raw_bytes")]
    pub raw: Vec<u8>,
    /// The agent cut the line at its length limit.
    pub truncated: bool,
    /// The agent's labels (agency, level, district, ...).
    pub labels: BTreeMap<String, String>,
}

impl JournalEntry {}

/// A line's bytes as one byte string rather than a sequence of numbers: the
/// same bytes on the wire in postcard (a length, then the bytes), but read
/// in one copy instead of one call per byte, which was a tenth of the
/// detection thread's time. Sequences are still read (JSON gives one).
mod raw_bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(raw)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(Bytes)
    }

    struct Bytes;

    impl<'de> de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the bytes of a line")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The hint comes from the input: trust it only so far.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// Encodes consecutive entries as one compressed segment value.
fn encode_segment(entries: &[&JournalEntry]) -> Result<Vec<u8>, String> {
    let list = postcard::to_stdvec(entries).map_err(|e| e.to_string())?;
    let packed = zstd::bulk::compress(&list, SEGMENT_ZSTD_LEVEL).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(9 + packed.len());
    out.push(ZSTD_SEGMENT_FORMAT);
    out.extend((entries.len() as u32).to_le_bytes());
    out.extend((list.len() as u32).to_le_bytes());
    out.extend(packed);
    Ok(out)
}

/// The little-endian u32 at `at` in `v`.
fn u32_at(v: &[u8], at: usize) -> Option<u32> {
    v.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
}

/// How many entries a stored value holds (0 when its header is unreadable).
fn value_len(v: &[u8]) -> u64 {
    match v.first() {
        Some(&ENTRY_FORMAT) => 1,
        Some(&SEGMENT_FORMAT | &ZSTD_SEGMENT_FORMAT) => u32_at(v, 1).map_or(0, u64::from),
        _ => 0,
    }
}

/// Decodes a stored value (one entry or a segment) whose first sequence
/// number is `first`. A value that cannot be decoded yields an error for
/// each entry it claims to hold, so sequence numbers stay accounted for.
fn decode_value(first: u64, v: &[u8]) -> Vec<(u64, EntryResult)> {
    let fail = |reason: String| -> Vec<(u64, EntryResult)> {
        (0..value_len(v).max(1))
            .map(|i| (first + i, Err(reason.clone())))
            .collect()
    };
    let segment = |list: &[u8]| match postcard::from_bytes::<Vec<JournalEntry>>(list) {
        Ok(list) if list.len() as u64 == value_len(v) => {
            (first..).zip(list).map(|(seq, e)| (seq, Ok(e))).collect()
        }
        Ok(list) => fail(format!(
            "segment claims {} entries but holds {}",
            value_len(v),
            list.len()
        )),
        Err(e) => fail(e.to_string()),
    };
    match v.split_first() {
        Some((&ENTRY_FORMAT, rest)) => {
            vec![(first, postcard::from_bytes(rest).map_err(|e| e.to_string()))]
        }
        Some((&SEGMENT_FORMAT, rest)) if rest.len() >= 4 => segment(&rest[4..]),
        Some((&ZSTD_SEGMENT_FORMAT, rest)) if rest.len() >= 8 => {
            let len = u32_at(v, 5).map_or(usize::MAX, |n| n as usize);
            if len > SEGMENT_MAX_DECODED {
                return fail(format!(
                    "segment claims {len} bytes, over the limit of {SEGMENT_MAX_DECODED}"
                ));
            }
            match zstd::bulk::decompress(&rest[8..], len) {
                Ok(list) if list.len() == len => segment(&list),
                Ok(list) => fail(format!(
                    "segment claims {len} bytes but holds {}",
                    list.len()
                )),
                Err(e) => fail(format!("segment does not decompress: {e}")),
            }
        }
        Some((tag, _)) => fail(format!("unknown entry format {tag}")),
        None => fail("empty value".into()),
    }
}

/// A journal entry, or why it could not be read.
pub type EntryResult = Result<JournalEntry, String>;

/// Stored values decoded for [`Journal::get_cached`]: the most recently
/// added first, at most [`SegmentCache::MAX`] of them (a segment decodes
/// to at most `SEGMENT_MAX_DECODED` bytes), the oldest dropped to make
/// room. Meant to live for one batch of lookups: it does not see later
/// changes to the journal.
#[derive(Debug, Default)]
pub struct SegmentCache(std::collections::VecDeque<CachedValue>);

/// A cached stored value: its first sequence number, how many entries it
/// holds, and those entries decoded.
type CachedValue = (u64, u64, Vec<(u64, EntryResult)>);

impl SegmentCache {
    /// The most values kept.
    pub const MAX: usize = 4;

    /// Which cached value holds `seq`.
    fn position(&self, seq: u64) -> Option<usize> {
        self.0
            .iter()
            .position(|(first, len, _)| seq >= *first && seq < first + (*len).max(1))
    }

    /// Caches the decoded value that starts at `first`, first in line.
    fn add(&mut self, first: u64, len: u64, entries: Vec<(u64, EntryResult)>) {
        if self.0.len() >= Self::MAX {
            self.0.pop_back();
        }
        self.0.push_front((first, len, entries));
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    /// Entries newly written.
    pub accepted: u64,
    /// Entries dropped because the journal already had them.
    pub duplicates: u64,
}

/// The journal and its single writer.
pub struct Journal {
    db: Db,
    /// Next sequence number; the lock is the writer's.
    next_seq: Mutex<u64>,
    /// Woken after every durable append.
    appended: Arc<Notify>,
    /// Copy of `next_seq - 1` readable without the lock.
    last_written: std::sync::atomic::AtomicU64,
}

fn key_seq(k: &[u8]) -> Result<u64, DbError> {
    crate::db::be_u64(k).ok_or_else(|| DbError::Corrupt {
        key: "journal key".into(),
        reason: "not 8 bytes".into(),
    })
}

fn dedup_key(agent: &str, stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent.len() + stream.len() + 1);
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(stream.as_bytes());
    k
}

impl Journal {
    /// Opens the journal, resuming the sequence after its last entry.
    pub fn open(db: Db) -> Result<Journal, DbError> {
        let next = match db.journal.last()? {
            Some((k, v)) => crate::db::be_u64(&k).unwrap_or(0) + value_len(&v).max(1),
            None => 1,
        };
        // A restore may have moved the numbering past the entries held.
        let next = next.max(db.meta_u64(crate::db::meta_keys::JOURNAL_NEXT_FLOOR)?);
        Ok(Journal {
            db,
            last_written: std::sync::atomic::AtomicU64::new(next - 1),
            next_seq: Mutex::new(next),
            appended: Arc::new(Notify::new()),
        })
    }

    /// A handle woken after each append.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Runs `f` with the writer lock held and the next sequence number;
    /// `f` returns the new next number (never lowered). For a restore, which
    /// must number new lines after its cursor; call it off the async runtime.
    pub fn with_next_seq_blocking<T>(&self, f: impl FnOnce(u64) -> (u64, T)) -> T {
        let mut next = self.next_seq.blocking_lock();
        let (new, out) = f(*next);
        if new > *next {
            *next = new;
            self.last_written
                .store(new - 1, std::sync::atomic::Ordering::Release);
        }
        out
    }

    /// Highest sequence number written so far (0 when empty).
    pub async fn last_seq(&self) -> u64 {
        *self.next_seq.lock().await - 1
    }

    /// Highest sequence number written so far, without waiting for the
    /// writer (may lag an append in progress by one batch).
    pub fn last_seq_now(&self) -> u64 {
        self.last_written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Appends entries from one agent, dropping those whose (agent, stream,
    /// offset) the journal already holds, and returns once they are durable.
    pub async fn append(
        &self,
        agent: &str,
        entries: Vec<JournalEntry>,
        now_ms: i64,
    ) -> Result<AppendOutcome, DbError> {
        let outcome = self.write(agent, entries, now_ms).await?;
        self.make_durable(&outcome).await?;
        Ok(outcome)
    }

    /// [`Journal::append`] up to the point where the entries are written
    /// and the next append may start, but not yet durable: the caller must
    /// call [`Journal::make_durable`] before telling anyone they are stored.
    pub async fn write(
        &self,
        agent: &str,
        entries: Vec<JournalEntry>,
        now_ms: i64,
    ) -> Result<AppendOutcome, DbError> {
        let outcome;
        {
            let mut next = self.next_seq.lock().await;
            let start = *next;
            let (journal, dedup, agents) = (&self.db.journal, &self.db.dedup, &self.db.agents);
            let (accepted, duplicates, end) =
                (journal, dedup, agents).transaction(|(j, d, a)| {
                    let mut marks: HashMap<Vec<u8>, u64> = HashMap::new();
                    let mut seq = start;
                    let mut dups = 0u64;
                    let mut segment: Vec<&JournalEntry> = Vec::new();
                    let mut segment_bytes = 0usize;
                    let mut segment_start = start;
                    let write = |first: u64, seg: &[&JournalEntry]| {
                        let bytes = encode_segment(seg).map_err(|e| {
                            ConflictableTransactionError::Abort(format!(
                                "journal segment {first}: {e}"
                            ))
                        })?;
                        j.insert(&first.to_be_bytes(), bytes)?;
                        Ok::<_, ConflictableTransactionError<String>>(())
                    };
                    for e in &entries {
                        let key = dedup_key(agent, &e.stream);
                        let next_ok = match marks.get(&key) {
                            Some(v) => *v,
                            None => d
                                .get(&key)?
                                .as_deref()
                                .and_then(crate::db::be_u64)
                                .unwrap_or(0),
                        };
                        if e.offset < next_ok {
                            dups += 1;
                            marks.insert(key, next_ok);
                            continue;
                        }
                        segment.push(e);
                        segment_bytes += encoded_size(e);
                        seq += 1;
                        marks.insert(key, e.offset + 1);
                        if segment.len() >= SEGMENT_MAX_ENTRIES
                            || segment_bytes >= SEGMENT_MAX_BYTES
                        {
                            write(segment_start, &segment)?;
                            segment.clear();
                            segment_bytes = 0;
                            segment_start = seq;
                        }
                    }
                    if !segment.is_empty() {
                        write(segment_start, &segment)?;
                    }
                    for (k, v) in &marks {
                        d.insert(k.as_slice(), &v.to_be_bytes())?;
                    }
                    let accepted = seq - start;
                    if let Some(raw) = a.get(agent.as_bytes())? {
                        let mut rec: AgentRecord = serde_json::from_slice(&raw).map_err(|e| {
                            ConflictableTransactionError::Abort(format!(
                                "agent record {agent}: {e}"
                            ))
                        })?;
                        rec.events_received += accepted;
                        rec.last_seen_ms = Some(now_ms);
                        let bytes = serde_json::to_vec(&rec).map_err(|e| {
                            ConflictableTransactionError::Abort(format!(
                                "agent record {agent}: {e}"
                            ))
                        })?;
                        a.insert(agent.as_bytes(), bytes)?;
                    }
                    Ok((accepted, dups, seq))
                })?;
            *next = end;
            self.last_written
                .store(end - 1, std::sync::atomic::Ordering::Release);
            outcome = AppendOutcome {
                accepted,
                duplicates,
            };
        }
        Ok(outcome)
    }

    /// Makes what [`Journal::write`] wrote durable and wakes the readers.
    /// Flushing outside the writer lock lets concurrent batches share one fsync.
    pub async fn make_durable(&self, outcome: &AppendOutcome) -> Result<(), DbError> {
        self.db.flush().await?;
        if outcome.accepted > 0 {
            self.appended.notify_waiters();
        }
        Ok(())
    }

    /// Reads up to `max` entries after sequence `after`, in order. Entries
    /// that cannot be decoded are returned as errors in place, so the caller
    /// can count and skip them without stalling.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<(u64, EntryResult)>, DbError> {
        let mut out = Vec::with_capacity(max.min(4096));
        let start = after + 1;
        // The value holding `start` may begin before it.
        let mut key = match self.value_holding(start)? {
            Some((key, v)) if key + value_len(&v) > start => key,
            _ => start,
        };
        while let Some((k, v)) = self.value_at_or_after(key)? {
            for (seq, entry) in decode_value(k, &v) {
                if seq < start {
                    continue;
                }
                if out.len() == max {
                    return Ok(out);
                }
                out.push((seq, entry));
            }
            key = k + value_len(&v).max(1);
        }
        Ok(out)
    }

    /// The stored value whose first sequence number is the highest not
    /// above `seq`.
    fn value_holding(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>, DbError> {
        match self.db.journal.range(..=seq.to_be_bytes()).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((key_seq(&k)?, v)))
            }
            None => Ok(None),
        }
    }

    /// The stored value whose first sequence number is the lowest not below
    /// `key`. Values are consecutive, so walking the journal asks for the key
    /// after the previous value and a point lookup finds it; a range is only
    /// opened at a gap (after a restore moved the numbering, or at the end).
    /// Walking by range alone keeps most of what it read resident: sled
    /// 0.34's iterators escape its cache bound (1 GiB read with 8 KiB values
    /// and a 64 MiB cache: 717 MiB resident by ranges of 100 values, 155 MiB
    /// by point lookups).
    fn value_at_or_after(&self, key: u64) -> Result<Option<(u64, sled::IVec)>, DbError> {
        if let Some(v) = self.db.journal.get(key.to_be_bytes())? {
            return Ok(Some((key, v)));
        }
        match self.db.journal.range(key.to_be_bytes()..).next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((key_seq(&k)?, v)))
            }
            None => Ok(None),
        }
    }

    /// Reads one entry.
    pub fn get(&self, seq: u64) -> Result<Option<JournalEntry>, DbError> {
        self.get_cached(seq, &mut SegmentCache::default())
    }

    /// [`Journal::get`], reading through `cache`: the entries of a stored
    /// value (a segment holds many) are decoded once for all the lookups
    /// that fall in it while it is cached, as an alert's evidence lines
    /// mostly do.
    pub fn get_cached(
        &self,
        seq: u64,
        cache: &mut SegmentCache,
    ) -> Result<Option<JournalEntry>, DbError> {
        let at = match cache.position(seq) {
            Some(at) => at,
            None => {
                let Some((key, v)) = self.value_holding(seq)? else {
                    return Ok(None);
                };
                cache.add(key, value_len(&v), decode_value(key, &v));
                0
            }
        };
        let entries = &cache.0[at].2;
        let Some((_, entry)) = entries.iter().find(|(s, _)| *s == seq) else {
            return Ok(None);
        };
        match entry {
            Ok(e) => Ok(Some(e.clone())),
            Err(reason) => Err(DbError::Corrupt {
                key: format!("journal/{seq}"),
                reason: reason.clone(),
            }),
        }
    }

    /// The first and last sequence numbers held, `(0, 0)` when empty.
    pub fn bounds(&self) -> Result<(u64, u64), DbError> {
        match self.db.journal.first()? {
            Some((k, _)) => Ok((key_seq(&k)?, self.last_seq_now())),
            None => Ok((0, 0)),
        }
    }

    /// Removes the oldest stored values whose entries all have sequence
    /// numbers up to `upto`, never the newest value (it fixes the next
    /// sequence number on reopen). A segment straddling `upto` stays whole.
    /// Returns the number of entries removed.
    pub fn prune_through(&self, upto: u64) -> Result<u64, DbError> {
        let newest = match self.db.journal.last()? {
            Some((k, _)) => key_seq(&k)?,
            None => return Ok(0),
        };
        let mut removed = 0;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let mut next = 0;
        while let Some((key, v)) = self.value_at_or_after(next)? {
            let len = value_len(&v).max(1);
            if key == newest || key + len - 1 > upto {
                break;
            }
            batch.remove(&key.to_be_bytes());
            next = key + len;
            removed += len;
            in_batch += 1;
            if in_batch == 256 {
                self.db.journal.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            self.db.journal.apply_batch(batch)?;
        }
        Ok(removed)
    }

    /// The next offset the journal accepts for (agent, stream): its
    /// de-duplication mark, 0 when the stream is new. Writers that number
    /// lines themselves (syslog) start here so they never reuse an offset.
    pub fn next_offset(&self, agent: &str, stream: &str) -> Result<u64, DbError> {
        Ok(self
            .db
            .dedup
            .get(dedup_key(agent, stream))?
            .as_deref()
            .and_then(crate::db::be_u64)
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: &str, offset: u64) -> JournalEntry {
        JournalEntry {
            agent: "a1".into(),
            stream: stream.into(),
            source: "ufw".into(),
            source_type: "iptables".into(),
            path: "/var/log/ufw.log".into(),
            offset,
            read_time_ms: 1,
            received_ms: 2,
            raw: format!("line at {offset}").into_bytes(),
            truncated: false,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn format_1_single_entries_and_segments_read_back_in_one_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        // Two entries as a format-1 database stored them: one value each.
        for (seq, off) in [(1u64, 0u64), (2, 10)] {
            let mut v = vec![ENTRY_FORMAT];
            v.extend(postcard::to_stdvec(&entry("old", off)).expect("encode"));
            db.journal.insert(seq.to_be_bytes(), v).expect("insert");
        }
        let j = Journal::open(db.clone()).expect("journal");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        assert_eq!(rt.block_on(j.last_seq()), 2);
        let batch: Vec<JournalEntry> = (0..2500).map(|i| entry("new", i * 10)).collect();
        let out = rt.block_on(j.append("a1", batch, 1)).expect("append");
        assert_eq!(out.accepted, 2500);
        // 2,500 lines make segments of at most about SEGMENT_MAX_BYTES each,
        // after the two old values.
        let sizes: Vec<(u64, usize)> = db
            .journal
            .iter()
            .map(|kv| kv.map(|(_, v)| (value_len(&v), v.len())).expect("read"))
            .collect();
        assert!(sizes.len() > 3, "{sizes:?}");
        assert_eq!(sizes.iter().map(|(n, _)| n).sum::<u64>(), 2502);
        assert!(
            sizes.iter().all(|(_, b)| *b <= SEGMENT_MAX_BYTES),
            "{sizes:?}"
        );
        assert_eq!(rt.block_on(j.last_seq()), 2502);

        let all = j.read_after(0, 10_000).expect("read");
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=2502).collect::<Vec<_>>());
        // Mid-segment starts and limits.
        let some = j.read_after(1500, 3).expect("read");
        assert_eq!(
            some.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![1501, 1502, 1503]
        );
        let e = some[0].1.as_ref().expect("decodes");
        assert_eq!((e.stream.as_str(), e.offset), ("new", 14_980));
        assert_eq!(j.get(2).expect("get").map(|e| e.offset), Some(10));
        assert_eq!(j.get(2502).expect("get").map(|e| e.offset), Some(24_990));
        assert!(j.get(2503).expect("get").is_none());
        // Lookups through a cache give what reading in order gives, going
        // up (across every segment boundary), down and scattered, and keep
        // at most SegmentCache::MAX values decoded.
        let by_seq: HashMap<u64, u64> = all
            .iter()
            .map(|(s, e)| (*s, e.as_ref().expect("decodes").offset))
            .collect();
        let mut cache = SegmentCache::default();
        let up = 1..=2503;
        let down = (1..=2503).rev();
        let scattered = [2, 1, 1500, 2502, 9999, 700, 2400, 3];
        for seq in up.chain(down).chain(scattered) {
            let cached = j.get_cached(seq, &mut cache).expect("get");
            assert_eq!(
                cached.map(|e| e.offset),
                by_seq.get(&seq).copied(),
                "seq {seq}"
            );
            assert!(cache.0.len() <= SegmentCache::MAX);
        }
        assert_eq!(
            j.get(1500).expect("get").map(|e| e.offset),
            by_seq.get(&1500).copied()
        );
        // Reopening finds the end after the last segment.
        drop(j);
        let j = Journal::open(db).expect("reopen");
        assert_eq!(rt.block_on(j.last_seq()), 2502);
    }

    /// Entries written before `raw` was encoded as a byte string read back
    /// the same, and are written the same: the encodings are identical.
    #[test]
    fn raw_bytes_keep_the_earlier_encoding() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Earlier {
            agent: String,
            stream: String,
            source: String,
            source_type: String,
            path: String,
            offset: u64,
            read_time_ms: i64,
            received_ms: i64,
            raw: Vec<u8>,
            truncated: bool,
            labels: BTreeMap<String, String>,
        }
        let mut e = entry("s", 7);
        e.raw = (0..=255u8).chain(b"tail \xff\n".iter().copied()).collect();
        e.labels.insert("agency".into(), "finance".into());
        let earlier = Earlier {
            agent: e.agent.clone(),
            stream: e.stream.clone(),
            source: e.source.clone(),
            source_type: e.source_type.clone(),
            path: e.path.clone(),
            offset: e.offset,
            read_time_ms: e.read_time_ms,
            received_ms: e.received_ms,
            raw: e.raw.clone(),
            truncated: e.truncated,
            labels: e.labels.clone(),
        };
        let old = postcard::to_stdvec(&earlier).expect("encode");
        assert_eq!(postcard::to_stdvec(&e).expect("encode"), old);
        assert_eq!(
            postcard::from_bytes::<JournalEntry>(&old).expect("decode"),
            e
        );
        // JSON writes and reads the bytes as a list of numbers, as before.
        let json = serde_json::to_string(&e).expect("json");
        assert_eq!(json, serde_json::to_string(&earlier).expect("json"));
        assert_eq!(
            serde_json::from_str::<JournalEntry>(&json).expect("json"),
            e
        );
    }

    #[test]
    fn a_corrupt_segment_yields_one_error_per_entry_it_holds() {
        let mut v = vec![SEGMENT_FORMAT];
        v.extend(3u32.to_le_bytes());
        v.extend([0xff, 0xff, 0xff]);
        let out = decode_value(10, &v);
        assert_eq!(
            out.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert!(out.iter().all(|(_, e)| e.is_err()));

        // Compressed: a damaged frame, a length that lies, a length over
        // the limit (no allocation of it is attempted).
        let e = [entry("s", 0), entry("s", 10), entry("s", 20)];
        let good = encode_segment(&e.iter().collect::<Vec<_>>()).expect("encode");
        let mut damaged = good.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let mut short = good.clone();
        short[5..9].copy_from_slice(&4u32.to_le_bytes());
        let mut huge = good.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        for (what, v) in [("damaged", damaged), ("short", short), ("huge", huge)] {
            let out = decode_value(10, &v);
            assert_eq!(out.len(), 3, "{what}");
            assert!(out.iter().all(|(_, e)| e.is_err()), "{what}: {out:?}");
        }
        let err = decode_value(10, &{
            let mut v = good.clone();
            v[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
            v
        });
        assert!(
            matches!(&err[0].1, Err(m) if m.contains("over the limit")),
            "{err:?}"
        );
        let out = decode_value(10, &good);
        assert_eq!(
            out.into_iter()
                .map(|(s, e)| (s, e.expect("decodes").offset))
                .collect::<Vec<_>>(),
            vec![(10, 0), (11, 10), (12, 20)]
        );
    }

    #[test]
    fn segments_are_compressed_and_uncompressed_ones_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        // A segment as format-2 databases wrote it: postcard, not compressed.
        let old: Vec<JournalEntry> = (0..3).map(|i| entry("old", i * 10)).collect();
        let mut v = vec![SEGMENT_FORMAT];
        v.extend(3u32.to_le_bytes());
        v.extend(postcard::to_stdvec(&old).expect("encode"));
        db.journal.insert(1u64.to_be_bytes(), v).expect("insert");
        let j = Journal::open(db.clone()).expect("journal");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        assert_eq!(rt.block_on(j.last_seq()), 3);
        let batch: Vec<JournalEntry> = (0..1000).map(|i| entry("new", i * 10)).collect();
        let plain = postcard::to_stdvec(&batch).expect("encode").len();
        rt.block_on(j.append("a1", batch, 1)).expect("append");
        let stored: Vec<(u8, usize)> = db
            .journal
            .range(4u64.to_be_bytes()..)
            .map(|kv| kv.map(|(_, v)| (v[0], v.len())).expect("read"))
            .collect();
        assert!(stored.iter().all(|(tag, _)| *tag == ZSTD_SEGMENT_FORMAT));
        let bytes: usize = stored.iter().map(|(_, n)| n).sum();
        assert!(
            bytes < plain / 3,
            "{bytes} bytes stored for {plain} bytes of entries"
        );
        let all = j.read_after(0, 2000).expect("read");
        assert_eq!(all.len(), 1003);
        let streams: Vec<&str> = all
            .iter()
            .map(|(_, e)| e.as_ref().expect("decodes").stream.as_str())
            .collect();
        assert_eq!(&streams[..4], &["old", "old", "old", "new"]);
    }

    #[tokio::test]
    async fn resent_lines_are_dropped_and_sequences_stay_gap_free_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Db::open(dir.path()).expect("open");
            let j = Journal::open(db).expect("journal");
            let out = j
                .append(
                    "a1",
                    vec![entry("s1", 0), entry("s1", 10), entry("s2", 0)],
                    5,
                )
                .await
                .expect("append");
            assert_eq!(
                out,
                AppendOutcome {
                    accepted: 3,
                    duplicates: 0
                }
            );
            // The same batch again, plus one new line: only the new one goes in.
            let out = j
                .append(
                    "a1",
                    vec![
                        entry("s1", 0),
                        entry("s1", 10),
                        entry("s2", 0),
                        entry("s1", 20),
                    ],
                    6,
                )
                .await
                .expect("append");
            assert_eq!(
                out,
                AppendOutcome {
                    accepted: 1,
                    duplicates: 3
                }
            );
            // Another agent's stream of the same name is not a duplicate.
            let out = j
                .append("a2", vec![entry("s1", 0)], 7)
                .await
                .expect("append");
            assert_eq!(out.accepted, 1);
            assert_eq!(j.last_seq().await, 5);
        }
        let db = crate::db::reopen(dir.path()).expect("reopen");
        let j = Journal::open(db).expect("journal");
        assert_eq!(j.last_seq().await, 5);
        let out = j
            .append("a1", vec![entry("s1", 20), entry("s1", 30)], 8)
            .await
            .expect("append");
        assert_eq!(
            out,
            AppendOutcome {
                accepted: 1,
                duplicates: 1
            }
        );
        let all = j.read_after(0, 100).expect("read");
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
        let last = all[5].1.as_ref().expect("decodes");
        assert_eq!(last.offset, 30);
        assert_eq!(j.read_after(4, 100).expect("read").len(), 2);
    }
}
