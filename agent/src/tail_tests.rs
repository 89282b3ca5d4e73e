//! Tests of the line reader.

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
        Fixture::with(Format::utf8(max_line, LongLines::Truncate))
    }

    fn with(fmt: Format) -> io::Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let writer = File::create(&path)?;
        let reader = File::open(&path)?;
        Ok(Fixture {
            _dir: dir,
            writer,
            reader,
            tail: Tail::new(0, fmt),
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
    for (seed, mode) in (0..40u64).map(|s| {
        let mode = if s % 2 == 0 {
            LongLines::Truncate
        } else {
            LongLines::Split
        };
        (s, mode)
    }) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let max = 40;
        let mut f = Fixture::with(Format::utf8(max, mode))?;
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
            if mode == LongLines::Truncate {
                let (cut_bytes, truncated) = cut(&line, max);
                expected.push((offset, cut_bytes, truncated));
            } else {
                let (mut off, mut rest) = (offset, &line[..]);
                loop {
                    let p = crate::encoding::Encoding::Utf8.piece_len(rest, max);
                    if p < rest.len() {
                        expected.push((off, rest[..p].to_vec(), true));
                        off += p as u64;
                        rest = &rest[p..];
                    } else {
                        expected.push((off, rest.to_vec(), false));
                        break;
                    }
                }
            }
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

#[test]
fn split_mode_sends_long_lines_in_pieces() -> io::Result<()> {
    let max = 16;
    let mut f = Fixture::with(Format::utf8(max, LongLines::Split))?;
    let long: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
    f.write(&long[..20])?;
    let got = f.lines()?;
    assert_eq!(got.len(), 1, "a piece goes out before the line ends");
    f.write(&long[20..])?;
    f.write(b"\r\nshort\n")?;
    let got: Vec<Line> = std::iter::once(got[0].clone()).chain(f.lines()?).collect();
    let rebuilt: Vec<u8> = got[..3].iter().flat_map(|l| l.bytes.clone()).collect();
    assert_eq!(rebuilt, long, "the pieces are the whole line");
    assert_eq!(
        got.iter()
            .map(|l| (l.offset, l.truncated))
            .collect::<Vec<_>>(),
        [(0, true), (16, true), (32, false), (42, false)]
    );
    assert!(got[0].piece && got[1].piece && !got[2].piece);
    // Exactly max bytes with CRLF is one line, even when seen in parts.
    f.write(&[b'y'; 16])?;
    f.write(b"\r")?;
    assert!(f.lines()?.is_empty());
    f.write(b"\n")?;
    let got = f.lines()?;
    assert_eq!(
        (got.len(), got[0].bytes.len(), got[0].truncated),
        (1, 16, false)
    );
    // A restart at a piece boundary goes on with the same pieces.
    let mut again = Tail::new(16, Format::utf8(max, LongLines::Split));
    let mut out = Vec::new();
    again.poll(&f.reader, &mut f.scratch, |l| {
        out.push(l.offset);
        true
    })?;
    assert_eq!(out[..2], [16, 32]);
    Ok(())
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn utf16le_file_with_crlf_becomes_utf8_lines() -> io::Result<()> {
    // What Windows Defender's MPLog looks like: BOM, UTF-16LE, CRLF.
    let mut content = vec![0xff, 0xfe];
    content.extend(utf16le("2026-11-29T10:00:00.000Z Engine: scan started\r\n"));
    let second = content.len() as u64;
    content.extend(utf16le(
        "Threat: Trojan:Win32/Wacatac.B!ml caf\u{e9} \u{1F600}\r\n",
    ));
    content.extend(utf16le("partial"));
    let sniffed = crate::encoding::sniff(&content);
    let fmt = Format {
        max_line: 1000,
        long_lines: LongLines::Truncate,
        encoding: sniffed.encoding,
        bom_len: sniffed.bom_len,
    };
    let mut f = Fixture::with(fmt)?;
    f.write(&content[..9])?; // the writer stopped mid code unit
    assert!(f.lines()?.is_empty());
    f.write(&content[9..])?;
    let got = f.lines()?;
    assert_eq!(
        texts(&got),
        vec![
            b"2026-11-29T10:00:00.000Z Engine: scan started".as_slice(),
            "Threat: Trojan:Win32/Wacatac.B!ml caf\u{e9} \u{1F600}".as_bytes(),
        ]
    );
    assert_eq!(
        (got[0].offset, got[0].next),
        (2, second),
        "byte offsets of the file"
    );
    assert_eq!(
        f.tail.offset() + 14,
        content.len() as u64,
        "partial line held"
    );
    let last = f.tail.finish(&f.reader)?;
    assert_eq!(last.map(|l| l.bytes), Some(b"partial".to_vec()));
    Ok(())
}

#[test]
fn utf16le_long_lines_are_cut_on_characters() -> io::Result<()> {
    let fmt = Format {
        max_line: 16,
        long_lines: LongLines::Split,
        encoding: crate::encoding::Encoding::Utf16Le,
        bom_len: 2,
    };
    let mut f = Fixture::with(fmt)?;
    let text = "\u{e9}".repeat(20); // 40 UTF-8 bytes, 40 UTF-16 bytes
    f.write(&[0xff, 0xfe])?;
    f.write(&utf16le(&format!("{text}\n")))?;
    let got = f.lines()?;
    let rebuilt: Vec<u8> = got.iter().flat_map(|l| l.bytes.clone()).collect();
    assert_eq!(rebuilt, text.as_bytes());
    assert!(
        got.iter()
            .all(|l| l.bytes.len() <= 16 && std::str::from_utf8(&l.bytes).is_ok())
    );
    Ok(())
}

#[test]
fn utf8_bom_is_not_part_of_the_first_line() -> io::Result<()> {
    let content = b"\xef\xbb\xbffirst\nsecond\n";
    let fmt = Format {
        bom_len: crate::encoding::sniff(content).bom_len,
        ..Format::utf8(100, LongLines::Truncate)
    };
    let mut f = Fixture::with(fmt)?;
    f.write(content)?;
    let got = f.lines()?;
    assert_eq!(texts(&got), vec![b"first".as_slice(), b"second"]);
    assert_eq!(got[0].offset, 3);
    Ok(())
}
