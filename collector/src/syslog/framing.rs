//! Splitting a TCP/TLS byte stream into syslog messages (RFC 6587).
//!
//! The framing is detected once per connection from its first bytes: a
//! decimal length followed by a space (`57 <34>1 ...`) means octet counting,
//! anything else (normally `<`) means one message per line. A message longer
//! than the limit is cut to the limit and flagged `truncated`; the rest of it
//! is read and discarded, so one endless line cannot grow memory and the
//! stream stays in step. The framer never holds more than the limit plus a
//! length header.

/// One message cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// The message was longer than the limit and was cut.
    pub truncated: bool,
}

/// Why the stream cannot be framed any more; the connection must be closed
/// (there is no way to find the next message boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("octet-counted framing: `{0}` is not a message length")]
    BadLength(String),
}

/// Which framing a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not decided yet (no complete header seen).
    Detect,
    /// RFC 6587 3.4.1: `MSG-LEN SP SYSLOG-MSG`.
    OctetCounting,
    /// RFC 6587 3.4.2: messages end with LF (a CR before it is dropped).
    Newline,
}

/// Longest length header accepted (10 digits is well past any limit).
const MAX_LEN_DIGITS: usize = 10;

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    framing: Framing,
    /// Bytes received and not yet cut into a frame.
    pending: Vec<u8>,
    /// Octet counting: bytes of an over-long message still to discard.
    skip: u64,
    /// Newline framing: discarding the rest of an over-long line.
    discarding: bool,
}

