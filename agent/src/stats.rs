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
    /// Lines cut at `max_line_bytes`.
    pub truncated: AtomicU64,
}
