//! The set of files being tailed, tracked by identity rather than path.
//!
//! A scan maps each matching path to a file identity. A path that now holds
//! a new identity (rename+create rotation, a symlink pointing elsewhere)
//! starts a new file, while the old one stays open and is read to its end
//! through its handle, or by its new name when that still matches the globs.
//! A file no path leads to any more ("orphan": rotated away, moved to an
//! `olddir`, compressed, deleted) is released once it has been read to its
//! end, stayed unchanged for `rotate_wait`, and every line of it was
//! acknowledged; its checkpoint entry goes with it.
//!
//! Offsets move in two steps: the [`Tail`] is where reading stands, `acked`
//! is what the collector confirmed and what the checkpoint holds.
//!
//! # Streams, truncation and copies
//!
//! Lines travel under a stream name; the collector drops a line it already
//! holds by `(agent, stream, offset)`. The stream of a file is its identity
//! (`dev-ino-fnv`), with `.g<N>` appended once the file was found truncated
//! in place N times: the new content is a new stream read from offset 0, so
//! none of its lines can be taken for an old one. Truncation is seen when
//! the file is shorter than the read offset, when its first line changed,
//! or when the bytes before the read offset are no longer those read (a
//! [`Guard`]); at a restart, when the checkpoint's guard fails.
//!
//! A new file whose first line and the bytes before an acknowledged offset
//! match a known stream of the same source is a copy of it (`copytruncate`
//! writes `file.1` and then truncates `file`): it continues that stream from
//! that offset, so what was acknowledged is not sent again and what was not
//! is read from the copy. See `open.rs`.
//!
//! Layout: `mod.rs` holds the set and its bookkeeping, `open.rs` starts
//! tracking a file (checkpoint, guard, copy detection), `read.rs` reads
//! lines into a batch (fairness, rate limits, truncation).

mod open;
mod read;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use soc_protocol::SourceLag;

use crate::batch::Mark;
use crate::checkpoint::{CheckpointError, Checkpoints, Entry};
use crate::config::Source;
use crate::discover;
use crate::identity::{DevIno, FileId, Guard, Marks};
use crate::ratelimit::TokenBucket;
use crate::stats::Stats;
use crate::tail::Tail;

/// One file being tailed.
#[derive(Debug)]
struct Watched {
    /// Which tracking of the file this is; marks of earlier trackings (a
    /// file dropped, or truncated, meanwhile) are not checkpointed.
    tracking: u64,
    /// The name its lines travel under.
    stream: String,
    /// Truncations seen of this file (the `.g<N>` of its stream).
    generation: u64,
    source: usize,
    /// Last path it was seen at.
    path: PathBuf,
    file: File,
    tail: Tail,
    /// Offset acknowledged by the collector (what the checkpoint holds).
    acked: u64,
    /// Guard of `acked`.
    acked_guard: Option<Guard>,
    /// Guard of the read offset, to notice a truncation that the file's
    /// growth hides.
    read_guard: Option<Guard>,
    /// Line ends read, to recognise a copy of this file.
    marks: Marks,
    /// Truncated to less than its first line: the identity is read again
    /// when the first line is complete.
    first_line_pending: bool,
    /// No matching path leads to it any more.
    orphan: bool,
    /// Renamed, or found as a copy of a stream (`copytruncate`): a rotated
    /// file, which nobody appends to. Like an orphan, a last line without
    /// newline is sent as it is once the file stayed unchanged for
    /// `rotate_wait` (logrotate can copy half a line).
    rotated: bool,
    /// Length at the last look, and when it last changed.
    len: u64,
    changed_at: Instant,
    /// Length when the file was last checked for truncation.
    checked_len: u64,
    /// Modification time then: a file truncated and written again to the
    /// very length it had (copytruncate, then equal-length lines) keeps its
    /// length but not its modification time.
    checked_mtime: Option<std::time::SystemTime>,
    warned_truncated: bool,
}

/// All files being tailed, with their checkpoints.
pub struct Files {
    sources: Vec<Source>,
    max_open: usize,
    watched: BTreeMap<FileId, Watched>,
    by_dev_ino: HashMap<DevIno, FileId>,
    /// Compressed files seen, with their length: not opened again while
    /// unchanged.
    ignored: HashMap<DevIno, u64>,
    checkpoints: Checkpoints,
    dirty: bool,
    scratch: Vec<u8>,
    last_scan: Vec<Option<Instant>>,
    buckets: Vec<Option<TokenBucket>>,
    next_tracking: u64,
    /// Where the next read pass starts, so every file gets its turn.
    cursor: Option<FileId>,
    warned_full: bool,
    stats: Arc<Stats>,
}

/// How a scan went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Every matching file was found, opened and tracked: checkpoints of
    /// files not tracked now belong to files that are gone.
    pub all_tracked: bool,
}

