//! File identity: which file is this, whatever its path is now?
//!
//! A log file is known by its device and inode plus a checksum of its first
//! line. The inode follows the file across renames (rotation); the checksum
//! tells a new file apart from an old one whose inode number was reused after
//! deletion. The identity is stable for the life of the file and across agent
//! restarts and upgrades (the checksum is FNV-1a, fixed here), so it names the
//! file in checkpoints and on the wire (`Record.stream`).
//!
//! A file whose first line is not complete yet has no identity: it is not read
//! until it has one, so an empty file just created by a rotation is not
//! mistaken for anything else.

use std::fmt;
use std::fs::File;
use std::io;

use crate::encoding::Sniffed;

/// How many bytes of the first line are checksummed at most. A first line
/// longer than this is identified by its first `FINGERPRINT_MAX` bytes.
pub const FINGERPRINT_MAX: usize = 4096;

/// Where the file lives on disk (device and inode); changes when a path is
/// re-created, not when it is renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevIno {
    pub dev: u64,
    pub ino: u64,
}

impl DevIno {
    /// The device and inode of an open file or of a path's metadata.
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> DevIno {
        use std::os::unix::fs::MetadataExt as _;
        DevIno {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Without inodes the identity rests on the first line alone.
    #[cfg(not(unix))]
    pub fn of(_meta: &std::fs::Metadata) -> DevIno {
        DevIno { dev: 0, ino: 0 }
    }
}

/// The identity of one log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev_ino: DevIno,
    /// FNV-1a 64 of the first line (with its `\n`), at most [`FINGERPRINT_MAX`] bytes.
    pub first_line: u64,
}

impl fmt::Display for FileId {
    /// The `Record.stream` form: `<dev>-<inode>-<checksum>` in hexadecimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}-{:x}-{:016x}",
            self.dev_ino.dev, self.dev_ino.ino, self.first_line
        )
    }
}

impl FileId {
    /// Reads back the [`fmt::Display`] form (a checkpoint key).
    pub fn parse(s: &str) -> Option<FileId> {
        let mut parts = s.split('-');
        let dev = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ino = u64::from_str_radix(parts.next()?, 16).ok()?;
        let first_line = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(FileId {
            dev_ino: DevIno { dev, ino },
            first_line,
        })
    }
}

/// What the head of a file says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ident {
    /// A text file with its identity and encoding.
    Text(FileId, Sniffed),
    /// A compressed file (rotated and compressed log): never read as text.
    Compressed,
    /// No complete first line yet (and shorter than [`FINGERPRINT_MAX`]).
    Incomplete,
}

/// Reads the identity of an open file from its first line.
pub fn identify(file: &File) -> io::Result<Ident> {
    let meta = file.metadata()?;
    let mut buf = [0u8; FINGERPRINT_MAX];
    let n = read_full_at(file, &mut buf, 0)?;
    let head = &buf[..n];
    if crate::encoding::is_compressed(head) {
        return Ok(Ident::Compressed);
    }
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(i) => &head[..=i],
        None if n == FINGERPRINT_MAX => head,
        None => return Ok(Ident::Incomplete),
    };
    Ok(Ident::Text(
        FileId {
            dev_ino: DevIno::of(&meta),
            first_line: fnv1a64(line),
        },
        crate::encoding::sniff(head),
    ))
}

/// How many bytes a [`Guard`] covers at most.
pub const GUARD_MAX: usize = 64;

/// A check of the bytes just before a position in a file (the end of the
/// last line read or acknowledged). It tells, without keeping any content,
/// whether a file still holds what was read from it: a file truncated and
/// written again past the old position fails it, and a copy of the file
/// (`copytruncate`) passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Guard {
    /// Bytes covered, ending at the position (fewer near the file start).
    pub len: u8,
    /// FNV-1a 64 of those bytes.
    pub hash: u64,
}

impl Guard {
    /// The guard of a position whose preceding bytes end `before`.
    pub fn of(before: &[u8]) -> Guard {
        let tail = &before[before.len().saturating_sub(GUARD_MAX)..];
        Guard {
            // GUARD_MAX fits in a u8.
            len: u8::try_from(tail.len()).unwrap_or(u8::MAX),
            hash: fnv1a64(tail),
        }
    }

    /// The guard of position `end` read from `file`.
    pub fn read(file: &File, end: u64) -> io::Result<Guard> {
        let len = end.min(GUARD_MAX as u64) as usize;
        let mut buf = [0u8; GUARD_MAX];
        let n = read_full_at(file, &mut buf[..len], end - len as u64)?;
        Ok(Guard::of(&buf[..n]))
    }