impl Framer {
    /// A framer cutting messages at `max` bytes.
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            framing: Framing::Detect,
            pending: Vec::new(),
            skip: 0,
            discarding: false,
        }
    }

    /// The framing detected so far.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Feeds bytes read from the connection and appends every complete
    /// message to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError> {
        let data = self.discard(data);
        if data.is_empty() {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let mut pos = 0;
        let result = self.cut(&mut pos, out);
        self.pending.drain(..pos);
        result
    }

    /// Drops bytes of an over-long message that is being skipped, before
    /// they are ever copied.
    fn discard<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        if !self.pending.is_empty() {
            return data;
        }
        if self.skip > 0 {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        if self.discarding {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.discarding = false;
                    data = &data[i + 1..];
                }
                None => data = &[],
            }
        }
        data
    }

    fn cut(&mut self, pos: &mut usize, out: &mut Vec<Frame>) -> Result<(), FramingError> {
        loop {
            if *pos >= self.pending.len() {
                return Ok(());
            }
            match self.framing {
                Framing::Detect => match self.detect(&self.pending[*pos..]) {
                    Some(f) => self.framing = f,
                    None => return Ok(()),
                },
                Framing::OctetCounting => {
                    if !self.octet(pos, out)? {
                        return Ok(());
                    }
                }
                Framing::Newline => {
                    if !self.line(pos, out) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Decides the framing from the first bytes, or `None` if more are needed.
    fn detect(&self, b: &[u8]) -> Option<Framing> {
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_LEN_DIGITS {
            return Some(Framing::Newline);
        }
        match b.get(digits) {
            None => None,
            Some(b' ') => Some(Framing::OctetCounting),
            Some(_) => Some(Framing::Newline),
        }
    }

    /// Cuts one octet-counted frame. Returns false when more bytes are needed.
    fn octet(&mut self, pos: &mut usize, out: &mut Vec<Frame>) -> Result<bool, FramingError> {
        if self.skip > 0 {
            let avail = self.pending.len() - *pos;
            let n = (self.skip.min(avail as u64)) as usize;
            self.skip -= n as u64;
            *pos += n;
            return Ok(self.skip == 0);
        }
        let b = &self.pending[*pos..];
        // Some senders put a line feed after each counted frame; tolerate it.
        let ws = b
            .iter()
            .take_while(|c| matches!(c, b'\n' | b'\r' | b' '))
            .count();
        if ws > 0 {
            *pos += ws;
            return Ok(true);
        }
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > MAX_LEN_DIGITS || (digits < b.len() && (digits == 0 || b[digits] != b' ')) {
            let shown = String::from_utf8_lossy(&b[..b.len().min(20)]);
            return Err(FramingError::BadLength(shown.into_owned()));
        }
        if digits == b.len() {
            return Ok(false);
        }
        let len: u64 = std::str::from_utf8(&b[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                FramingError::BadLength(String::from_utf8_lossy(&b[..digits]).into_owned())
            })?;
        let body = &b[digits + 1..];
        let want = (len.min(self.max as u64)) as usize;
        if body.len() < want {
            return Ok(false);
        }
        if len > 0 {
            out.push(Frame {
                bytes: body[..want].to_vec(),
                truncated: len > self.max as u64,
            });
        }
        *pos += digits + 1 + want;
        self.skip = len - want as u64;
        Ok(true)
    }

    /// Cuts one line. Returns false when more bytes are needed.
    fn line(&mut self, pos: &mut usize, out: &mut Vec<Frame>) -> bool {
        let b = &self.pending[*pos..];
        if self.discarding {
            match memchr::memchr(b'\n', b) {
                Some(i) => {
                    self.discarding = false;
                    *pos += i + 1;
                    return true;
                }
                None => {
                    *pos = self.pending.len();
                    return false;
                }
            }
        }
        match memchr::memchr(b'\n', b) {
            Some(i) => {
                let mut line = &b[..i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if !line.is_empty() {
                    let truncated = line.len() > self.max;
                    out.push(Frame {
                        bytes: line[..line.len().min(self.max)].to_vec(),
                        truncated,
                    });
                }
                *pos += i + 1;
                true
            }
            None if b.len() > self.max => {
                out.push(Frame {
                    bytes: b[..self.max].to_vec(),
                    truncated: true,
                });
                self.discarding = true;
                *pos = self.pending.len();
                false
            }
            None => false,
        }
    }

    /// The connection ended: a last line without its newline is still a
    /// message; a counted frame cut short is kept and flagged `truncated`.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        let rest = std::mem::take(&mut self.pending);
        let rest = match self.framing {
            Framing::OctetCounting => {
                let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 && rest.get(digits) == Some(&b' ') {
                    rest[digits + 1..].to_vec()
                } else {
                    Vec::new()
                }
            }
            _ if self.discarding => Vec::new(),
            _ => rest,
        };
        let truncated = self.framing == Framing::OctetCounting;
        let mut line = rest.as_slice();
        while let Some((last, init)) = line.split_last()
            && matches!(last, b'\r' | b'\n')
        {
            line = init;
        }
        if !line.is_empty() {
            out.push(Frame {
                bytes: line[..line.len().min(self.max)].to_vec(),
                truncated: truncated || line.len() > self.max,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of every size from 1 up, and checks each
    /// chunking gives the same frames.
    fn frames(max: usize, input: &[u8]) -> (Vec<Frame>, Framing) {
        let mut reference: Option<(Vec<Frame>, Framing)> = None;
        for chunk in 1..=input.len().max(1) {
            let mut f = Framer::new(max);
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                f.push(c, &mut out).expect("frames");
            }
            f.finish(&mut out);
            let got = (out, f.framing());
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_eq!(r, &got, "chunk size {chunk}"),
            }
        }
        reference.expect("at least one chunking")
    }

    fn texts(f: &[Frame]) -> Vec<(String, bool)> {
        f.iter()
            .map(|f| (String::from_utf8_lossy(&f.bytes).into_owned(), f.truncated))
            .collect()
    }

    #[test]
    fn newline_framing_with_crlf_blank_lines_and_a_last_line_without_newline() {
        let (f, mode) = frames(
            100,
            b"<13>Mar  1 00:00:00 h a: one\r\n\n<13>two\n2024-06-08T16:34:33 db01 x: three",
        );
        assert_eq!(mode, Framing::Newline);
        assert_eq!(
            texts(&f),
            vec![
                ("<13>Mar  1 00:00:00 h a: one".into(), false),
                ("<13>two".into(), false),
                ("2024-06-08T16:34:33 db01 x: three".into(), false),
            ]
        );
    }

    #[test]
    fn octet_counting_is_detected_and_tolerates_trailing_newlines() {
        let (f, mode) = frames(100, b"5 hello11 <13>x\ny z a\n3 abc");
        assert_eq!(mode, Framing::OctetCounting);
        assert_eq!(
            texts(&f),
            vec![
                ("hello".into(), false),
                ("<13>x\ny z a".into(), false),
                ("abc".into(), false),
            ]
        );
    }

    #[test]
    fn long_messages_are_cut_flagged_and_the_stream_stays_in_step() {
        let (f, _) = frames(4, b"10 0123456789 3 abc");
        assert_eq!(
            texts(&f),
            vec![("0123".into(), true), ("abc".into(), false)]
        );
        let (f, _) = frames(4, b"<1>abcdefgh\n<2>b\n<3>cdefghijk");
        assert_eq!(
            texts(&f),
            vec![
                ("<1>a".into(), true),
                ("<2>b".into(), false),
                ("<3>c".into(), true)
            ]
        );
    }

    #[test]
    fn an_endless_line_holds_at_most_the_limit() {
        let mut f = Framer::new(1000);
        let mut out = Vec::new();
        let chunk = vec![b'x'; 4096];
        for _ in 0..1000 {
            f.push(&chunk, &mut out).expect("frames");
            assert!(f.pending.len() <= 1000 + 4096);
        }
        assert_eq!(out.len(), 1);
        assert!(out[0].truncated);
        f.push(b"\n<1>next\n", &mut out).expect("frames");
        assert_eq!(texts(&out[1..]), vec![("<1>next".into(), false)]);
    }

    #[test]
    fn a_counted_frame_cut_short_by_the_end_of_the_connection_is_flagged() {
        let (f, _) = frames(100, b"5 hello20 short");
        assert_eq!(
            texts(&f),
            vec![("hello".into(), false), ("short".into(), true)]
        );
    }

    #[test]
    fn garbage_in_a_counted_stream_is_an_error() {
        let mut f = Framer::new(100);
        let mut out = Vec::new();
        f.push(b"5 hello", &mut out).expect("ok");
        let err = f.push(b"xx garbage", &mut out).expect_err("garbage");
        assert!(err.to_string().contains("xx garbage"), "{err}");
        let mut f = Framer::new(100);
        assert!(f.push(b"5 hello99999999999 x", &mut out).is_err());
    }

    #[test]
    fn binary_garbage_in_newline_mode_is_just_lines() {
        let input: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let (f, mode) = frames(64, &input);
        assert_eq!(mode, Framing::Newline);
        assert!(f.iter().all(|fr| fr.bytes.len() <= 64));
        assert!(!f.is_empty());
    }
}
