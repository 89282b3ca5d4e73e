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
pub(crate) fn parse_with(s: &str, sep: u8, delim: Option<u8>) -> impl Iterator<Item = Item<'_>> {
    let sep = char::from(sep);
    let delim = char::from(delim.unwrap_or(b' '));
    let ends = [' ', '\t', delim];
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(ends);
        if rest.is_empty() {
            return None;
        }
        let token_end = rest.find(ends).unwrap_or(rest.len());
        match rest[..token_end].find(sep) {
            Some(0) | None => {
                let flag = &rest[..token_end];
                rest = &rest[token_end..];
                Some(Item::Flag(flag))
            }
            Some(eq) => {
                let key = &rest[..eq];
                let after = &rest[eq + sep.len_utf8()..];
                if let Some(quoted) = after.strip_prefix('"') {
                    let (value, remaining) = read_quoted(quoted);
                    rest = remaining;
                    Some(Item::Pair(key, value))
                } else {
                    let end = after.find(ends).unwrap_or(after.len());
                    rest = &after[end..];
                    Some(Item::Pair(key, Cow::Borrowed(&after[..end])))
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