/// What became of one matching path.
enum Looked {
    /// Tracked under this identity.
    Tracked(FileId),
    /// Not a file to track now (gone, no complete first line yet,
    /// compressed, or already tailed by another source).
    Skipped,
    /// Could not be opened or read (it is certainly not a tracked file).
    Unopened,
    /// Could not even be looked at: it might be a tracked file.
    Unknown,
}

impl Files {
    /// Tracks nothing yet; call [`Files::scan`] to find files.
    pub fn new(
        sources: Vec<Source>,
        max_open: usize,
        checkpoints: Checkpoints,
        stats: Arc<Stats>,
    ) -> Files {
        let n = sources.len();
        let buckets = sources
            .iter()
            .map(|s| s.max_lines_per_second.map(TokenBucket::new))
            .collect();
        Files {
            sources,
            max_open,
            watched: BTreeMap::new(),
            by_dev_ino: HashMap::new(),
            ignored: HashMap::new(),
            checkpoints,
            dirty: false,
            scratch: Vec::new(),
            last_scan: vec![None; n],
            buckets,
            next_tracking: 0,
            cursor: None,
            warned_full: false,
            stats,
        }
    }

    /// Files currently open.
    pub fn open_count(&self) -> usize {
        self.watched.len()
    }

    /// Scans every source whose poll interval has elapsed (all of them when
    /// `force`). Returns whether all scans were complete.
    pub fn scan(&mut self, now: Instant, force: bool) -> ScanOutcome {
        let mut all_tracked = true;
        for i in 0..self.sources.len() {
            let due = self.last_scan[i]
                .is_none_or(|t| force || now.duration_since(t) >= self.sources[i].poll_interval);
            if due {
                self.last_scan[i] = Some(now);
                all_tracked &= self.scan_source(i, now);
            }
        }
        if self.ignored.len() > 4096 {
            self.ignored.clear();
        }
        ScanOutcome { all_tracked }
    }

