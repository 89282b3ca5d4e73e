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

/// Format tag in front of every stored entry.
const ENTRY_FORMAT: u8 = 1;

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
    pub raw: Vec<u8>,
    /// The agent cut the line at its length limit.
    pub truncated: bool,
    /// The agent's labels (agency, level, district, ...).
    pub labels: BTreeMap<String, String>,
}

impl JournalEntry {
    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![ENTRY_FORMAT];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<JournalEntry, String> {
        match bytes.split_first() {
            Some((&ENTRY_FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
            Some((v, _)) => Err(format!("unknown entry format {v}")),
            None => Err("empty entry".into()),
        }
    }
}

/// A journal entry, or why it could not be read.
pub type EntryResult = Result<JournalEntry, String>;

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
            Some((k, _)) => crate::db::be_u64(&k).unwrap_or(0) + 1,
            None => 1,
        };
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
        let mut encoded = Vec::with_capacity(entries.len());
        for e in &entries {
            let bytes = e.encode().map_err(|err| DbError::Corrupt {
                key: format!("journal entry {}@{}", e.stream, e.offset),
                reason: err.to_string(),
            })?;
            encoded.push(bytes);
        }
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
                    for (e, bytes) in entries.iter().zip(&encoded) {
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
                        j.insert(&seq.to_be_bytes(), bytes.as_slice())?;
                        seq += 1;
                        marks.insert(key, e.offset + 1);
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
        // Flushing outside the writer lock lets concurrent batches share one fsync.
        self.db.flush().await?;
        if outcome.accepted > 0 {
            self.appended.notify_waiters();
        }
        Ok(outcome)
    }

    /// Reads up to `max` entries after sequence `after`, in order. Entries
    /// that cannot be decoded are returned as errors in place, so the caller
    /// can count and skip them without stalling.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<(u64, EntryResult)>, DbError> {
        let mut out = Vec::with_capacity(max.min(4096));
        for item in self.db.journal.range((after + 1).to_be_bytes()..).take(max) {
            let (k, v) = item?;
            let seq = crate::db::be_u64(&k).ok_or_else(|| DbError::Corrupt {
                key: "journal key".into(),
                reason: "not 8 bytes".into(),
            })?;
            out.push((seq, JournalEntry::decode(&v)));
        }
        Ok(out)
    }

    /// Reads one entry.
    pub fn get(&self, seq: u64) -> Result<Option<JournalEntry>, DbError> {
        match self.db.journal.get(seq.to_be_bytes())? {
            None => Ok(None),
            Some(v) => JournalEntry::decode(&v)
                .map(Some)
                .map_err(|reason| DbError::Corrupt {
                    key: format!("journal/{seq}"),
                    reason,
                }),
        }
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
        let db = Db::open(dir.path()).expect("reopen");
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
