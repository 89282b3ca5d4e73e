//! The `kv` parse step: `KEY=value` pairs separated by spaces.
//!
//! Values may be double-quoted (`msg="two words"`, with `\"` inside); an
//! unterminated quote runs to the end of the line. A key with an empty value
//! (`OUT=`) gives an empty string. A bare word without `=` (`SYN`, `DF`) is a
//! flag. When a key repeats (`LEN=` twice in netfilter UDP lines), both are
//! reported in order, so the last one wins where values are looked up.

use std::borrow::Cow;

/// One item of a key=value line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'t> {
    Pair(&'t str, Cow<'t, str>),
    Flag(&'t str),
}

/// Iterates over the pairs and flags of `s`.
#[cfg(test)]
pub(crate) fn parse(s: &str) -> impl Iterator<Item = Item<'_>> {
    parse_with(s, b'=', None)
}

/// Iterates over the pairs and flags of `s`, with `sep` between key and
/// value and pairs separated by spaces, tabs and `delim`.
///
/// `sep` and `delim` are ASCII (the decoder loader checks it), so the text
/// is scanned byte by byte and every split falls on a character boundary.
pub(crate) fn parse_with(s: &str, sep: u8, delim: Option<u8>) -> impl Iterator<Item = Item<'_>> {
    debug_assert!(sep.is_ascii() && delim.is_none_or(|d| d.is_ascii()));
    let delim = delim.unwrap_or(b' ');
    // What each byte is to the scan. A separator that is also a delimiter
    // ends the token.
    let mut class = [OTHER; 256];
    class[usize::from(sep)] = SEP;
    for end in [b' ', b'\t', delim] {
        class[usize::from(end)] = END;
    }
    let bytes = s.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() && class[usize::from(bytes[at])] == END {
            at += 1;
        }
        if at == bytes.len() {
            return None;
        }
        let start = at;
        // One pass over the token, each byte read once and looked up in
        // `class` (netfilter lines are twenty short pairs: a `memchr` call
        // per token and per separator cost half as much again): to its
        // first separator, then on to its end, unless the separator opens
        // a quoted value.
        let mut end = start;
        while end < bytes.len() && class[usize::from(bytes[end])] == OTHER {
            end += 1;
        }
        let eq = (bytes.get(end).map(|&b| class[usize::from(b)]) == Some(SEP)).then_some(end);
        if eq.is_some_and(|eq| eq == start || bytes.get(eq + 1) != Some(&b'"')) {
            // Not a quoted value: the token runs on to its end.
            end += 1;
            while end < bytes.len() && class[usize::from(bytes[end])] != END {
                end += 1;
            }
        }
        match eq {
            Some(eq) if eq > start => {
                let key = &s[start..eq];
                let value_at = eq + 1;
                if bytes.get(value_at) == Some(&b'"') {
                    let (value, remaining) = read_quoted(&s[value_at + 1..]);
                    at = s.len() - remaining.len();
                    Some(Item::Pair(key, value))
                } else {
                    // An unquoted value ends where its token does.
                    at = end;
                    Some(Item::Pair(key, Cow::Borrowed(&s[value_at..end])))
                }
            }
            // No separator, or one at the start (`=x`): a flag.
            _ => {
                at = end;
                Some(Item::Flag(&s[start..end]))
            }
        }
    })
}

/// Byte classes of [`parse_with`]'s scan.
const OTHER: u8 = 0;
const END: u8 = 1;
const SEP: u8 = 2;

