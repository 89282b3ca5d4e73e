//! Reading lines from a file, starting at a byte offset.
//!
//! The reader keeps no bytes between calls: only the offset where the
//! current (unfinished) line starts, and how far an over-long line has been
//! scanned. Each call reads again from there into one scratch buffer, so the
//! memory is one buffer per agent, however many files are open. A final line
//! without its `\n` is not returned until the `\n` arrives (or until the file
//! is released for good, see [`Tail::finish`]).

use std::fs::File;
use std::io;

use soc_protocol::Limits;

use crate::identity::read_full_at;

/// One line as read, without its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of the first byte of the line.
    pub offset: u64,
    /// Offset just past its terminator: where the next line starts.
    pub next: u64,
    /// The bytes, at most `max_line_bytes` of them.
    pub bytes: Vec<u8>,
    /// The line was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
}

/// Why [`Tail::poll`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Everything complete has been read; an unfinished line may be waiting.
    Eof,
    /// The caller's `emit` asked to stop (the batch is full).
    Full,
}

/// Where reading of one file stands.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Start of the line being read: everything before it has been returned.
    line_start: u64,
    /// Bytes in `[line_start, scan_pos)` are known to hold no `\n`.
    scan_pos: u64,
    max_line: usize,
}

/// Bytes read from a file at once; at least `max_line + 2` so that a full
/// line with `\r\n` always fits.
fn chunk_len(max_line: usize) -> usize {
    (max_line + 2).max(64 * 1024)
}

impl Tail {
    /// A reader that starts at `offset`, which must be the start of a line.
    pub fn new(offset: u64, max_line: usize) -> Tail {
        Tail {
            line_start: offset,
            scan_pos: offset,
            max_line,
        }
    }

    /// Offset of the first byte not yet returned.
    pub fn offset(&self) -> u64 {
        self.line_start
    }

    /// Whether bytes of an unfinished line were seen past [`Tail::offset`].
    pub fn has_partial(&self, file_len: u64) -> bool {
        file_len > self.line_start
    }

    /// Reads complete lines, calling `emit` for each; stops at the end of
    /// the file or when `emit` returns `false` (after taking that line).
    /// `scratch` is reused between calls.
    pub fn poll(
        &mut self,
        file: &File,
        scratch: &mut Vec<u8>,
        mut emit: impl FnMut(Line) -> bool,
    ) -> io::Result<Stop> {
        scratch.resize(chunk_len(self.max_line), 0);
        loop {
            if self.scan_pos - self.line_start <= self.max_line as u64 + 1 {
                // Normal case: read from the start of the current line.
                let n = read_full_at(file, scratch, self.line_start)?;
                let mut start = 0;
                while let Some(i) = memchr(b'\n', &scratch[start..n]) {
                    let line = self.make_line(&scratch[start..start + i], 1);
                    start += i + 1;
                    if !emit(line) {
                        return Ok(Stop::Full);
                    }
                }
                if n < scratch.len() {
                    self.scan_pos = self.line_start + (n - start) as u64;
                    return Ok(Stop::Eof);
                }
                if start > 0 {
                    continue; // the buffer ended mid-line: re-read from that line
                }
                // A full buffer without a newline: an over-long line.
                self.scan_pos = self.line_start + n as u64;
            } else {
                // Over-long line: look for its end, keeping nothing.
                let n = read_full_at(file, scratch, self.scan_pos)?;
                if n == 0 {
                    return Ok(Stop::Eof);
                }
                match memchr(b'\n', &scratch[..n]) {
                    Some(i) => {
                        let end = self.scan_pos + i as u64;
                        let line = self.read_head(file, end, 1)?;
                        if !emit(line) {
                            return Ok(Stop::Full);
                        }
                    }
                    None => self.scan_pos += n as u64,
                }
            }
        }
    }

    /// Returns the unfinished last line, if any, as if it were complete. Used
    /// only when the file is released (rotated away or deleted and idle), so
    /// that its last bytes are not lost.
    pub fn finish(&mut self, file: &File) -> io::Result<Option<Line>> {
        let len = file.metadata()?.len();
        if len <= self.line_start {
            return Ok(None);
        }
        self.read_head(file, len, 0).map(Some)
    }

    /// Builds the line `raw` (terminator excluded) that starts at
    /// `line_start`, and moves past it and its `term_len` terminator bytes.
    fn make_line(&mut self, raw: &[u8], term_len: u64) -> Line {
        let offset = self.line_start;
        self.line_start = offset + raw.len() as u64 + term_len;
        self.scan_pos = self.line_start;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (bytes, truncated) = cut(raw, self.max_line);
        Line {
            offset,
            next: self.line_start,
            bytes,
            truncated,
        }
    }

