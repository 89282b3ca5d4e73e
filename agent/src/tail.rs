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

use crate::encoding::Encoding;
use crate::identity::{Guard, read_full_at};

/// One line (or piece of a split line) as read, without its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of the first byte of the line (or piece) in the file.
    pub offset: u64,
    /// Offset just past it (past the terminator for a line): where the
    /// next one starts, and the checkpoint once it is acknowledged.
    pub next: u64,
    /// The text as UTF-8 (UTF-8 files: the bytes as they are), at most
    /// `max_line_bytes` of them.
    pub bytes: Vec<u8>,
    /// The record is not the whole line: cut (truncate mode) or a piece
    /// that does not end the line (split mode).
    pub truncated: bool,
    /// A piece of a split line (counted apart from truncated lines).
    pub piece: bool,
    /// Check of the bytes just before `next`.
    pub guard: Guard,
}

/// What to do with lines longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    /// Keep the first `max_line_bytes` and drop the rest of the line.
    Truncate,
    /// Send the line as several records of at most `max_line_bytes`.
    Split,
}

/// How the bytes of one file become lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Longest record text, in UTF-8 bytes.
    pub max_line: usize,
    pub long_lines: LongLines,
    pub encoding: Encoding,
    /// Byte-order mark at offset 0, skipped.
    pub bom_len: u64,
}

impl Format {
    /// UTF-8 without a byte-order mark.
    #[cfg(test)]
    pub fn utf8(max_line: usize, long_lines: LongLines) -> Format {
        Format {
            max_line,
            long_lines,
            encoding: Encoding::Utf8,
            bom_len: 0,
        }
    }
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
    /// Bytes in `[line_start, scan_pos)` are known to hold no terminator.
    scan_pos: u64,
    fmt: Format,
}

/// Bytes read from a file at once: always room for a whole line of
/// `max_line` UTF-8 bytes with its CRLF, whatever the encoding.
fn chunk_len(fmt: &Format) -> usize {
    let unit = fmt.encoding.unit();
    (fmt.max_line * unit + 2 * unit).max(64 * 1024)
}

impl Tail {
    /// A reader that starts at `offset`, which must be the start of a line
    /// (or of a piece, in split mode); a byte-order mark is skipped.
    pub fn new(offset: u64, fmt: Format) -> Tail {
        let offset = offset.max(fmt.bom_len);
        Tail {
            line_start: offset,
            scan_pos: offset,
            fmt,
        }
    }

    /// Offset of the first byte not yet returned.
    pub fn offset(&self) -> u64 {
        self.line_start
    }

    /// The format lines are read in.
    pub fn format(&self) -> Format {
        self.fmt
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
        let enc = self.fmt.encoding;
        let unit = enc.unit();
        let max = self.fmt.max_line;
        let split = self.fmt.long_lines == LongLines::Split;
        scratch.resize(chunk_len(&self.fmt), 0);
        loop {
            if self.scan_pos - self.line_start <= (max * unit + unit) as u64 {
                // Normal case: read from the start of the current line.
                let n = read_full_at(file, scratch, self.line_start)?;
                let whole = n - n % unit;
                let mut start = 0;
                loop {
                    let buf = &scratch[start..whole];
                    let (line, used) = match enc.find_newline(buf) {
                        Some(i) => {
                            let raw = enc.strip_cr(&buf[..i]);
                            let p = if split {
                                enc.piece_len(raw, max)
                            } else {
                                raw.len()
                            };
                            if p < raw.len() {
                                (self.piece(&scratch[..start + p], start, p), p)
                            } else {
                                let end = start + i + unit;
                                (self.make_line(raw, &scratch[..end], i + unit), i + unit)
                            }
                        }
                        None if split && buf.len() >= unit => {
                            // Longer than a piece even if its last unit is a CR.
                            let p = enc.piece_len(buf, max);
                            if p >= buf.len() - unit {
                                break;
                            }
                            (self.piece(&scratch[..start + p], start, p), p)
                        }
                        None => break,
                    };
                    start += used;
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
                // A full buffer without a terminator: an over-long line.
                self.scan_pos = self.line_start + whole as u64;
            } else {
                // Over-long line: look for its end, keeping nothing.
                let n = read_full_at(file, scratch, self.scan_pos)?;
                let n = n - n % unit;
                if n == 0 {
                    return Ok(Stop::Eof);
                }
                match enc.find_newline(&scratch[..n]) {
                    Some(i) => {
                        let end = self.scan_pos + i as u64;
                        let line = self.read_head(file, end, unit as u64)?;
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
        let len = len - (len - self.line_start.min(len)) % self.fmt.encoding.unit() as u64;
        if len <= self.line_start {
            return Ok(None);
        }
        self.read_head(file, len, 0).map(Some)
    }

    /// The piece `buf[start..start + p]` of a line too long for one record;
    /// `before` is the buffer up to the piece's end.
    fn piece(&mut self, before: &[u8], start: usize, p: usize) -> Line {
        let offset = self.line_start;
        self.line_start = offset + p as u64;
        self.scan_pos = self.line_start;
        Line {
            offset,
            next: self.line_start,
            bytes: self.fmt.encoding.to_utf8(&before[start..]).into_owned(),
            truncated: true,
            piece: true,
            guard: Guard::of(before),
        }
    }

    /// Builds the line `raw` (terminator and CR excluded) that starts at
    /// `line_start` and takes `used` bytes with its terminator; `before` is
    /// the buffer up to the end of the terminator.
    fn make_line(&mut self, raw: &[u8], before: &[u8], used: usize) -> Line {
        let offset = self.line_start;
        self.line_start = offset + used as u64;
        self.scan_pos = self.line_start;
        let text = self.fmt.encoding.to_utf8(raw);
        let (bytes, truncated) = cut(&text, self.fmt.max_line);
        Line {
            offset,
            next: self.line_start,
            bytes,
            truncated,
            piece: false,
            guard: Guard::of(before),
        }
    }

    /// The line from `line_start` to `end` (terminator excluded), read again
    /// from the file (only its head is kept), and the move past its
    /// `term_len` terminator bytes.
    fn read_head(&mut self, file: &File, end: u64, term_len: u64) -> io::Result<Line> {
        let enc = self.fmt.encoding;
        let unit = enc.unit();
        let offset = self.line_start;
        let len = end - offset;
        let cap = self.fmt.max_line * unit + unit;
        let want = usize::try_from(len).map_or(cap, |l| l.min(cap));
        let mut head = vec![0u8; want];
        let n = read_full_at(file, &mut head, offset)?;
        head.truncate(n - n % unit);
        let raw = if len == head.len() as u64 {
            enc.strip_cr(&head)
        } else {
            &head[..]
        };
        let text = enc.to_utf8(raw);
        let (bytes, truncated) = cut(&text, self.fmt.max_line);
        self.line_start = end + term_len;
        self.scan_pos = self.line_start;
        Ok(Line {
            offset,
            next: self.line_start,
            bytes,
            truncated: truncated || len > head.len() as u64,
            piece: false,
            guard: Guard::read(file, self.line_start)?,
        })
    }
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
#[path = "tail_tests.rs"]
mod tests;