    fn scan_source(&mut self, si: usize, now: Instant) -> bool {
        let found = discover::scan(&self.sources[si]);
        let name = self.sources[si].name.clone();
        // Complete: every path leading to a tracked file was seen.
        let mut complete = !found.capped && found.errors.is_empty();
        let mut all_tracked = complete;
        for (path, e) in &found.errors {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %name, path = %path.display(), error = %e, "Cannot look at a path matched by the source's globs.");
        }
        if found.capped {
            tracing::warn!(source = %name, limit = discover::MAX_SCAN_PATHS, "The source's globs match too many files; only the first ones are tailed.");
        }
        let first_scan = !self.checkpoints.source_started(&name);
        let mut seen = Vec::new();
        for path in found.paths {
            match self.look_at(si, path, first_scan, now) {
                Looked::Tracked(id) => seen.push(id),
                Looked::Skipped => {}
                Looked::Unopened => all_tracked = false,
                Looked::Unknown => {
                    complete = false;
                    all_tracked = false;
                }
            }
        }
        // Files of this source that no matching path leads to any more.
        if complete {
            for (id, w) in self.watched.iter_mut() {
                if w.source == si && !w.orphan && !seen.contains(id) {
                    tracing::info!(source = %name, path = %w.path.display(), stream = %w.stream, "File was rotated away or deleted; reading it to its end.");
                    w.orphan = true;
                    w.changed_at = now;
                }
            }
        }
        if first_scan {
            self.checkpoints.mark_source_started(&name);
            self.dirty = true;
        }
        all_tracked
    }

    /// The checkpoint entry of a watched file.
    fn entry_of(&self, id: &FileId) -> Option<Entry> {
        let w = self.watched.get(id)?;
        let default = id.to_string();
        Some(Entry {
            offset: w.acked,
            path: w.path.to_string_lossy().into_owned(),
            source: self.sources[w.source].name.clone(),
            stream: (w.stream != default).then(|| w.stream.clone()),
            generation: w.generation,
            guard: w.acked_guard,
            read_offset: if w.tail.offset() > w.acked {
                w.tail.offset()
            } else {
                0
            },
            read_guard: w.read_guard.filter(|_| w.tail.offset() > w.acked),
        })
    }

    /// Writes the checkpoint entry of a watched file (in memory).
    fn store(&mut self, id: &FileId) {
        if let Some(e) = self.entry_of(id) {
            self.checkpoints.set(id.to_string(), e);
            self.dirty = true;
        }
    }

    /// Closes one idle file that a path still leads to (it is found again by
    /// the next scan and resumes from its checkpoint). False if none is idle.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .watched
            .iter()
            .filter(|(_, w)| {
                !w.orphan && !w.first_line_pending && w.acked == w.tail.offset() && w.len == w.acked
            })
            .min_by_key(|(_, w)| w.changed_at)
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.drop_file(id);
                true
            }
            None => false,
        }
    }

    fn drop_file(&mut self, id: FileId) -> Option<Watched> {
        let w = self.watched.remove(&id)?;
        if self.by_dev_ino.get(&id.dev_ino) == Some(&id) {
            self.by_dev_ino.remove(&id.dev_ino);
        }
        if self.cursor == Some(id) {
            self.cursor = None;
        }
        Some(w)
    }

    /// After the first complete scan: forgets checkpoints of files that no
    /// longer exist (deleted while the agent was stopped).
    pub fn prune_absent(&mut self) {
        let present: std::collections::HashSet<String> =
            self.watched.keys().map(ToString::to_string).collect();
        let before = self.checkpoints.entries().count();
        self.checkpoints.retain(|k, _| present.contains(k));
        let pruned = before - self.checkpoints.entries().count();
        if pruned > 0 {
            tracing::info!(pruned, "Forgot checkpoints of files that no longer exist.");
            self.dirty = true;
        }
    }

    /// [`Files::acknowledge`], then saves the checkpoints.
    pub fn commit(&mut self, sent: &[Mark], now: Instant) -> Result<(), CheckpointError> {
        self.acknowledge(sent, now);
        self.save()
    }

    /// Records that the collector acknowledged `sent`: moves the acked
    /// offsets and releases drained orphans. The checkpoints are saved by
    /// the next [`Files::save`].
    pub fn acknowledge(&mut self, sent: &[Mark], now: Instant) {
        let mut moved = Vec::new();
        for p in sent {
            let Some(w) = self.watched.get_mut(&p.file) else {
                continue; // released or dropped meanwhile
            };
            if w.tracking != p.tracking || p.next <= w.acked {
                continue;
            }
            w.acked = p.next;
            w.acked_guard = Some(p.guard);
            moved.push(p.file);
        }
        moved.sort();
        moved.dedup();
        for id in &moved {
            self.store(id);
        }
        self.release_drained(now);
    }

    /// Rewinds the files of lines that were taken but will never be
    /// acknowledged to their acknowledged offsets; returns those files.
    pub fn rewind(&mut self, lost: &[Mark]) -> Vec<FileId> {
        let mut ids: Vec<FileId> = lost.iter().map(|m| m.file).collect();
        ids.sort();
        ids.dedup();
        for id in &ids {
            if let Some(w) = self.watched.get_mut(id) {
                w.tail = Tail::new(w.acked, w.tail.format());
                w.read_guard = w.acked_guard;
            }
        }
        ids
    }

    /// Releases orphans that are read to their end, idle for `rotate_wait`,
    /// and fully acknowledged; forgets their checkpoints.
    pub fn release_drained(&mut self, now: Instant) {
        // The length is otherwise refreshed only when the file gets a turn
        // to read; with the batch full (collector away) a stale length
        // would let an orphan go with lines never read.
        let sources = &self.sources;
        let mut done: Vec<FileId> = Vec::new();
        for (id, w) in self.watched.iter_mut().filter(|(_, w)| w.orphan) {
            // Truncated or rewritten since its last read (possible while the
            // batch was full): the next read sees it first.
            let mut unchecked = false;
            if let Ok(m) = w.file.metadata() {
                if m.len() != w.len {
                    w.len = m.len();
                    w.changed_at = now;
                }
                unchecked = m.len() != w.checked_len || m.modified().ok() != w.checked_mtime;
            }
            if !unchecked
                && w.acked.max(w.tail.format().bom_len) == w.tail.offset()
                && w.len == w.tail.offset()
                && now.duration_since(w.changed_at) >= sources[w.source].rotate_wait
            {
                done.push(*id);
            }
        }
        for id in done {
            if let Some(w) = self.drop_file(id) {
                tracing::info!(source = %self.sources[w.source].name, path = %w.path.display(), stream = %w.stream, offset = w.acked, "Rotated file fully shipped; released.");
                let src = self.sources[w.source].name.clone();
                self.retire(
                    &w.stream,
                    &src,
                    id.first_line,
                    w.acked,
                    w.acked_guard.map(|g| (w.acked, g)),
                    w.marks,
                );
                self.checkpoints.remove(&id.to_string());
                self.dirty = true;
            }
        }
    }

    /// Saves the checkpoints if anything changed.
    pub fn save(&mut self) -> Result<(), CheckpointError> {
        if self.dirty {
            self.checkpoints.save()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Bytes written but not acknowledged, per source (for heartbeats).
    pub fn lag(&mut self) -> Vec<SourceLag> {
        let mut lag: Vec<SourceLag> = self
            .sources
            .iter()
            .map(|s| SourceLag {
                source: s.name.clone(),
                bytes_behind: 0,
            })
            .collect();
        for w in self.watched.values_mut() {
            if let Ok(m) = w.file.metadata() {
                w.len = m.len();
            }
            if let Some(l) = lag.get_mut(w.source) {
                l.bytes_behind += w.len.saturating_sub(w.acked);
            }
        }
        lag
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
