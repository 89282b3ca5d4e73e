//! Structured-format parse steps: CSV (and W3C extended log, which is CSV
//! with spaces), CEF, LEEF and JSON.
//!
//! Each parser borrows from the text where it can and allocates only for
//! values that contain escapes. None of them panics on any input; the fuzz
//! test in `decode/tests.rs` holds them to that.

use std::borrow::Cow;

use serde_json::Value;

/// Splits one CSV record. `quote` of `"` allows `"a,b"` and `""` inside
/// quotes. With `dash_empty` a lone `-` is an empty value (W3C).
pub(crate) fn csv(s: &str, sep: u8, dash_empty: bool) -> CsvIter<'_> {
    CsvIter {
        s,
        pos: 0,
        sep,
        dash_empty,
        done: false,
    }
}

pub(crate) struct CsvIter<'t> {
    s: &'t str,
    pos: usize,
    sep: u8,
    dash_empty: bool,
    done: bool,
}

impl<'t> Iterator for CsvIter<'t> {
    type Item = Cow<'t, str>;

    fn next(&mut self) -> Option<Cow<'t, str>> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let mut i = self.pos;
        if self.sep == b' ' {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        }
        let value = if b.get(i) == Some(&b'"') {
            // Quoted: up to the closing quote; `""` is a quote.
            let start = i + 1;
            let mut j = start;
            let mut seg = start;
            let mut owned: Option<String> = None;
            loop {
                match b.get(j) {
                    None => {
                        // Unterminated: the rest of the line.
                        self.pos = b.len();
                        self.done = true;
                        let v = match owned {
                            Some(mut o) => {
                                o.push_str(&self.s[seg..]);
                                Cow::Owned(o)
                            }
                            None => Cow::Borrowed(&self.s[start..]),
                        };
                        return Some(v);
                    }
                    Some(b'"') if b.get(j + 1) == Some(&b'"') => {
                        owned
                            .get_or_insert_with(String::new)
                            .push_str(&self.s[seg..=j]);
                        j += 2;
                        seg = j;
                    }
                    Some(b'"') => {
                        let v = match owned {
                            Some(mut o) => {
                                o.push_str(&self.s[seg..j]);
                                Cow::Owned(o)
                            }
                            None => Cow::Borrowed(&self.s[start..j]),
                        };
                        return Some(self.finish_quoted(v, j));
                    }
                    Some(_) => j += 1,
                }
            }
        } else {
            let end = b[i..]
                .iter()
                .position(|&c| c == self.sep)
                .map_or(b.len(), |p| i + p);
            let v = &self.s[i..end];
            if end >= b.len() {
                self.done = true;
                self.pos = b.len();
            } else {
                self.pos = end + 1;
            }
            Cow::Borrowed(v)
        };
        if self.dash_empty && value == "-" {
            return Some(Cow::Borrowed(""));
        }
        Some(value)
    }
}

impl<'t> CsvIter<'t> {
    /// After a quoted value whose closing quote is at `close`: skip to the
    /// next separator (text between the quote and it is dropped).
    fn finish_quoted(&mut self, v: Cow<'t, str>, close: usize) -> Cow<'t, str> {
        let b = self.s.as_bytes();
        let from = (close + 1).min(b.len());
        match b[from..].iter().position(|&c| c == self.sep) {
            Some(p) => self.pos = from + p + 1,
            None => {
                self.pos = b.len();
                self.done = true;
            }
        }
        v
    }
}

/// The seven CEF header fields, by position.
pub(crate) const CEF_HEADER: [&str; 7] = [
    "cef.version",
    "cef.device_vendor",
    "cef.device_product",
    "cef.device_version",
    "cef.signature_id",
    "cef.name",
    "cef.severity",
];

/// The LEEF header fields, by position.
pub(crate) const LEEF_HEADER: [&str; 5] = [
    "leef.version",
    "leef.vendor",
    "leef.product",
    "leef.product_version",
    "leef.event_id",
];

/// A parsed CEF or LEEF record: header values by position and extension
/// pairs in order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Record<'t> {
    pub header: Vec<Cow<'t, str>>,
    pub pairs: Vec<(&'t str, Cow<'t, str>)>,
}

