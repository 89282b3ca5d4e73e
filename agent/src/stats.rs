//! Counters shared by the agent's tasks, reported in heartbeats.

use std::sync::atomic::AtomicU64;

/// What happened since the agent started. Relaxed atomics: these are
/// reports, not synchronisation.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lines the collector acknowledged.
    pub lines_sent: AtomicU64,
    /// Read, send and checkpoint errors.
    pub errors: AtomicU64,
    /// Lines cut at `max_line_bytes` (`long_lines = "truncate"`).
    pub lines_truncated: AtomicU64,
    /// Records that are pieces of a line longer than `max_line_bytes`
    /// (`long_lines = "split"`), last pieces excluded.
    pub lines_split: AtomicU64,
    /// Files found truncated in place (or rewritten from the start).
    pub truncations: AtomicU64,
}
