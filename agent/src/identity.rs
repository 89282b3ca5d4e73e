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

/// Reads the identity of an open file. `Ok(None)` when the file has no
/// complete first line yet (and is shorter than [`FINGERPRINT_MAX`]).
pub fn identify(file: &File) -> io::Result<Option<FileId>> {
    let meta = file.metadata()?;
    let mut buf = [0u8; FINGERPRINT_MAX];
    let n = read_full_at(file, &mut buf, 0)?;
    let head = &buf[..n];
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(i) => &head[..=i],
        None if n == FINGERPRINT_MAX => head,
        None => return Ok(None),
    };
    Ok(Some(FileId {
        dev_ino: DevIno::of(&meta),
        first_line: fnv1a64(line),
    }))
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
        assert_eq!(identify(&r)?, None);
        w.write_all(b"first")?;
        assert_eq!(identify(&r)?, None);
        w.write_all(b" line\nsecond")?;
        let id = identify(&r)?.ok_or_else(|| io::Error::other("no id"))?;
        w.write_all(b" line\n")?;
        assert_eq!(identify(&r)?, Some(id), "later lines do not change it");
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
        assert!(new.is_some());
        assert_ne!(new, old, "same first line, different inode");
        Ok(())
    }

    #[test]
    fn long_first_line_is_identified_by_its_head() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; FINGERPRINT_MAX + 10])?;
        assert!(identify(&File::open(&path)?)?.is_some());
        Ok(())
    }
}