    /// The line from `line_start` to `end` (terminator excluded), read again
    /// from the file (only its head is kept), and the move past its
    /// `term_len` terminator bytes.
    fn read_head(&mut self, file: &File, end: u64, term_len: u64) -> io::Result<Line> {
        let offset = self.line_start;
        let len = end - offset;
        let want = usize::try_from(len).map_or(self.max_line + 1, |l| l.min(self.max_line + 1));
        let mut head = vec![0u8; want];
        let n = read_full_at(file, &mut head, offset)?;
        head.truncate(n);
        let raw = if len == n as u64 {
            head.strip_suffix(b"\r").unwrap_or(&head)
        } else {
            &head[..]
        };
        let (bytes, truncated) = cut(raw, self.max_line);
        self.line_start = end + term_len;
        self.scan_pos = self.line_start;
        Ok(Line {
            offset,
            next: self.line_start,
            bytes,
            truncated: truncated || len > n as u64,
        })
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Cuts `raw` to at most `max` bytes. A cut in the middle of a UTF-8
/// character backs off to the character boundary so valid text stays text;
/// a line that is not UTF-8 is cut so that its base64 form stays within the
/// protocol's line limit (the collector estimates it as `len / 4 * 3`).
pub fn cut(raw: &[u8], max: usize) -> (Vec<u8>, bool) {
    let mut len = raw.len().min(max);
    let mut truncated = len < raw.len();
    if truncated {
        // Only the last character is incomplete (everything before the
        // first error is valid): drop that character.
        let cut_char = std::str::from_utf8(&raw[..len])
            .err()
            .filter(|e| e.error_len().is_none());
        if let Some(e) = cut_char {
            len = e.valid_up_to();
        }
    }
    let protocol_max = Limits::V1.max_line_bytes;
    if std::str::from_utf8(&raw[..len]).is_err() && len.div_ceil(3) * 3 > protocol_max {
        len = protocol_max / 3 * 3;
        truncated = true;
    }
    (raw[..len].to_vec(), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    struct Fixture {
        _dir: tempfile::TempDir,
        writer: File,
        reader: File,
        tail: Tail,
        scratch: Vec<u8>,
    }

    impl Fixture {
        fn new(max_line: usize) -> io::Result<Fixture> {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("t.log");
            let writer = File::create(&path)?;
            let reader = File::open(&path)?;
            Ok(Fixture {
                _dir: dir,
                writer,
                reader,
                tail: Tail::new(0, max_line),
                scratch: Vec::new(),
            })
        }

        fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.writer.write_all(bytes)
        }

        fn lines(&mut self) -> io::Result<Vec<Line>> {
            let mut out = Vec::new();
            let stop = self.tail.poll(&self.reader, &mut self.scratch, |l| {
                out.push(l);
                true
            })?;
            assert_eq!(stop, Stop::Eof);
            Ok(out)
        }
    }

    fn texts(lines: &[Line]) -> Vec<&[u8]> {
        lines.iter().map(|l| l.bytes.as_slice()).collect()
    }

    #[test]
    fn partial_last_line_is_held_until_complete() -> io::Result<()> {
        let mut f = Fixture::new(100)?;
        f.write(b"one\ntw")?;
        let got = f.lines()?;
        assert_eq!(texts(&got), vec![b"one".as_slice()]);
        assert_eq!((got[0].offset, got[0].next), (0, 4));
        assert!(f.lines()?.is_empty());
        f.write(b"o\nthree\n")?;
        let got = f.lines()?;
        assert_eq!(texts(&got), vec![b"two".as_slice(), b"three"]);
        assert_eq!(got[0].offset, 4);
        assert_eq!(got[1].offset, 8);
        assert_eq!(f.tail.offset(), 14);
        Ok(())
    }

    #[test]
    fn crlf_is_stripped_and_offsets_count_it() -> io::Result<()> {
        let mut f = Fixture::new(100)?;
        f.write(b"a\r\n\r\nb\rc\n")?;
        let got = f.lines()?;
        assert_eq!(texts(&got), vec![b"a".as_slice(), b"", b"b\rc"]);
        assert_eq!(got.iter().map(|l| l.offset).collect::<Vec<_>>(), [0, 3, 5]);
        assert_eq!(f.tail.offset(), 9);
        Ok(())
    }

    #[test]
    fn invalid_utf8_is_byte_exact() -> io::Result<()> {
        let mut f = Fixture::new(100)?;
        f.write(b"caf\xe9 \xff\x00ok\n")?;
        let got = f.lines()?;
        assert_eq!(got[0].bytes, b"caf\xe9 \xff\x00ok");
        let mut rec = soc_protocol::Record {
            stream: "s".into(),
            source: "x".into(),
            source_type: String::new(),
            path: String::new(),
            offset: 0,
            read_time_ms: 0,
            line: None,
            line_b64: None,
            truncated: false,
        };
        rec.set_raw(&got[0].bytes);
        assert!(rec.line_b64.is_some());
        assert_eq!(rec.raw().ok(), Some(got[0].bytes.clone()));
        Ok(())
    }

    #[test]
    fn over_long_lines_are_cut_and_flagged() -> io::Result<()> {
        let max = 16;
        let mut f = Fixture::new(max)?;
        // Longer than the scratch buffer too, and arriving in pieces.
        let long = vec![b'x'; 200_000];
        f.write(b"short\n")?;
        f.write(&long)?;
        let got = f.lines()?;
        assert_eq!(texts(&got), vec![b"short".as_slice()]);
        f.write(&long)?;
        assert!(f.lines()?.is_empty());
        f.write(b"\nafter\n")?;
        let got = f.lines()?;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes, vec![b'x'; max]);
        assert!(got[0].truncated);
        assert_eq!((got[0].offset, got[0].next), (6, 6 + 400_001));
        assert_eq!(got[1].bytes, b"after");
        assert!(!got[1].truncated);
        // Exactly at the limit, with and without CR: not truncated.
        f.write(&[b'y'; 16])?;
        f.write(b"\r\n")?;
        f.write(&[b'z'; 17])?;
        f.write(b"\n")?;
        let got = f.lines()?;
        assert_eq!((got[0].bytes.len(), got[0].truncated), (16, false));
        assert_eq!((got[1].bytes.len(), got[1].truncated), (16, true));
        Ok(())
    }

    #[test]
    fn stops_when_asked_and_resumes() -> io::Result<()> {
        let mut f = Fixture::new(100)?;
        f.write(b"1\n2\n3\n")?;
        let mut got = Vec::new();
        let stop = f.tail.poll(&f.reader, &mut f.scratch, |l| {
            got.push(l);
            false
        })?;
        assert_eq!(stop, Stop::Full);
        assert_eq!(texts(&got), vec![b"1".as_slice()]);
        assert_eq!(texts(&f.lines()?), vec![b"2".as_slice(), b"3"]);
        Ok(())
    }

    #[test]
    fn finish_returns_the_unterminated_tail() -> io::Result<()> {
        let mut f = Fixture::new(100)?;
        f.write(b"a\nlast")?;
        f.lines()?;
        let last = f.tail.finish(&f.reader)?;
        assert_eq!(
            last.map(|l| (l.bytes, l.offset, l.next)),
            Some((b"last".to_vec(), 2, 6))
        );
        assert_eq!(f.tail.offset(), 6);
        assert_eq!(f.tail.finish(&f.reader)?, None);
        Ok(())
    }

    #[test]
    fn cut_keeps_utf8_whole_and_base64_within_limit() {
        let (b, t) = cut("aé".as_bytes(), 2);
        assert_eq!((b.as_slice(), t), (b"a".as_slice(), true));
        let bin = vec![0xffu8; 70_000];
        let (b, t) = cut(&bin, 65_536);
        assert!(t);
        assert!(b.len().div_ceil(3) * 3 <= Limits::V1.max_line_bytes);
    }

    /// Model-based: random appends (CRLF, invalid UTF-8, over-long lines,
    /// lines split across writes) and random stops; what comes out equals
    /// the model's lines, in order, with exact offsets.
    #[test]
    fn random_appends_match_the_model() -> io::Result<()> {
        use rand::{Rng as _, SeedableRng as _};
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let max = 40;
            let mut f = Fixture::new(max)?;
            let mut expected: Vec<(u64, Vec<u8>, bool)> = Vec::new();
            let mut content: Vec<u8> = Vec::new();
            let mut got: Vec<Line> = Vec::new();
            for _ in 0..60 {
                // The model: a line of random bytes (no '\n'), random end.
                let len = match rng.random_range(0..10) {
                    0 => rng.random_range(max..max * 3),
                    _ => rng.random_range(0..max),
                };
                let mut line: Vec<u8> = (0..len)
                    .map(|_| match rng.random_range(0..20) {
                        0 => 0xff,
                        1 => b'\r',
                        _ => rng.random_range(b'a'..=b'z'),
                    })
                    .collect();
                let crlf = rng.random_bool(0.3);
                let offset = content.len() as u64;
                content.extend_from_slice(&line);
                content.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                if line.last() == Some(&b'\r') && !crlf {
                    line.pop(); // a lone '\r' before '\n' is a CRLF too
                }
                let (cut_bytes, truncated) = cut(&line, max);
                expected.push((offset, cut_bytes, truncated));
                // Write what the model has, in a random number of pieces.
                let written = f.writer.metadata()?.len() as usize;
                let upto = rng.random_range(written..=content.len());
                f.write(&content[written..upto])?;
                let budget = rng.random_range(1..5);
                let mut n = 0;
                f.tail.poll(&f.reader, &mut f.scratch, |l| {
                    got.push(l);
                    n += 1;
                    n < budget
                })?;
            }
            let written = f.writer.metadata()?.len() as usize;
            f.write(&content[written..])?;
            got.extend(f.lines()?);
            let got: Vec<(u64, Vec<u8>, bool)> = got
                .into_iter()
                .map(|l| (l.offset, l.bytes, l.truncated))
                .collect();
            assert_eq!(got, expected, "seed {seed}");
            assert_eq!(f.tail.offset(), content.len() as u64);
        }
        Ok(())
    }
}
