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
    let is_end = move |b: u8| b == b' ' || b == b'\t' || b == delim;
    let bytes = s.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() && is_end(bytes[at]) {
            at += 1;
        }
        if at == bytes.len() {
            return None;
        }
        let start = at;
        // Netfilter lines are twenty pairs: searched for, not walked byte
        // by byte (and each byte once).
        let token_end =
            memchr::memchr3(b' ', b'\t', delim, &bytes[start..]).map_or(bytes.len(), |n| start + n);
        match memchr::memchr(sep, &bytes[start..token_end]) {
            Some(0) | None => {
                at = token_end;
                Some(Item::Flag(&s[start..token_end]))
            }
            Some(eq) => {
                let key = &s[start..start + eq];
                let value_at = start + eq + 1;
                if bytes.get(value_at) == Some(&b'"') {
                    let (value, remaining) = read_quoted(&s[value_at + 1..]);
                    at = s.len() - remaining.len();
                    Some(Item::Pair(key, value))
                } else {
                    // An unquoted value ends where its token does.
                    at = token_end;
                    Some(Item::Pair(key, Cow::Borrowed(&s[value_at..token_end])))
                }
            }
        }
    })
}

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