    /// Whether `file` holds the same bytes before `end`.
    pub fn holds(&self, file: &File, end: u64) -> io::Result<bool> {
        let len = u64::from(self.len);
        if len > end {
            return Ok(false);
        }
        let mut buf = [0u8; GUARD_MAX];
        let want = &mut buf[..usize::from(self.len).min(GUARD_MAX)];
        let n = read_full_at(file, want, end - len)?;
        Ok(n == want.len() && fnv1a64(want) == self.hash)
    }
}

/// Most [`Marks`] kept per file.
pub const MAX_MARKS: usize = 32;

/// Line ends read from a file, each with the [`Guard`] of the bytes before
/// it: the points at which a copy of the file (`copytruncate`) can be
/// recognised even when the copy is shorter than what was read (found while
/// logrotate is still copying, or lines written between its copy and its
/// truncate). Bounded: when full, every other mark is dropped, so the marks
/// stay spread over everything read.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Marks(Vec<(u64, Guard)>);

impl Marks {
    /// Records the line end `at`; ignored unless past the last mark.
    pub fn push(&mut self, at: u64, guard: Guard) {
        if self.0.last().is_some_and(|(o, _)| *o >= at) {
            return;
        }
        if self.0.len() >= MAX_MARKS {
            let mut i = 0;
            self.0.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.0.push((at, guard));
    }

    /// The marks, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Guard)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// FNV-1a, 64 bits: tiny, fixed for ever, good enough to tell first lines apart.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn marks_stay_bounded_and_spread_over_what_was_read() {
        let mut m = Marks::default();
        for i in 1..=1000u64 {
            m.push(i * 100, Guard::default());
        }
        m.push(50, Guard::default()); // behind the last: ignored
        let at: Vec<u64> = m.iter().map(|(o, _)| o).collect();
        assert!(at.len() <= MAX_MARKS && at.len() > MAX_MARKS / 2, "{at:?}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        assert_eq!(at.last(), Some(&100_000));
        assert!(
            at[0] <= 1_000,
            "the early marks thin out but one stays early: {at:?}"
        );
    }

    #[test]
    fn fnv_is_the_published_function() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn no_identity_until_first_line_is_complete() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        let mut w = File::create(&path)?;
        let r = File::open(&path)?;
        assert_eq!(identify(&r)?, Ident::Incomplete);
        w.write_all(b"first")?;
        assert_eq!(identify(&r)?, Ident::Incomplete);
        w.write_all(b" line\nsecond")?;
        let id = identify(&r)?;
        assert!(matches!(id, Ident::Text(..)));
        w.write_all(b" line\n")?;
        assert_eq!(identify(&r)?, id, "later lines do not change it");
        Ok(())
    }

    #[test]
    fn rename_keeps_identity_and_recreate_changes_it() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"same first line\n")?;
        let old = identify(&File::open(&path)?)?;
        let rotated = dir.path().join("a.log.1");
        std::fs::rename(&path, &rotated)?;
        assert_eq!(identify(&File::open(&rotated)?)?, old);
        std::fs::write(&path, b"same first line\n")?;
        let new = identify(&File::open(&path)?)?;
        assert!(matches!(new, Ident::Text(..)));
        assert_ne!(new, old, "same first line, different inode");
        Ok(())
    }

    #[test]
    fn long_first_line_is_identified_by_its_head() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; FINGERPRINT_MAX + 10])?;
        assert!(matches!(identify(&File::open(&path)?)?, Ident::Text(..)));
        Ok(())
    }

    #[test]
    fn guard_tells_truncated_from_copied() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"line one\nline two\n")?;
        let g = Guard::read(&File::open(&path)?, 18)?;
        assert_eq!(g, Guard::of(b"line one\nline two\n"));
        let copy = dir.path().join("a.log.1");
        std::fs::copy(&path, &copy)?;
        assert!(g.holds(&File::open(&copy)?, 18)?);
        std::fs::write(&path, b"line one\nline 2wo\nmore\n")?;
        assert!(!g.holds(&File::open(&path)?, 18)?);
        std::fs::write(&path, b"short\n")?;
        assert!(!g.holds(&File::open(&path)?, 18)?);
        Ok(())
    }

    #[test]
    fn compressed_files_have_no_text_identity() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log.2.gz");
        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0, b'\n'])?;
        assert_eq!(identify(&File::open(&path)?)?, Ident::Compressed);
        Ok(())
    }
}
