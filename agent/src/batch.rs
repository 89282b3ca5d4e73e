//! The batch being built: lines read but not yet sent.
//!
//! It is bounded by `batch_max_lines` and `batch_max_bytes` (one line may
//! overshoot the byte budget, so a line longer than the budget still goes
//! out). When it is full the agent stops reading, so memory stays bounded
//! however long the collector is away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use soc_protocol::Record;

use crate::identity::{FileId, Guard};

/// A record as the agent builds it: the texts every line of a file repeats
/// are shared by the file's lines.
pub type Line = Record<Arc<str>>;

/// One line waiting to be sent, with what is needed to checkpoint it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The record as it will travel.
    pub record: Line,
    /// Where it came from.
    pub mark: Mark,
}

/// What is needed to checkpoint a line once it is acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// The file it came from.
    pub file: FileId,
    /// Which tracking of that file (a file dropped and found again, or
    /// truncated, gets a new one): acks of older trackings are ignored.
    pub tracking: u64,
    /// Offset just past the line: the checkpoint once it is acknowledged.
    pub next: u64,
    /// Raw length of the line, for the byte budget.
    pub len: usize,
    /// When it was read, for `flush_interval`.
    pub read_at: Instant,
    /// Check of the bytes before `next`, kept in the checkpoint.
    pub guard: Guard,
}

/// Lines read and waiting for the next send.
#[derive(Debug)]
pub struct Building {
    items: VecDeque<Pending>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Building {
    /// An empty batch with the given budget.
    pub fn new(max_lines: usize, max_bytes: usize) -> Building {
        Building {
            items: VecDeque::with_capacity(max_lines.min(1024)),
            bytes: 0,
            max_lines,
            max_bytes,
        }
    }

    /// Whether another line may be added.
    pub fn has_room(&self) -> bool {
        self.items.len() < self.max_lines && self.bytes < self.max_bytes
    }

    /// Adds a line; callers check [`Building::has_room`] first.
    pub fn push(&mut self, p: Pending) {
        self.bytes += p.mark.len;
        self.items.push_back(p);
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No line waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the oldest line has waited `flush` long.
    pub fn deadline(&self, flush: Duration) -> Option<Instant> {
        self.items.front().map(|p| p.mark.read_at + flush)
    }

    /// Whether the batch should be sent now: full, or its oldest line due.
    pub fn ready(&self, now: Instant, flush: Duration) -> bool {
        !self.has_room() || self.deadline(flush).is_some_and(|d| d <= now)
    }

    /// Takes the first `n` lines out.
    pub fn take(&mut self, n: usize) -> Vec<Pending> {
        let n = n.min(self.items.len());
        let out: Vec<Pending> = self.items.drain(..n).collect();
        self.bytes -= out.iter().map(|p| p.mark.len).sum::<usize>();
        out
    }

    /// Keeps only the lines whose mark passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&Mark) -> bool) {
        self.items.retain(|p| keep(&p.mark));
        self.bytes = self.items.iter().map(|p| p.mark.len).sum();
    }

    /// Drops the lines added after the first `len` (a read that turned out
    /// to be of a file truncated under it).
    pub fn truncate(&mut self, len: usize) {
        for p in self.items.drain(len.min(self.items.len())..) {
            self.bytes -= p.mark.len;
        }
    }

    /// Puts lines taken out back in front, in their order (a send that
    /// could not be encoded whole is split).
    pub fn restore(&mut self, items: Vec<Pending>) {
        for p in items.into_iter().rev() {
            self.bytes += p.mark.len;
            self.items.push_front(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DevIno;

    fn pending(len: usize, read_at: Instant) -> Pending {
        Pending {
            record: Record {
                stream: "s".into(),
                source: "x".into(),
                source_type: "".into(),
                path: "".into(),
                offset: 0,
                read_time_ms: 0,
                line: Some("x".repeat(len)),
                line_b64: None,
                truncated: false,
            },
            mark: Mark {
                file: FileId {
                    dev_ino: DevIno { dev: 1, ino: 2 },
                    first_line: 3,
                },
                tracking: 0,
                next: 0,
                len,
                read_at,
                guard: Guard::default(),
            },
        }
    }

    #[test]
    fn budget_and_deadline() {
        let t0 = Instant::now();
        let flush = Duration::from_secs(1);
        let mut b = Building::new(3, 100);
        assert!(!b.ready(t0, flush));
        b.push(pending(10, t0));
        assert!(!b.ready(t0, flush));
        assert!(b.ready(t0 + flush, flush));
        b.push(pending(95, t0));
        assert!(!b.has_room(), "byte budget reached");
        let taken = b.take(1);
        assert_eq!(taken.len(), 1);
        assert!(b.has_room());
        b.push(pending(1, t0));
        b.push(pending(1, t0));
        assert!(!b.has_room(), "line budget reached");
        let all = b.take(10);
        assert_eq!(all.len(), 3);
        assert!(b.is_empty());
        b.restore(all);
        assert_eq!(b.len(), 3);
        assert!(!b.has_room());
    }
}
