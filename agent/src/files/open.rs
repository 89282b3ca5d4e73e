//! Starting to track a file: which stream, from which offset.
//!
//! In order:
//!
//! 1. The checkpoint knows the identity: resume there, if the file still
//!    holds what was acknowledged (its length and guard); if not, it was
//!    truncated while the agent was away: a new generation from offset 0.
//! 2. A copy of a known stream of the same source (same first line, and the
//!    bytes before that stream's acknowledged offset are the same): continue
//!    that stream from there (`copytruncate`).
//! 3. A new file: from its start, or its end when the source starts at the
//!    end; a new generation if the checkpoint knew another content at the
//!    same device and inode.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint::Retired;
use crate::config::StartAt;
use crate::encoding::Sniffed;
use crate::identity::{self, DevIno, FileId, Guard, Ident, Marks};
use crate::tail::{Format, Tail};

use super::{Files, Looked, Watched};

/// A stream a newly found file may be a copy of.
struct Candidate<'a> {
    stream: &'a str,
    /// Acknowledged offset of the stream: where a copy continues at most.
    acked: u64,
    /// Line ends read of the stream, with the guard of the bytes before each.
    points: Vec<(u64, Guard)>,
    /// The stream's file while it is still open, and how far it was read.
    live: Option<(&'a File, u64)>,
}