/// Why a CEF/LEEF record could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// No `CEF:` / `LEEF:` marker: the step does not apply.
    Absent,
    /// The marker is there but the header is cut short.
    Truncated(usize),
}

/// Splits `s` on unescaped `|`, at most `n` times; returns the parts and
/// the rest after the last split; or how many parts there were.
fn split_header(s: &str, n: usize) -> Result<(Vec<Cow<'_, str>>, &str), RecordError> {
    let b = s.as_bytes();
    let mut parts = Vec::with_capacity(n);
    let mut start = 0;
    let mut i = 0;
    let mut escaped = false;
    while i < b.len() && parts.len() < n {
        match b[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'|' => {
                let raw = &s[start..i];
                parts.push(if escaped {
                    Cow::Owned(raw.replace("\\|", "|").replace("\\\\", "\\"))
                } else {
                    Cow::Borrowed(raw)
                });
                escaped = false;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if parts.len() == n {
        Ok((parts, s.get(start..).unwrap_or("")))
    } else {
        Err(RecordError::Truncated(parts.len()))
    }
}

/// A CEF record (`CEF:0|vendor|product|version|id|name|severity|ext`),
/// anywhere in `s` (a syslog header may precede it).
pub(crate) fn cef(s: &str) -> Result<Record<'_>, RecordError> {
    let start = s.find("CEF:").ok_or(RecordError::Absent)?;
    let body = &s[start + 4..];
    let (mut header, ext) = split_header(body, 7)?;
    if let Some(v) = header.first_mut() {
        *v = Cow::Owned(v.trim().to_string());
    }
    Ok(Record {
        header,
        pairs: cef_extension(ext),
    })
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'[' | b']' | b'-')
}

/// CEF extension: `key=value` where a value runs up to the space before the
/// next `key=`; `\=`, `\\`, `\n`, `\r` are escapes.
fn cef_extension(s: &str) -> Vec<(&str, Cow<'_, str>)> {
    let b = s.as_bytes();
    // (key start, position of '=') of every key.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'=' => {
                let mut k = i;
                while k > 0 && is_key_byte(b[k - 1]) {
                    k -= 1;
                }
                if k < i && (k == 0 || b[k - 1] == b' ') {
                    keys.push((k, i));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for (n, &(ks, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(b.len(), |&(next, _)| next);
        let raw = s[eq + 1..end].trim_end_matches(' ');
        let value = if raw.contains('\\') {
            Cow::Owned(unescape_cef(raw))
        } else {
            Cow::Borrowed(raw)
        };
        out.push((&s[ks..eq], value));
    }
    out
}

fn unescape_cef(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(o @ ('=' | '\\' | '|')) => out.push(o),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A LEEF record. 1.0: `LEEF:1.0|vendor|product|version|event|k=v<TAB>k=v`.
/// 2.0 adds a delimiter field after the event id (a character, or `xHH`;
/// empty means tab).
pub(crate) fn leef(s: &str) -> Result<Record<'_>, RecordError> {
    let start = s.find("LEEF:").ok_or(RecordError::Absent)?;
    let body = &s[start + 5..];
    let (header, mut ext) = split_header(body, 5)?;
    let mut delim = '\t';
    if header.first().is_some_and(|v| v.trim().starts_with('2')) {
        // The delimiter field ends at the next `|`.
        if let Some(p) = ext.find('|') {
            let d = &ext[..p];
            delim = if let Some(hex) = d.strip_prefix(['x', 'X']).or(d.strip_prefix("0x")) {
                u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\t')
            } else {
                d.chars().next().unwrap_or('\t')
            };
            ext = &ext[p + 1..];
        }
    }
    let pairs = ext
        .split(delim)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then_some((k, Cow::Borrowed(v)))
        })
        .collect();
    Ok(Record { header, pairs })
}

/// Flattens a JSON object into dotted keys (`a.b.c`; array elements get
/// their index, `a.0`), calling `sink` with each scalar as text. `null` is
/// skipped. Depth is limited to 32 levels.
pub(crate) fn flatten_json(v: &Value, sink: &mut dyn FnMut(&str, String)) {
    let mut path = String::new();
    walk(v, &mut path, sink, 0);
}

fn walk(v: &Value, path: &mut String, sink: &mut dyn FnMut(&str, String), depth: usize) {
    if depth > 32 {
        return;
    }
    let mut child = |key: &str, item: &Value, path: &mut String| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        walk(item, path, sink, depth + 1);
        path.truncate(len);
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                child(k, item, path);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                child(&i.to_string(), item, path);
            }
        }
        Value::Null => {}
        Value::String(s) => sink(path, s.clone()),
        Value::Bool(b) => sink(path, b.to_string()),
        Value::Number(n) => sink(path, n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> Vec<String> {
        csv(s, b',', false).map(|c| c.into_owned()).collect()
    }

    #[test]
    fn csv_plain_quoted_and_empty() {
        assert_eq!(row("a,,c"), ["a", "", "c"]);
        assert_eq!(row("a,"), ["a", ""]);
        assert_eq!(row(r#"1,"x,y",3"#), ["1", "x,y", "3"]);
        assert_eq!(row(r#""say ""hi""",z"#), [r#"say "hi""#, "z"]);
        assert_eq!(row(r#""unterminated, rest"#), ["unterminated, rest"]);
        assert_eq!(row(""), [""]);
        assert_eq!(row(r#""a""b""c",d"#), [r#"a"b"c"#, "d"]);
    }

    #[test]
    fn w3c_spaces_and_dashes() {
        let got: Vec<String> = csv("2024-01-02 10:00:00 DROP TCP - \"a b\"", b' ', true)
            .map(|c| c.into_owned())
            .collect();
        assert_eq!(got, ["2024-01-02", "10:00:00", "DROP", "TCP", "", "a b"]);
    }

    #[test]
    fn cef_header_escapes_and_extension() {
        let r = cef(r"<14>Jan 1 host CEF:0|Ven\|dor|Prod|1.0|100|Name here|5|src=10.0.0.1 msg=a b\=c request=http://x/?a=b dpt=80")
            .expect("cef");
        assert_eq!(r.header[1], "Ven|dor");
        assert_eq!(r.header[5], "Name here");
        assert_eq!(
            r.pairs,
            vec![
                ("src", Cow::Borrowed("10.0.0.1")),
                ("msg", Cow::Owned("a b=c".into())),
                ("request", Cow::Borrowed("http://x/?a=b")),
                ("dpt", Cow::Borrowed("80")),
            ]
        );
        assert_eq!(cef("no marker"), Err(RecordError::Absent));
        assert!(matches!(cef("CEF:0|a|b"), Err(RecordError::Truncated(2))));
        assert_eq!(cef("CEF:0|a|b|c|d|e|f|").map(|r| r.pairs.len()), Ok(0));
    }

    #[test]
    fn leef_one_and_two() {
        let r = leef("LEEF:1.0|V|P|1|ev|src=1.2.3.4\tdst=5.6.7.8\tbad").expect("leef");
        assert_eq!(r.header[4], "ev");
        assert_eq!(r.pairs.len(), 2);
        let r = leef("LEEF:2.0|V|P|1|ev|^|src=1.2.3.4^usrName=bob").expect("leef");
        assert_eq!(r.pairs[1], ("usrName", Cow::Borrowed("bob")));
        let r = leef("LEEF:2.0|V|P|1|ev|x5E|a=1^b=2").expect("leef");
        assert_eq!(r.pairs.len(), 2);
        assert_eq!(leef("LEEF:1.0|V"), Err(RecordError::Truncated(1)));
    }

    #[test]
    fn json_flattening() {
        let v: Value = serde_json::json!({"a": {"b": 1, "c": [true, {"d": "x"}]}, "n": null});
        let mut got = Vec::new();
        flatten_json(&v, &mut |k, v| got.push((k.to_string(), v)));
        assert_eq!(
            got,
            [
                ("a.b".to_string(), "1".to_string()),
                ("a.c.0".into(), "true".into()),
                ("a.c.1.d".into(), "x".into())
            ]
        );
    }
}