/// Reads a quoted value (after the opening quote); returns it and the rest.
fn read_quoted(s: &str) -> (Cow<'_, str>, &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => {
                let raw = &s[..i];
                let value = if escaped {
                    Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\"))
                } else {
                    Cow::Borrowed(raw)
                };
                return (value, &s[i + 1..]);
            }
            _ => i += 1,
        }
    }
    (Cow::Borrowed(s), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &str) -> Vec<Item<'_>> {
        parse(s).collect()
    }

    #[test]
    fn netfilter_pairs_flags_and_empty_values() {
        let got = items("IN=enp.1s0 OUT= LEN=40 DF PROTO=TCP SYN URGP=0 LEN=20 ");
        assert_eq!(
            got,
            vec![
                Item::Pair("IN", "enp.1s0".into()),
                Item::Pair("OUT", "".into()),
                Item::Pair("LEN", "40".into()),
                Item::Flag("DF"),
                Item::Pair("PROTO", "TCP".into()),
                Item::Flag("SYN"),
                Item::Pair("URGP", "0".into()),
                Item::Pair("LEN", "20".into()),
            ]
        );
    }

    #[test]
    fn quoted_values() {
        let got = items(r#"a="two words" b="say \"hi\"" c=x d="unterminated rest"#);
        assert_eq!(
            got,
            vec![
                Item::Pair("a", "two words".into()),
                Item::Pair("b", Cow::Owned("say \"hi\"".into())),
                Item::Pair("c", "x".into()),
                Item::Pair("d", "unterminated rest".into()),
            ]
        );
        assert_eq!(items(r#"k="""#), vec![Item::Pair("k", "".into())]);
        assert_eq!(
            items(r#"k="ends with backslash\"#),
            vec![Item::Pair("k", "ends with backslash\\".into())]
        );
    }

    #[test]
    fn other_separators() {
        let got: Vec<Item<'_>> =
            parse_with(r#"action:"Accept"; flags:"16"; x:"a; b""#, b':', Some(b';')).collect();
        assert_eq!(
            got,
            vec![
                Item::Pair("action", "Accept".into()),
                Item::Pair("flags", "16".into()),
                Item::Pair("x", "a; b".into()),
            ]
        );
    }

    /// The pairs as the plain definition reads them: a token runs to the
    /// next space, tab or delimiter; its first separator splits it, unless
    /// it starts it; a value that starts with a quote runs to the closing
    /// one.
    fn reference(s: &str, sep: u8, delim: u8) -> Vec<Item<'_>> {
        let bytes = s.as_bytes();
        let is_end = |b: u8| b == b' ' || b == b'\t' || b == delim;
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            while at < bytes.len() && is_end(bytes[at]) {
                at += 1;
            }
            if at == bytes.len() {
                return out;
            }
            let start = at;
            let token_end = (start..bytes.len())
                .find(|&i| is_end(bytes[i]))
                .unwrap_or(bytes.len());
            match (start..token_end).find(|&i| bytes[i] == sep) {
                Some(eq) if eq > start => {
                    if bytes.get(eq + 1) == Some(&b'"') {
                        let (value, remaining) = read_quoted(&s[eq + 2..]);
                        at = s.len() - remaining.len();
                        out.push(Item::Pair(&s[start..eq], value));
                    } else {
                        at = token_end;
                        out.push(Item::Pair(
                            &s[start..eq],
                            Cow::Borrowed(&s[eq + 1..token_end]),
                        ));
                    }
                }
                _ => {
                    at = token_end;
                    out.push(Item::Flag(&s[start..token_end]));
                }
            }
        }
    }

    /// Every text made of the bytes that matter (and some that do not),
    /// up to five long, reads as the reference reads it, with each
    /// separator and delimiter the shipped decoders use.
    #[test]
    fn reads_as_the_reference_does() {
        let alphabet = ["a", "=", ":", ";", ",", " ", "\t", "\"", "\\", "é"];
        let texts = crate::every_text(&alphabet, 5);
        for (sep, delim) in [
            (b'=', None),
            (b':', Some(b';')),
            (b'=', Some(b',')),
            (b'=', Some(b'=')),
        ] {
            for t in &texts {
                let got: Vec<Item<'_>> = parse_with(t, sep, delim).collect();
                assert_eq!(got, reference(t, sep, delim.unwrap_or(b' ')), "{t:?}");
            }
        }
        assert!(texts.len() > 100_000);
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert!(items("").is_empty());
        assert_eq!(items("=x"), vec![Item::Flag("=x")]);
        assert_eq!(
            items("é=ü \"é"),
            vec![Item::Pair("é", "ü".into()), Item::Flag("\"é")]
        );
    }
}