/// Where and how reading of a file starts.
struct Start {
    /// The file is a copy of a known stream.
    copy: bool,
    offset: u64,
    stream: String,
    generation: u64,
    guard: Option<Guard>,
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Files {
    /// Looks at one matching path: already known, new, or not ready yet.
    pub(super) fn look_at(
        &mut self,
        si: usize,
        path: PathBuf,
        first_scan: bool,
        now: Instant,
    ) -> Looked {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Looked::Skipped,
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unknown;
            }
        };
        let dev_ino = DevIno::of(&meta);
        if let Some(id) = self.by_dev_ino.get(&dev_ino).copied() {
            let Some(w) = self.watched.get_mut(&id) else {
                return Looked::Skipped;
            };
            if w.source != si {
                return Looked::Skipped; // an earlier source already tails it
            }
            if w.path != path {
                tracing::info!(source = %self.sources[si].name, from = %w.path.display(), to = %path.display(), "File was renamed; following it.");
                w.path = path;
                w.rotated = true;
                self.store(&id);
            }
            if let Some(w) = self.watched.get_mut(&id) {
                w.orphan = false;
            }
            return Looked::Tracked(id);
        }
        if self.ignored.get(&dev_ino) == Some(&meta.len()) {
            return Looked::Skipped;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Looked::Skipped,
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unopened;
            }
        };
        let (id, sniffed) = match identity::identify(&file) {
            Ok(Ident::Text(id, sniffed)) => (id, sniffed),
            Ok(Ident::Incomplete) => return Looked::Skipped,
            Ok(Ident::Compressed) => {
                tracing::debug!(path = %path.display(), "Compressed file; not read as text.");
                self.ignored.insert(dev_ino, meta.len());
                return Looked::Skipped;
            }
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
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = match self.start_of(si, &file, id, len, first_scan, &path) {
            Ok(s) => s,
            Err(e) => {
                self.read_error(si, &path, &e);
                return Looked::Unopened;
            }
        };
        tracing::info!(source = %self.sources[si].name, path = %path.display(), stream = %start.stream, offset = start.offset, "Tailing file.");
        self.track(si, id, file, path, sniffed, start, len, now);
        Looked::Tracked(id)
    }

    /// Adds a file to the set and writes its checkpoint entry.
    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        si: usize,
        id: FileId,
        file: File,
        path: PathBuf,
        sniffed: Sniffed,
        start: Start,
        len: u64,
        now: Instant,
    ) {
        let src = &self.sources[si];
        let fmt = Format {
            max_line: src.max_line_bytes,
            long_lines: src.long_lines,
            encoding: sniffed.encoding,
            bom_len: sniffed.bom_len,
        };
        let mtime = file.metadata().and_then(|m| m.modified()).ok();
        self.next_tracking += 1;
        self.by_dev_ino.insert(id.dev_ino, id);
        self.watched.insert(
            id,
            Watched {
                tracking: self.next_tracking,
                stream: start.stream,
                generation: start.generation,
                source: si,
                path,
                file,
                tail: Tail::new(start.offset, fmt),
                acked: start.offset,
                acked_guard: start.guard,
                read_guard: start.guard,
                marks: Marks::default(),
                first_line_pending: false,
                orphan: false,
                rotated: start.copy,
                len,
                changed_at: now,
                checked_len: len,
                checked_mtime: mtime,
                warned_truncated: false,
            },
        );
        self.store(&id);
    }

    /// Decides where reading of a newly found file starts.
    fn start_of(
        &mut self,
        si: usize,
        file: &File,
        id: FileId,
        len: u64,
        first_scan: bool,
        path: &Path,
    ) -> std::io::Result<Start> {
        let src_name = self.sources[si].name.clone();
        let key = id.to_string();
        let mut generation = 0;
        if let Some(e) = self.checkpoints.get(&key).cloned() {
            let stream = e.stream.clone().unwrap_or_else(|| key.clone());
            let holds = match e.guard {
                Some(g) if e.offset > 0 => g.holds(file, e.offset)?,
                _ => true,
            } && match e.read_guard {
                Some(g) if e.read_offset > e.offset => {
                    e.read_offset <= len && g.holds(file, e.read_offset)?
                }
                _ => true,
            };
            if e.offset <= len && holds {
                return Ok(Start {
                    copy: false,
                    offset: e.offset,
                    stream,
                    generation: e.generation,
                    guard: e.guard,
                });
            }
            self.stats.truncations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %src_name, path = %path.display(), checkpoint = e.offset, len, stream = %stream, "File was truncated while the agent was stopped; its content is a new stream.");
            self.retire(
                &stream,
                &src_name,
                id.first_line,
                e.offset,
                e.guard.map(|g| (e.offset, g)),
                Marks::default(),
            );
            self.checkpoints.remove(&key);
            self.dirty = true;
            generation = e.generation + 1;
            // Its new content may still be a copy of a known stream.
        }
        // Another content known at the same place on disk: rewritten (or
        // the inode reused) while the agent was away.

        let same_place: Vec<(String, crate::checkpoint::Entry)> = self
            .checkpoints
            .entries()
            .filter(|(k, _)| FileId::parse(k).is_some_and(|o| o.dev_ino == id.dev_ino))
            .filter(|(k, _)| !self.watched.keys().any(|w| w.to_string() == *k))
            .map(|(k, e)| (k.to_owned(), e.clone()))
            .collect();
        for (k, e) in same_place {
            let old = FileId::parse(&k).map_or(0, |o| o.first_line);
            let stream = e.stream.clone().unwrap_or_else(|| k.clone());
            self.retire(
                &stream,
                &e.source,
                old,
                e.offset,
                e.guard.map(|g| (e.offset, g)),
                Marks::default(),
            );
            generation = generation.max(e.generation + 1);
            self.checkpoints.remove(&k);
            self.dirty = true;
        }
        if let Some(c) = self.copy_of(si, file, id, len)? {
            tracing::info!(source = %src_name, path = %path.display(), stream = %c.stream, offset = c.offset, "File is a copy of a known stream (copytruncate); continuing that stream after its acknowledged lines.");
            return Ok(c);
        }
        let offset = if first_scan && self.sources[si].start_at == StartAt::End {
            end_of_last_line(file, len, sniffed_unit(file)).unwrap_or(0)
        } else {
            0
        };
        let guard = if offset > 0 {
            Some(Guard::read(file, offset)?)
        } else {
            None
        };
        // Every new content gets a name never used before (an inode
        // reused with the same first line is the same identity).
        self.dirty = true;
        Ok(Start {
            copy: false,
            offset,
            stream: self.checkpoints.new_stream(&id.to_string()),
            generation,
            guard,
        })
    }

    /// A known stream of the same source that `file` is a copy of: same
    /// first line, and the same bytes before a point that was read of that
    /// stream. The copy continues the stream from that point or from what
    /// was acknowledged, whichever comes first; lines of the copy the
    /// collector already holds (same stream, same offsets) are dropped
    /// there as duplicates. The furthest start wins.
    ///
    /// The points: the stream's acknowledged and read offsets, its
    /// [`Marks`], and, while the original is still open and not yet
    /// truncated, the copy's own last line end compared byte for byte with
    /// the original: a copy that logrotate is still writing, or one
    /// shorter than what was read (lines written between logrotate's copy
    /// and its truncate), is still known as a copy.
    fn copy_of(
        &self,
        si: usize,
        file: &File,
        id: FileId,
        len: u64,
    ) -> std::io::Result<Option<Start>> {
        let name = &self.sources[si].name;
        let mut cands: Vec<Candidate<'_>> = Vec::new();
        for (k, e) in self.checkpoints.entries() {
            let Some(other) = FileId::parse(k) else {
                continue;
            };
            if e.source != *name || other.first_line != id.first_line || other.dev_ino == id.dev_ino
            {
                continue;
            }
            if let Some(w) = self.watched.get(&other) {
                let mut points: Vec<(u64, Guard)> = w.marks.iter().collect();
                points.extend(w.acked_guard.map(|g| (w.acked, g)));
                points.extend(w.read_guard.map(|g| (w.tail.offset(), g)));
                cands.push(Candidate {
                    stream: &w.stream,
                    acked: w.acked,
                    points,
                    live: Some((&w.file, w.tail.offset())),
                });
            } else if let Some(g) = e.guard {
                cands.push(Candidate {
                    stream: e.stream.as_deref().unwrap_or(k),
                    acked: e.offset,
                    points: vec![(e.offset, g)],
                    live: None,
                });
            }
        }
        // Retired streams: files truncated in place, or released.
        for r in self.checkpoints.retired() {
            if let Some(g) = r
                .guard
                .filter(|_| r.source == *name && r.first_line == id.first_line)
            {
                let mut points: Vec<(u64, Guard)> = r.marks.iter().collect();
                points.push((r.check_at.max(r.offset), g));
                cands.push(Candidate {
                    stream: &r.stream,
                    acked: r.offset,
                    points,
                    live: None,
                });
            }
        }
        if cands.is_empty() {
            return Ok(None);
        }
        // A point no further than the first line proves nothing the
        // identity does not: a new file that starts with the same header as
        // a file still being read (dateext, then a new log) would take over
        // its stream, and the collector would drop one of the two as
        // duplicates.
        let first_line_end = first_line_end(file)?;
        let unit = sniffed_unit(file);
        let mut best: Option<Start> = None;
        for c in cands {
            let mut verified = 0u64;
            for (at, guard) in &c.points {
                if *at > verified && *at <= len && *at > first_line_end && guard.holds(file, *at)? {
                    verified = *at;
                }
            }
            if let Some((orig, read)) = c.live {
                let end = end_of_last_line(file, len.min(read), unit)?;
                if end > verified.max(first_line_end) && same_bytes_before(file, orig, end)? {
                    verified = end;
                }
            }
            let offset = c.acked.min(verified);
            if verified == 0 || best.as_ref().is_some_and(|b| b.offset >= offset) {
                continue;
            }
            let guard = if offset > 0 {
                Some(Guard::read(file, offset)?)
            } else {
                None
            };
            best = Some(Start {
                copy: true,
                offset,
                stream: c.stream.to_owned(),
                generation: 0,
                guard,
            });
        }
        Ok(best)
    }

    /// Remembers what was acknowledged of a stream whose file was truncated.
    pub(super) fn retire(
        &mut self,
        stream: &str,
        source: &str,
        first_line: u64,
        offset: u64,
        check: Option<(u64, Guard)>,
        marks: Marks,
    ) {
        let Some((check_at, guard)) = check else {
            return; // nothing read: nothing a copy could skip
        };
        self.checkpoints.retire(Retired {
            stream: stream.to_owned(),
            source: source.to_owned(),
            first_line,
            offset,
            check_at,
            guard: Some(guard),
            marks,
            at: unix_now(),
        });
        self.dirty = true;
    }

    pub(super) fn read_error(&self, si: usize, path: &Path, e: &std::io::Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(source = %self.sources[si].name, path = %path.display(), error = %e, "Cannot open file; will try again at the next scan.");
    }
}

