//! The `netfilter` parse step: the kernel's LOG target record.
//!
//! iptables, ip6tables, nftables `log` rules and ufw write
//! `[uptime] <prefix> IN=<if> OUT=<if> MAC=... SRC=... DST=... ...`. The step
//! captures the operator's `prefix` (before `IN=`, trailing spaces removed),
//! the `rule_name` it spells (the prefix without its brackets and final
//! colon: `[UFW BLOCK]` and `IPTABLES-DROP:` name `UFW BLOCK` and
//! `IPTABLES-DROP`) and the `pairs` (from `IN=` to the end) for a `kv` step,
//! and the `verdict`: the first of the words block, drop, reject, deny,
//! allow, accept in the prefix, in any case (`BLOCK` of `[UFW BLOCK]`), as
//! the regex `(?i)(?P<verdict>block|drop|reject|deny|allow|accept)` would
//! find it there.
//!
//! Hand-written rather than a regex because it is the busiest firewall
//! format, and a capturing regex over the whole line was the most expensive
//! part of decoding it. It accepts exactly what the regex
//! `^(?:\[\s*\d+\.\d+\]\s*)?(?P<prefix>[^=]*?)\s*(?P<pairs>IN=\S* OUT=.*)$`
//! accepted, with the same captures (the tests compare the two).

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// Where the parts of a LOG record are in the text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub prefix: Range<usize>,
    /// Within `prefix`: what the regex `^\[?(?P<rule_name>.*?)\]?:?$`
    /// captures of it (nothing when the prefix spans lines).
    pub rule_name: Option<Range<usize>>,
    pub pairs: Range<usize>,
    /// Within `prefix`: the verdict word, when it holds one.
    pub verdict: Option<Range<usize>>,
}

/// The verdict words, lower case.
const VERDICTS: [&[u8]; 6] = [b"block", b"drop", b"reject", b"deny", b"allow", b"accept"];

/// The regex [`verdict`] reads a prefix with when it is not all ASCII:
/// under Unicode case folding, `k` also matches the Kelvin sign.
static VERDICT: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, proven by the tests
    Regex::new(r"(?i)block|drop|reject|deny|allow|accept").expect("valid verdict pattern")
});

/// Where the first verdict word of `prefix` is, in any case. No word is
/// another's start, so at most one begins at a place: the first place one
/// begins at is the regex's leftmost-first match.
pub(crate) fn verdict(prefix: &str) -> Option<Range<usize>> {
    if !prefix.is_ascii() {
        return VERDICT.find(prefix).map(|m| m.range());
    }
    let b = prefix.as_bytes();
    (0..b.len()).find_map(|at| {
        VERDICTS.iter().find_map(|word| {
            let end = at + word.len();
            b.get(at..end)
                .filter(|s| s.eq_ignore_ascii_case(word))
                .map(|_| at..end)
        })
    })
}

/// The kernel's `[ 1234.567890]` uptime stamp and the spaces after it. Its
/// `\s` and `\d` are Unicode classes; [`uptime_end`] reads ASCII stamps
/// without it.
static UPTIME: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, proven by the tests
    Regex::new(r"^\[\s*\d+\.\d+\]\s*").expect("valid uptime pattern")
});

/// Moves `i` past the bytes of `b` that `pred` takes; how many it passed.
fn skip(b: &[u8], i: &mut usize, pred: fn(u8) -> bool) -> usize {
    let from = *i;
    while b.get(*i).is_some_and(|&c| pred(c)) {
        *i += 1;
    }
    *i - from
}

