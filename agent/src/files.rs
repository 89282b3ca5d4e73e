//! The set of files being tailed, tracked by identity rather than path.
//!
//! A scan maps each matching path to a file identity. A path that now holds
//! a new identity (rename+create rotation) starts a new file read from
//! offset 0, while the old file stays open and is read to its end through
//! its handle, or by its new name when that still matches the globs. A file
//! no path leads to any more ("orphan": rotated away or deleted) is released
//! once it has been read to its end, stayed unchanged for `rotate_wait`, and
//! every line of it was acknowledged; its checkpoint entry goes with it.
//!
//! Offsets move in two steps: the [`Tail`] is where reading stands, `acked`
//! is what the collector confirmed and what the checkpoint holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use soc_protocol::{Record, SourceLag};

use crate::batch::{Building, Mark, Pending};
use crate::checkpoint::{CheckpointError, Checkpoints, Entry};
use crate::config::{Source, StartAt};
use crate::discover;
use crate::identity::{self, DevIno, FileId};
use crate::stats::Stats;
use crate::tail::Tail;

/// One file being tailed.
#[derive(Debug)]
struct Watched {
    generation: u64,
    stream: String,
    source: usize,
    /// Last path it was seen at.
    path: PathBuf,
    file: File,
    tail: Tail,
    /// Offset acknowledged by the collector (what the checkpoint holds).
    acked: u64,
    /// No matching path leads to it any more.
    orphan: bool,
    /// Length at the last look, and when it last changed.
    len: u64,
    changed_at: Instant,
    warned_truncated: bool,
}