/// Offset just past the last `\n` of the file: where "start at the end"
/// begins, so that a line being written is read whole.
fn end_of_last_line(file: &File, len: u64, unit: u64) -> std::io::Result<u64> {
    const STEP: u64 = 64 * 1024;
    let mut buf = vec![0u8; STEP as usize];
    let mut end = len - len % unit;
    while end > 0 {
        let start = end.saturating_sub(STEP);
        let n = identity::read_full_at(file, &mut buf[..(end - start) as usize], start)?;
        let found = buf[..n - n % unit as usize]
            .chunks_exact(unit as usize)
            .rposition(|u| u[0] == b'\n' && u[1..].iter().all(|&b| b == 0));
        if let Some(i) = found {
            return Ok(start + (i as u64 + 1) * unit);
        }
        end = start;
    }
    Ok(0)
}

/// Bytes compared to tell a copy from its original at one point.
const COMPARE_BYTES: u64 = 4096;

/// Whether `a` and `b` hold the same bytes (up to [`COMPARE_BYTES`]) before
/// `end`.
fn same_bytes_before(a: &File, b: &File, end: u64) -> std::io::Result<bool> {
    let start = end.saturating_sub(COMPARE_BYTES);
    let n = (end - start) as usize;
    let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
    Ok(identity::read_full_at(a, &mut x, start)? == n
        && identity::read_full_at(b, &mut y, start)? == n
        && x == y)
}

/// Bytes per code unit of an open file's encoding.
fn sniffed_unit(file: &File) -> u64 {
    let mut head = [0u8; 3];
    let n = identity::read_full_at(file, &mut head, 0).unwrap_or(0);
    crate::encoding::sniff(&head[..n]).encoding.unit() as u64
}

/// Where the first line of `file` ends (its length when it has no newline
/// within the fingerprint's reach).
fn first_line_end(file: &File) -> std::io::Result<u64> {
    let mut buf = [0u8; crate::identity::FINGERPRINT_MAX];
    let n = crate::identity::read_full_at(file, &mut buf, 0)?;
    Ok(buf[..n]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(n, |i| i + 1) as u64)
}