/// Where what [`UPTIME`] matches at the start of `s` ends (0: no stamp).
/// Every kernel line has a stamp, so it is read byte by byte. The scan stops
/// at the first byte outside ASCII: where the regex's Unicode classes could
/// take it (a Unicode digit or space), the regex decides.
fn uptime_end(s: &str) -> usize {
    // `\s` on ASCII is what `char::is_whitespace` takes (\x0B included).
    fn space(c: u8) -> bool {
        char::from(c).is_whitespace()
    }
    fn digit(c: u8) -> bool {
        c.is_ascii_digit()
    }
    let b = s.as_bytes();
    if b.first() != Some(&b'[') {
        return 0;
    }
    let mut i = 1;
    skip(b, &mut i, space);
    let stamp = skip(b, &mut i, digit) > 0
        && b.get(i) == Some(&b'.')
        && {
            i += 1;
            skip(b, &mut i, digit) > 0
        }
        && b.get(i) == Some(&b']');
    if stamp {
        i += 1;
        skip(b, &mut i, space);
    }
    match b.get(i) {
        Some(c) if !c.is_ascii() => UPTIME.find(s).map_or(0, |m| m.end()),
        _ if stamp => i,
        _ => 0,
    }
}

/// Finds the prefix and the pairs of a LOG record, or `None` when `s` is not
/// one.
pub(crate) fn split(s: &str) -> Option<Record> {
    let start = uptime_end(s);
    let rest = &s[start..];
    // The prefix holds no `=`, so the first `=` is the one of `IN=`.
    let eq = rest.find('=')?;
    let pairs_at = eq.checked_sub(2)?;
    if rest.as_bytes().get(pairs_at..eq)? != b"IN" {
        return None;
    }
    let pairs = &rest[pairs_at..];
    // `IN=\S* OUT=`: the interface runs to the first white space, which must
    // be one space followed by `OUT=`.
    let after_in = &pairs[3..];
    let if_end = after_in.find(char::is_whitespace).unwrap_or(after_in.len());
    if !after_in[if_end..].starts_with(" OUT=") {
        return None;
    }
    // `.*$` does not cross a line break.
    if pairs.contains('\n') {
        return None;
    }
    let prefix = rest[..pairs_at].trim_end();
    let name = prefix.strip_prefix('[').unwrap_or(prefix);
    let name = name
        .strip_suffix("]:")
        .or_else(|| name.strip_suffix(']'))
        .or_else(|| name.strip_suffix(':'))
        .unwrap_or(name);
    let name_at = start + (prefix.len() - prefix.strip_prefix('[').unwrap_or(prefix).len());
    Some(Record {
        prefix: start..start + prefix.len(),
        rule_name: (!prefix.contains('\n')).then_some(name_at..name_at + name.len()),
        pairs: start + pairs_at..s.len(),
        verdict: verdict(prefix).map(|v| start + v.start..start + v.end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::xorshift;

    /// The regex the step replaces.
    static REPLACED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:\[\s*\d+\.\d+\]\s*)?(?P<prefix>[^=]*?)\s*(?P<pairs>IN=\S* OUT=.*)$")
            .expect("valid")
    });

    fn by_regex(s: &str) -> Option<(String, String)> {
        let c = REPLACED.captures(s)?;
        Some((c["prefix"].to_string(), c["pairs"].to_string()))
    }

    fn by_step(s: &str) -> Option<(String, String)> {
        split(s).map(|r| (s[r.prefix].to_string(), s[r.pairs].to_string()))
    }

    /// The regex the `rule_name` capture replaces, on the prefix.
    static RULE_NAME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\[?(?P<rule_name>.*?)\]?:?$").expect("valid"));

    #[test]
    fn rule_name_is_what_the_regex_made_of_the_prefix() {
        let pieces = [
            "[",
            "]",
            ":",
            "]:",
            ":]",
            " ",
            "UFW BLOCK",
            "x",
            "é",
            "[[",
            "\n",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut prefix = String::new();
            for _ in 0..(next() % 6) {
                prefix.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let line = format!("{prefix} IN=eth0 OUT= SRC=1.2.3.4");
            let Some(r) = split(&line) else {
                continue;
            };
            let p = &line[r.prefix.clone()];
            let want = RULE_NAME.captures(p).map(|c| c["rule_name"].to_string());
            assert_eq!(r.rule_name.map(|n| line[n].to_string()), want, "{line:?}");
        }
    }

    /// The regex the decoder ran on the prefix before the step captured
    /// the verdict.
    static VERDICT_REGEX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?P<verdict>block|drop|reject|deny|allow|accept)").expect("valid")
    });

    #[test]
    fn verdict_is_what_the_regex_found_in_the_prefix() {
        let pieces = [
            "[", "]", " ", "UFW ", "BLOCK", "block", "Drop", "REJ", "ECT", "deny", "DENYY",
            "alLow", "ACCEPT", "acc", "blo", "ck", "\u{212a}", "é", "x", ":", "-",
        ];
        let mut next = xorshift(0x6a09_e667_f3bc_c909);
        let mut found = 0;
        for _ in 0..50_000 {
            let mut prefix = String::new();
            for _ in 0..(next() % 7) {
                prefix.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let want = VERDICT_REGEX
                .captures(&prefix)
                .and_then(|c| c.name("verdict"))
                .map(|m| m.range());
            found += usize::from(want.is_some());
            assert_eq!(verdict(&prefix), want, "{prefix:?}");
            // Where the step puts it in a whole line.
            let line = format!("[ 5.25] {prefix} IN=eth0 OUT= SRC=1.2.3.4");
            if let Some(r) = split(&line) {
                let got = r.verdict.map(|v| line[v].to_string());
                let p = &line[r.prefix];
                let want = VERDICT_REGEX.find(p).map(|m| m.as_str().to_string());
                assert_eq!(got, want, "{line:?}");
            }
        }
        assert!(found > 5_000, "only {found} prefixes with a verdict");
        // The Kelvin sign folds to `k`: the regex decides, as before.
        assert_eq!(verdict("[UFW BLOC\u{212a}]"), Some(5..12));
    }

    #[test]
    fn shapes() {
        assert_eq!(
            by_step("[ 812.123456] [UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4"),
            Some(("[UFW BLOCK]".into(), "IN=eth0 OUT= SRC=1.2.3.4".into()))
        );
        assert_eq!(
            by_step("REJECT(out)IN= OUT=eth0 SRC=::1"),
            Some(("REJECT(out)".into(), "IN= OUT=eth0 SRC=::1".into()))
        );
        assert_eq!(
            by_step("IN=lo OUT="),
            Some(("".into(), "IN=lo OUT=".into()))
        );
        assert_eq!(by_step("XX=enp1s0 OUT= SRC=1.2.3.4"), None);
        assert_eq!(by_step("a=b IN=eth0 OUT="), None);
        assert_eq!(by_step("IN=eth0\tOUT="), None);
        assert_eq!(by_step("IN=eth0 OUT=\nx"), None);
        assert_eq!(by_step(""), None);
        assert_eq!(by_step("="), None);
        assert_eq!(by_step("é=IN="), None);
    }

    /// Every line built from these pieces is split the same way as by the
    /// regex: the pieces are the ones that matter to it (brackets, digits,
    /// white space of several kinds, `=`, `IN`, `OUT`, line breaks,
    /// non-ASCII text).
    #[test]
    fn same_as_the_regex() {
        let pieces = [
            "[",
            "]",
            " ",
            "  ",
            "\t",
            "\u{a0}",
            "1",
            "12.5",
            ".",
            "=",
            "IN=",
            "IN",
            "N=",
            " OUT=",
            "OUT=",
            "eth0",
            "[ 5.25]",
            "[12.5]",
            "\n",
            "é",
            "UFW BLOCK",
            "SRC=1.2.3.4",
            "x",
            // A Unicode digit and spaces, which `\d` and `\s` take.
            "\u{663}",
            "[\u{663}.5]",
            "[\u{2003}7.5]",
            "\u{b}",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut matched = 0;
        for _ in 0..50_000 {
            let n = (next() % 9) as usize;
            let mut line = String::new();
            for _ in 0..n {
                line.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let want = by_regex(&line);
            matched += usize::from(want.is_some());
            assert_eq!(
                uptime_end(&line),
                UPTIME.find(&line).map_or(0, |m| m.end()),
                "{line:?}"
            );
            assert_eq!(by_step(&line), want, "{line:?}");
        }
        // The generator reaches both outcomes.
        assert!(matched > 200, "only {matched} matching lines generated");
    }
}
