//! Text encodings of log files: UTF-8 (with or without a byte-order mark)
//! and UTF-16LE (Windows Defender `MPLog`, many Windows service logs).
//!
//! The encoding is read from the file's first bytes when the file is
//! opened. Lines are cut and offsets counted in the file's own bytes (so
//! checkpoints and `Record.offset` stay byte offsets of the original file);
//! only the text of a line is converted to UTF-8. A UTF-16 line holding an
//! unpaired surrogate is converted with U+FFFD in its place (UTF-8 files stay
//! byte-exact, whatever they hold).
//!
//! Compressed files (gzip, xz, zstd, bzip2, zip) are recognised by their
//! magic bytes and never read as text, whatever their name.

use std::borrow::Cow;

/// How a file's bytes become lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Bytes as they are; lines end at `\n`. Invalid UTF-8 is kept.
    Utf8,
    /// Little-endian UTF-16 code units; lines end at the unit `0x000A`.
    Utf16Le,
}

/// What the first bytes of a file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub encoding: Encoding,
    /// Length of the byte-order mark at offset 0 (never part of a line).
    pub bom_len: u64,
}

/// Reads the encoding from the first bytes of a file.
pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0xef, 0xbb, 0xbf]) {
        Sniffed {
            encoding: Encoding::Utf8,
            bom_len: 3,
        }
    } else if head.starts_with(&[0xff, 0xfe]) {
        Sniffed {
            encoding: Encoding::Utf16Le,
            bom_len: 2,
        }
    } else {
        Sniffed {
            encoding: Encoding::Utf8,
            bom_len: 0,
        }
    }
}

/// Whether the first bytes are those of a compressed file.
pub fn is_compressed(head: &[u8]) -> bool {
    const MAGIC: [&[u8]; 5] = [
        &[0x1f, 0x8b],                         // gzip
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
        b"BZh",                                // bzip2
        &[b'P', b'K', 0x03, 0x04],             // zip
    ];
    MAGIC.iter().any(|m| head.starts_with(m))
}

impl Encoding {
    /// Bytes per code unit: offsets of line starts are multiples of it
    /// (after the byte-order mark).
    pub fn unit(self) -> usize {
        match self {
            Encoding::Utf8 => 1,
            Encoding::Utf16Le => 2,
        }
    }

    /// Index of the first byte of the first line terminator in `buf`
    /// (which starts at a code unit boundary).
    pub fn find_newline(self, buf: &[u8]) -> Option<usize> {
        match self {
            Encoding::Utf8 => buf.iter().position(|&b| b == b'\n'),
            Encoding::Utf16Le => buf
                .chunks_exact(2)
                .position(|u| u == [b'\n', 0])
                .map(|i| i * 2),
        }
    }

    /// The line without a trailing carriage return.
    pub fn strip_cr(self, raw: &[u8]) -> &[u8] {
        match self {
            Encoding::Utf8 => raw.strip_suffix(b"\r").unwrap_or(raw),
            Encoding::Utf16Le => raw.strip_suffix(&[b'\r', 0]).unwrap_or(raw),
        }
    }

    /// The line's text as UTF-8 (UTF-8 files: the bytes unchanged).
    pub fn to_utf8(self, raw: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Encoding::Utf8 => Cow::Borrowed(raw),
            Encoding::Utf16Le => {
                let units = raw
                    .chunks_exact(2)
                    .map(|u| u16::from_le_bytes([u[0], u[1]]));
                let s: String = char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect();
                Cow::Owned(s.into_bytes())
            }
        }
    }

    /// How many bytes of `raw` (a line head) make one piece of a split line
    /// whose UTF-8 text is at most `max` bytes; never splits a character.
    /// At least one character when `max >= 4`.
    pub fn piece_len(self, raw: &[u8], max: usize) -> usize {
        match self {
            Encoding::Utf8 => crate::tail::cut(raw, max).0.len(),
            Encoding::Utf16Le => {
                let mut taken = 0; // raw bytes
                let mut out = 0; // UTF-8 bytes
                let units: Vec<u16> = raw
                    .chunks_exact(2)
                    .map(|u| u16::from_le_bytes([u[0], u[1]]))
                    .collect();
                let mut i = 0;
                while i < units.len() {
                    let u = units[i];
                    let pair = (0xd800..0xdc00).contains(&u)
                        && units
                            .get(i + 1)
                            .is_some_and(|l| (0xdc00..0xe000).contains(l));
                    let (n_units, n_out) = match u {
                        _ if pair => (2, 4),
                        0..0x80 => (1, 1),
                        0x80..0x800 => (1, 2),
                        _ => (1, 3), // BMP, or an unpaired surrogate (U+FFFD)
                    };
                    if out + n_out > max {
                        break;
                    }
                    out += n_out;
                    taken += n_units * 2;
                    i += n_units;
                }
                taken
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn sniffs_boms_and_compression() {
        assert_eq!(sniff(b"\xef\xbb\xbfa\n").bom_len, 3);
        assert_eq!(sniff(b"\xff\xfea\x00").encoding, Encoding::Utf16Le);
        assert_eq!(sniff(b"plain\n").bom_len, 0);
        assert!(is_compressed(&[0x1f, 0x8b, 8, 0]));
        assert!(is_compressed(&[0x28, 0xb5, 0x2f, 0xfd, 1]));
        assert!(!is_compressed(b"2026-11-29 kernel: [UFW BLOCK]\n"));
    }

    #[test]
    fn utf16_newlines_are_units_not_bytes() {
        let e = Encoding::Utf16Le;
        // U+0A0A holds two 0x0A bytes but is no newline.
        let mut buf = utf16("\u{0a0a}x\r\n");
        buf.extend(utf16("y\n"));
        let i = e.find_newline(&buf);
        assert_eq!(i, Some(6));
        let line = e.strip_cr(&buf[..6]);
        assert_eq!(e.to_utf8(line).as_ref(), "\u{0a0a}x".as_bytes());
    }

    #[test]
    fn pieces_never_split_a_character() {
        let e = Encoding::Utf16Le;
        let raw = utf16("ab\u{1F600}c");
        // "ab" fits in 5 bytes, the emoji (4 UTF-8 bytes) does not.
        assert_eq!(e.piece_len(&raw, 5), 4);
        assert_eq!(e.piece_len(&raw, 6), 8);
        assert_eq!(Encoding::Utf8.piece_len("aé".as_bytes(), 2), 1);
    }
}