/// All files being tailed, with their checkpoints.
pub struct Files {
    sources: Vec<Source>,
    max_open: usize,
    watched: BTreeMap<FileId, Watched>,
    by_dev_ino: HashMap<DevIno, FileId>,
    checkpoints: Checkpoints,
    dirty: bool,
    scratch: Vec<u8>,
    last_scan: Vec<Option<Instant>>,
    next_generation: u64,
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
    /// Not a file to track now (gone, no complete first line yet, or
    /// already tailed by another source).
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
        Files {
            sources,
            max_open,
            watched: BTreeMap::new(),
            by_dev_ino: HashMap::new(),
            checkpoints,
            dirty: false,
            scratch: Vec::new(),
            last_scan: vec![None; n],
            next_generation: 0,
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

    /// Looks at one matching path: already known, new, or not ready yet.
    fn look_at(&mut self, si: usize, path: PathBuf, first_scan: bool, now: Instant) -> Looked {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Looked::Skipped,
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unknown;
            }
        };
        if let Some(id) = self.by_dev_ino.get(&DevIno::of(&meta)).copied() {
            let Some(w) = self.watched.get_mut(&id) else {
                return Looked::Skipped;
            };
            if w.source != si {
                return Looked::Skipped; // an earlier source already tails it
            }
            if w.path != path {
                tracing::info!(source = %self.sources[si].name, from = %w.path.display(), to = %path.display(), "File was renamed; following it.");
                w.path = path;
                self.checkpoints.set(
                    w.stream.clone(),
                    Entry {
                        offset: w.acked,
                        path: w.path.to_string_lossy().into_owned(),
                        source: self.sources[si].name.clone(),
                    },
                );
                self.dirty = true;
            }
            w.orphan = false;
            return Looked::Tracked(id);
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Looked::Skipped,
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unopened;
            }
        };
        let id = match identity::identify(&file) {
            Ok(Some(id)) => id,
            Ok(None) => return Looked::Skipped, // no complete first line yet
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unopened;
            }
        };
        if self.watched.contains_key(&id) {
            return Looked::Skipped; // the path changed between stat and open
        }
        if self.watched.len() >= self.max_open && !self.evict_one() {
            if !self.warned_full {
                self.warned_full = true;
                tracing::warn!(max_open_files = self.max_open, path = %path.display(), "Too many open files; new files wait until others are released.");
            }
            return Looked::Unopened;
        }
        let stream = id.to_string();
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let src = &self.sources[si];
        let offset = match self.checkpoints.get(&stream) {
            Some(e) if e.offset <= len => e.offset,
            Some(e) => {
                tracing::warn!(source = %src.name, path = %path.display(), checkpoint = e.offset, len, "File is shorter than its checkpoint; reading it again from the start.");
                0
            }
            None if first_scan && src.start_at == StartAt::End => {
                end_of_last_line(&file, len).unwrap_or(0)
            }
            None => 0,
        };
        tracing::info!(source = %src.name, path = %path.display(), stream = %stream, offset, "Tailing file.");
        self.checkpoints.set(
            stream.clone(),
            Entry {
                offset,
                path: path.to_string_lossy().into_owned(),
                source: src.name.clone(),
            },
        );
        self.dirty = true;
        self.by_dev_ino.insert(id.dev_ino, id);
        self.next_generation += 1;
        self.watched.insert(
            id,
            Watched {
                generation: self.next_generation,
                stream,
                source: si,
                path,
                file,
                tail: Tail::new(offset, src.max_line_bytes),
                acked: offset,
                orphan: false,
                len,
                changed_at: now,
                warned_truncated: false,
            },
        );
        Looked::Tracked(id)
    }

    fn read_error(&self, si: usize, path: &std::path::Path, e: &std::io::Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(source = %self.sources[si].name, path = %path.display(), error = %e, "Cannot open file; will try again at the next scan.");
    }

    /// Closes one idle file that a path still leads to (it is found again by
    /// the next scan and resumes from its checkpoint). False if none is idle.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .watched
            .iter()
            .filter(|(_, w)| !w.orphan && w.acked == w.tail.offset() && w.len == w.acked)
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
        self.by_dev_ino.remove(&id.dev_ino);
        if self.cursor == Some(id) {
            self.cursor = None;
        }
        Some(w)
    }

    /// After the first complete scan: forgets checkpoints of files that no
    /// longer exist (deleted while the agent was stopped).
    pub fn prune_absent(&mut self) {
        let present: std::collections::HashSet<String> =
            self.watched.values().map(|w| w.stream.clone()).collect();
        let before = self.checkpoints.entries().count();
        self.checkpoints.retain(|k, _| present.contains(k));
        let pruned = before - self.checkpoints.entries().count();
        if pruned > 0 {
            tracing::info!(pruned, "Forgot checkpoints of files that no longer exist.");
            self.dirty = true;
        }
    }

    /// Reads lines into `batch` until it is full or every file is at its
    /// end, taking files in turns.
    pub fn fill(&mut self, batch: &mut Building, now: Instant) {
        let ids: Vec<FileId> = match self.cursor {
            Some(c) => self
                .watched
                .range(c..)
                .chain(self.watched.range(..c))
                .map(|(id, _)| *id)
                .collect(),
            None => self.watched.keys().copied().collect(),
        };
        for id in ids {
            if !batch.has_room() {
                self.cursor = Some(id);
                return;
            }
            self.fill_one(id, batch, now);
        }
        self.cursor = None;
    }

    fn fill_one(&mut self, id: FileId, batch: &mut Building, now: Instant) {
        let Some(w) = self.watched.get_mut(&id) else {
            return;
        };
        let src = &self.sources[w.source];
        let len = match w.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %w.path.display(), error = %e, "Cannot stat open file.");
                return;
            }
        };
        if len != w.len {
            w.len = len;
            w.changed_at = now;
        }
        if len < w.tail.offset() {
            // Truncated in place: not the rotation this agent handles yet.
            // Forget it; the next scan identifies it again as a new file.
            tracing::warn!(source = %src.name, path = %w.path.display(), len, offset = w.tail.offset(), "File shrank (truncated in place); reading it again as a new file.");
            let stream = w.stream.clone();
            self.drop_file(id);
            self.checkpoints.remove(&stream);
            self.dirty = true;
            return;
        }
        let read_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let path = w.path.to_string_lossy().into_owned();
        let generation = w.generation;
        let mut truncated_lines = 0u64;
        let mut emit = |line: crate::tail::Line| {
            let mut record = Record {
                stream: w.stream.clone(),
                source: src.name.clone(),
                source_type: src.source_type.clone(),
                path: path.clone(),
                offset: line.offset,
                read_time_ms,
                line: None,
                line_b64: None,
                truncated: line.truncated,
            };
            record.set_raw(&line.bytes);
            truncated_lines += u64::from(line.truncated);
            batch.push(Pending {
                record,
                mark: Mark {
                    file: id,
                    generation,
                    next: line.next,
                    len: line.bytes.len(),
                    read_at: now,
                },
            });
            batch.has_room()
        };
        let mut result = w.tail.poll(&w.file, &mut self.scratch, &mut emit);
        // A rotated-away file that stayed unchanged: its last line will
        // never get a newline, so send it as it is.
        if matches!(result, Ok(crate::tail::Stop::Eof))
            && w.orphan
            && w.tail.has_partial(len)
            && now.duration_since(w.changed_at) >= src.rotate_wait
        {
            result = w.tail.finish(&w.file).map(|line| {
                if let Some(line) = line {
                    emit(line);
                }
                crate::tail::Stop::Eof
            });
        }
        if truncated_lines > 0 {
            self.stats
                .truncated
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
    }

    /// Records that the collector acknowledged `sent`: moves the acked
    /// offsets, releases drained orphans, and saves the checkpoints.
    pub fn commit(&mut self, sent: &[Mark], now: Instant) -> Result<(), CheckpointError> {
        for p in sent {
            let Some(w) = self.watched.get_mut(&p.file) else {
                continue; // released or dropped meanwhile
            };
            if w.generation != p.generation || p.next <= w.acked {
                continue;
            }
            w.acked = p.next;
            self.checkpoints.set(
                w.stream.clone(),
                Entry {
                    offset: w.acked,
                    path: w.path.to_string_lossy().into_owned(),
                    source: self.sources[w.source].name.clone(),
                },
            );
            self.dirty = true;
        }
        self.release_drained(now);
        self.save()
    }

    /// Rewinds the files of lines that were taken but will never be
    /// acknowledged to their acknowledged offsets; returns those files.
    pub fn rewind(&mut self, lost: &[Mark]) -> Vec<FileId> {
        let mut ids: Vec<FileId> = lost.iter().map(|m| m.file).collect();
        ids.sort();
        ids.dedup();
        for id in &ids {
            if let Some(w) = self.watched.get_mut(id) {
                let max = self.sources[w.source].max_line_bytes;
                w.tail = Tail::new(w.acked, max);
            }
        }
        ids
    }

    /// Releases orphans that are read to their end, idle for `rotate_wait`,
    /// and fully acknowledged; forgets their checkpoints.
    pub fn release_drained(&mut self, now: Instant) {
        let done: Vec<FileId> = self
            .watched
            .iter()
            .filter(|(_, w)| {
                w.orphan
                    && w.acked == w.tail.offset()
                    && w.len <= w.acked
                    && now.duration_since(w.changed_at) >= self.sources[w.source].rotate_wait
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(w) = self.drop_file(id) {
                tracing::info!(source = %self.sources[w.source].name, path = %w.path.display(), stream = %w.stream, offset = w.acked, "Rotated file fully shipped; released.");
                self.checkpoints.remove(&w.stream);
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

/// Offset just past the last `\n` of the file: where "start at the end"
/// begins, so that a line being written is read whole.
fn end_of_last_line(file: &File, len: u64) -> std::io::Result<u64> {
    const STEP: u64 = 64 * 1024;
    let mut buf = vec![0u8; STEP as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(STEP);
        let n = identity::read_full_at(file, &mut buf[..(end - start) as usize], start)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
