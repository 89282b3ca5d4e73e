//! The `syslog` parse step: the RFC 3164 and RFC 5424 envelopes.
//!
//! Hand-written rather than a regex because every syslog line goes through it.
//! Recognised shapes:
//!
//! * RFC 3164: `[<PRI>]Mmm dd hh:mm:ss host tag[pid]: body`. The year is not in
//!   the line; it is taken from the time the line was received, minus one when
//!   that puts the event more than a week in the future (a December line read
//!   in January). Times are taken as UTC.
//! * The same with an RFC 3339 timestamp instead (rsyslog's high-precision file
//!   format): `2024-06-08T14:34:33.123+02:00 host tag[pid]: body`.
//! * RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD...] body`, `-` for
//!   absent values.
//!
//! A line that does not have one of these shapes is "not syslog" (the decoder
//! does not apply). A line that has the shape but an impossible date (a
//! device with a broken clock, an anonymised sample) is still read: the
//! envelope has no time and says why in `date_error`, so the body is decoded
//! and the line reported, not lost to `unknown`.

use chrono::{DateTime, Datelike, NaiveDate};

/// The parts of a syslog envelope; everything borrowed from the line.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Envelope<'t> {
    pub priority: Option<u16>,
    pub timestamp_ms: Option<i64>,
    pub host: Option<&'t str>,
    pub program: Option<&'t str>,
    pub pid: Option<i64>,
    pub msgid: Option<&'t str>,
    pub body: &'t str,
    /// The envelope's date could not be read (why); `timestamp_ms` is `None`.
    pub date_error: Option<String>,
}

/// Why an envelope could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SyslogError {
    /// The line is not syslog at all.
    NotSyslog,
    /// The line looks like syslog but is broken (the reason).
    Invalid(String),
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEK_MS: i64 = 7 * 86_400_000;

/// Parses a syslog envelope; `received_ms` supplies the RFC 3164 year.
pub(crate) fn parse(line: &str, received_ms: i64) -> Result<Envelope<'_>, SyslogError> {
    let (priority, rest) = match line.strip_prefix('<') {
        Some(after) => {
            let end = after
                .find('>')
                .filter(|&e| (1..=3).contains(&e))
                .ok_or(SyslogError::NotSyslog)?;
            let pri: u16 = after[..end].parse().map_err(|_| SyslogError::NotSyslog)?;
            if pri > 191 {
                return Err(SyslogError::Invalid(format!("priority {pri} is above 191")));
            }
            (Some(pri), &after[end + 1..])
        }
        None => (None, line),
    };
    if let (Some(_), Some(r)) = (priority, rest.strip_prefix("1 ")) {
        return parse_5424(priority, r);
    }
    let (timestamp, rest) = if let Some(r) = parse_3164_time(rest, received_ms) {
        r
    } else if let Some(r) = parse_iso_time(rest) {
        r
    } else {
        return Err(SyslogError::NotSyslog);
    };
    let rest = rest.strip_prefix(' ').ok_or(SyslogError::NotSyslog)?;
    let mut env = Envelope {
        priority,
        body: rest,
        ..Envelope::default()
    };
    match timestamp {
        Ok(t) => env.timestamp_ms = Some(t),
        Err(e) => env.date_error = Some(e),
    }
    // host, unless the first token already is the tag ("prog[pid]:") or is
    // part of the message: a `key=value` pair (a FortiGate writing
    // `date=... time=...` right after the time) or a CEF/LEEF marker.
    let (first, after_first) = split_token(rest);
    let tag_part = if first.ends_with(':') || first.contains('=') || is_record_marker(first) {
        rest
    } else {
        if !first.is_empty() {
            env.host = Some(first);
        }
        // UniFi gateways write the host name twice (`UDMP UDMP sshd[1]: ...`).
        let after_first = match split_token(after_first) {
            (again, rest) if !first.is_empty() && again == first => rest,
            _ => after_first,
        };
        env.body = after_first;
        after_first
    };
    let (tag, after_tag) = split_token(tag_part);
    if is_record_marker(tag) {
        // `host CEF: 0|...`: the record's marker, not a program.
        return Ok(env);
    }
    if let Some((program, pid)) = tag.strip_suffix(':').and_then(split_tag) {
        env.program = Some(program);
        env.pid = pid;
        env.body = after_tag;
    }
    Ok(env)
}

/// `CEF:` / `LEEF:` (with or without the version glued on): the start of a
/// CEF or LEEF record, which some senders separate from the version by a
/// space (`CEF: 0|...`) so that it looks like a syslog tag.
fn is_record_marker(token: &str) -> bool {
    token.starts_with("CEF:") || token.starts_with("LEEF:")
}

/// `first token` and the rest after exactly one space.
fn split_token(s: &str) -> (&str, &str) {
    // A space is one byte, and never part of another character.
    match memchr::memchr(b' ', s.as_bytes()) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// `prog[pid]` or `prog` → (prog, pid); None if it does not look like a tag.
fn split_tag(tag: &str) -> Option<(&str, Option<i64>)> {
    let (program, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((p, pid)) => (p, pid.parse::<i64>().ok()),
        None => (tag, None),
    };
    let ok = !program.is_empty()
        && program.len() <= 64
        && program
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@'));
    ok.then_some((program, pid))
}

/// A timestamp read from the front of a line (or why it is impossible), and
/// the rest of the line.
type Stamped<'s> = (Result<i64, String>, &'s str);

/// The number in two bytes of a 3164 time: what `trim_start().parse::<u32>()`
/// reads of them (`07`, ` 7`, `+7`; a byte outside ASCII is never part of
/// one).
fn two_digits(b0: u8, b1: u8) -> Option<u32> {
    let digit = |c: u8| c.is_ascii_digit().then(|| u32::from(c - b'0'));
    match (digit(b0), digit(b1)) {
        (Some(a), Some(b)) => Some(a * 10 + b),
        (None, Some(b)) if b0 == b'+' || (b0.is_ascii() && char::from(b0).is_whitespace()) => {
            Some(b)
        }
        _ => None,
    }
}

/// A 3164 time's calendar fields and year, and its time in that year and in
/// the one before (`None`: no such date). Lines come in time order, many in
/// the same second: the last one asked for is kept per thread.
type YearTimes = ((i32, [u32; 5]), (Option<i64>, Option<i64>));

thread_local! {
    static LAST_RECEIVED: std::cell::Cell<(i64, i32)> = const { std::cell::Cell::new((i64::MIN, 0)) };
    static LAST_TIMES: std::cell::Cell<YearTimes> =
        const { std::cell::Cell::new(((i32::MIN, [0; 5]), (None, None))) };
}

/// The year of `received_ms` (UTC).
fn received_year(received_ms: i64) -> i32 {
    LAST_RECEIVED.with(|last| {
        let (ms, year) = last.get();
        if ms == received_ms {
            return year;
        }
        let year = DateTime::from_timestamp_millis(received_ms)
            .unwrap_or_default()
            .year();
        last.set((received_ms, year));
        year
    })
}

/// `Mmm dd hh:mm:ss` at the start of `s`.
fn parse_3164_time(s: &str, received_ms: i64) -> Option<Stamped<'_>> {
    let b = s.as_bytes();
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[..3])? as u32 + 1;
    let (Some(day), Some(h), Some(mi), Some(se)) = (
        two_digits(b[4], b[5]),
        two_digits(b[7], b[8]),
        two_digits(b[10], b[11]),
        two_digits(b[13], b[14]),
    ) else {
        return None;
    };
    let year = received_year(received_ms);
    let key = (year, [month, day, h, mi, se]);
    let (this_year, year_before) = LAST_TIMES.with(|last| {
        let (k, times) = last.get();
        if k == key {
            return times;
        }
        let at = |year: i32| -> Option<i64> {
            Some(
                NaiveDate::from_ymd_opt(year, month, day)?
                    .and_hms_opt(h, mi, se)?
                    .and_utc()
                    .timestamp_millis(),
            )
        };
        let times = (at(year), at(year - 1));
        last.set((key, times));
        times
    });
    let ts = match this_year {
        Some(t) if t > received_ms + WEEK_MS => year_before,
        Some(t) => Some(t),
        None => year_before,
    };
    let ts = ts.ok_or_else(|| format!("impossible date `{}`", &s[..15]));
    Some((ts, &s[15..]))
}

/// An RFC 3339 timestamp at the start of `s`, up to the first space.
fn parse_iso_time(s: &str) -> Option<Stamped<'_>> {
    let b = s.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    let ts = DateTime::parse_from_rfc3339(&s[..end])
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("timestamp `{}`: {e}", &s[..end]));
    Some((ts, &s[end..]))
}

fn nil(s: &str) -> Option<&str> {
    (s != "-" && !s.is_empty()).then_some(s)
}

/// RFC 5424 after `<PRI>1 `.
fn parse_5424(priority: Option<u16>, s: &str) -> Result<Envelope<'_>, SyslogError> {
    let mut parts = s.splitn(6, ' ');
    let (Some(ts), Some(host), Some(app), Some(procid), Some(msgid)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SyslogError::Invalid("RFC 5424 header is incomplete".into()));
    };
    let rest = parts.next().unwrap_or("");
    let (timestamp_ms, date_error) = match nil(ts).map(DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => (Some(t.timestamp_millis()), None),
        Some(Err(e)) => (None, Some(format!("timestamp `{ts}`: {e}"))),
        None => (None, None),
    };
    let body = skip_structured_data(rest)?;
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    // Some products (Check Point) put everything in the structured data
    // and leave the message empty: then the structured data is the body.
    let body = if body.trim().is_empty() && rest.starts_with('[') {
        rest.trim_end()
    } else {
        body
    };
    Ok(Envelope {
        priority,
        timestamp_ms,
        host: nil(host),
        program: nil(app),
        pid: nil(procid).and_then(|p| p.parse().ok()),
        msgid: nil(msgid),
        body,
        date_error,
    })
}

/// Skips `-` or `[id k="v"]...` and the space after it.
fn skip_structured_data(s: &str) -> Result<&str, SyslogError> {
    if let Some(r) = s.strip_prefix('-') {
        return Ok(r.strip_prefix(' ').unwrap_or(r));
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        let mut in_quotes = false;
        i += 1;
        loop {
            match b.get(i) {
                None => return Err(SyslogError::Invalid("unterminated structured data".into())),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                Some(b']') if !in_quotes => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    if i == 0 {
        return Err(SyslogError::Invalid(
            "expected `-` or `[` for structured data".into(),
        ));
    }
    let r = s.get(i..).unwrap_or("");
    Ok(r.strip_prefix(' ').unwrap_or(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-12-31T12:00:00Z
    const RECEIVED: i64 = 1_735_646_400_000;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MIN)
    }

    #[test]
    fn rfc3164_with_pid_and_space_padded_day() {
        let e = parse("Jun  8 14:34:33 sd-126005 kernel: [5.0] IN=x", RECEIVED);
        assert_eq!(
            e,
            Ok(Envelope {
                priority: None,
                timestamp_ms: Some(ms("2024-06-08T14:34:33Z")),
                host: Some("sd-126005"),
                program: Some("kernel"),
                pid: None,
                msgid: None,
                body: "[5.0] IN=x",
                date_error: None,
            })
        );
        let e = parse(
            "<38>Mar  1 00:00:09 ws-bob clamd[812]: SelfCheck: Database status OK.",
            RECEIVED,
        );
        let e = e.expect("parses");
        assert_eq!(e.priority, Some(38));
        assert_eq!(e.program, Some("clamd"));
        assert_eq!(e.pid, Some(812));
        assert_eq!(e.body, "SelfCheck: Database status OK.");
    }

    /// The 3164 time as it was read before the byte-wise reading and the
    /// per-thread cache: `str::parse` on each field, the calendar each time.
    fn reference_3164_time(s: &str, received_ms: i64) -> Option<Stamped<'_>> {
        let b = s.as_bytes();
        if b.len() < 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
            return None;
        }
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[..3])?;
        let num = |i: usize, j: usize| -> Option<u32> { s.get(i..j)?.trim_start().parse().ok() };
        let (Some(day), Some(h), Some(mi), Some(se)) =
            (num(4, 6), num(7, 9), num(10, 12), num(13, 15))
        else {
            return None;
        };
        let received = DateTime::from_timestamp_millis(received_ms).unwrap_or_default();
        let at = |year: i32| -> Option<i64> {
            Some(
                NaiveDate::from_ymd_opt(year, month as u32 + 1, day)?
                    .and_hms_opt(h, mi, se)?
                    .and_utc()
                    .timestamp_millis(),
            )
        };
        let year = received.year();
        let ts = match at(year) {
            Some(t) if t > received_ms + WEEK_MS => at(year - 1),
            Some(t) => Some(t),
            None => at(year - 1),
        };
        let ts = ts.ok_or_else(|| format!("impossible date `{}`", &s[..15]));
        Some((ts, &s[15..]))
    }

    /// Times built from the two-byte pieces that matter to the reading
    /// (padding, signs, white space of several kinds, bytes outside ASCII,
    /// impossible days and hours), received on days around year ends and
    /// leap days, in runs that repeat a time or a reception (the cache):
    /// the same answers as the reference.
    #[test]
    fn rfc3164_time_reads_as_the_reference_does() {
        let pieces = [
            "01", "07", " 7", "+7", "7 ", "  ", "-1", "29", "30", "31", "59", "60", "99", "00",
            "\t5", "\u{b}5", "\u{c}5", "\u{1c}5", "x1", "1x", "é", "++", " +", "7", "123",
        ];
        let months = ["Jan", "Feb", "Dec", "Mar", "jan", "Fev"];
        let received = [
            ms("2024-02-29T12:00:00Z"),
            ms("2025-01-01T00:00:05Z"),
            ms("2024-12-31T23:59:59Z"),
            ms("2023-03-01T00:00:00Z"),
            0,
            -86_400_000,
        ];
        let mut next = crate::decode::tests::xorshift(0x2545_f491_4f6c_dd1d);
        let pick = |n: u64, len: usize| (n % len as u64) as usize;
        let mut times = 0;
        let mut line = String::new();
        let mut at = received[0];
        for _ in 0..60_000 {
            // The same line again or a new one, received at the same time
            // or another (each a quarter of the time).
            let r = next() % 4;
            if r >= 2 || line.is_empty() {
                let month = months[pick(next(), months.len())];
                let mut piece = || pieces[pick(next(), pieces.len())];
                line = format!(
                    "{month} {} {}:{}:{} h p: x",
                    piece(),
                    piece(),
                    piece(),
                    piece()
                );
            }
            if r % 2 == 1 {
                at = received[pick(next(), received.len())];
            }
            let want = reference_3164_time(&line, at);
            times += usize::from(matches!(want, Some((Ok(_), _))));
            assert_eq!(parse_3164_time(&line, at), want, "{line:?} at {at}");
        }
        assert!(times > 1_000, "only {times} readable times generated");
    }

    #[test]
    fn rfc3164_year_rolls_back_for_future_dates() {
        // Received 2025-01-01: a Dec 31 line is from 2024.
        let jan1 = ms("2025-01-01T00:00:05Z");
        let e = parse("Dec 31 23:59:59 h p: x", jan1).expect("parses");
        assert_eq!(e.timestamp_ms, Some(ms("2024-12-31T23:59:59Z")));
        let e = parse("Jan  1 00:00:01 h p: x", jan1).expect("parses");
        assert_eq!(e.timestamp_ms, Some(ms("2025-01-01T00:00:01Z")));
    }

    #[test]
    fn rfc3164_without_tag_or_host() {
        let e = parse(
            "Jun  8 14:34:33 host last message repeated 3 times",
            RECEIVED,
        )
        .expect("parses");
        assert_eq!(e.host, Some("host"));
        assert_eq!(e.program, None);
        assert_eq!(e.body, "last message repeated 3 times");
        let e = parse("Jun  8 14:34:33 sshd[7]: hello", RECEIVED).expect("parses");
        assert_eq!(e.host, None);
        assert_eq!(e.program, Some("sshd"));
        assert_eq!(e.body, "hello");
    }

    #[test]
    fn rfc3164_message_right_after_the_time() {
        // A key=value pair is no host name.
        let e = parse(
            "Feb 20 12:26:25 date=2011-02-20 time=12:26:24 a=b",
            RECEIVED,
        )
        .expect("parses");
        assert_eq!(e.host, None);
        assert_eq!(e.program, None);
        assert_eq!(e.body, "date=2011-02-20 time=12:26:24 a=b");
        // A CEF marker is no program, with or without a space before the version.
        let e = parse("Apr  7 10:10:10 fw CEF: 0|V|P|1|2|n|3|a=b", RECEIVED).expect("parses");
        assert_eq!(e.host, Some("fw"));
        assert_eq!(e.program, None);
        assert_eq!(e.body, "CEF: 0|V|P|1|2|n|3|a=b");
        let e = parse("Apr  7 10:10:10 CEF:0|V|P|1|2|n|3|a=b", RECEIVED).expect("parses");
        assert_eq!(e.host, None);
        assert_eq!(e.body, "CEF:0|V|P|1|2|n|3|a=b");
    }

    #[test]
    fn rfc3164_host_written_twice() {
        let e = parse("Jun 27 09:02:22 udm udm sshd[45]: Failed x", RECEIVED).expect("parses");
        assert_eq!(e.host, Some("udm"));
        assert_eq!(e.program, Some("sshd"));
        assert_eq!(e.pid, Some(45));
        assert_eq!(e.body, "Failed x");
        // Only an exact repeat is skipped.
        let e = parse("Jun 27 09:02:22 udm udm2 sshd[45]: x", RECEIVED).expect("parses");
        assert_eq!(e.program, None);
        assert_eq!(e.body, "udm2 sshd[45]: x");
    }

    #[test]
    fn iso_timestamp_variant() {
        let e = parse(
            "2024-06-08T14:34:33.250+02:00 web01 sshd[42]: Accepted",
            RECEIVED,
        )
        .expect("parses");
        assert_eq!(e.timestamp_ms, Some(ms("2024-06-08T12:34:33.250Z")));
        assert_eq!(e.host, Some("web01"));
        assert_eq!(e.pid, Some(42));
    }

    #[test]
    fn rfc5424() {
        let line = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App]\"] \u{feff}An application event";
        let e = parse(line, RECEIVED).expect("parses");
        assert_eq!(e.priority, Some(165));
        assert_eq!(e.timestamp_ms, Some(ms("2003-10-11T22:14:15.003Z")));
        assert_eq!(e.host, Some("mymachine.example.com"));
        assert_eq!(e.program, Some("evntslog"));
        assert_eq!(e.pid, None);
        assert_eq!(e.msgid, Some("ID47"));
        assert_eq!(e.body, "An application event");
        let e = parse("<34>1 - host app 99 - - body", RECEIVED).expect("parses");
        assert_eq!((e.timestamp_ms, e.pid, e.body), (None, Some(99), "body"));
        let e = parse("<34>1 - host app - - [a k=\"v\"]", RECEIVED).expect("parses");
        assert_eq!(
            e.body, "[a k=\"v\"]",
            "structured data only: it is the body"
        );
    }

    #[test]
    fn not_syslog_and_broken() {
        assert_eq!(
            parse("IN=eth0 OUT= SRC=1.2.3.4", RECEIVED),
            Err(SyslogError::NotSyslog)
        );
        assert_eq!(
            parse("Sat Nov 28 19:47:08 2026 -> x", RECEIVED),
            Err(SyslogError::NotSyslog)
        );
        assert_eq!(parse("", RECEIVED), Err(SyslogError::NotSyslog));
        // An impossible date: read, without a time, and said why.
        let e = parse("Feb 30 10:00:00 h p[7]: x", RECEIVED).expect("an envelope");
        assert_eq!(
            (e.timestamp_ms, e.host, e.program, e.pid, e.body),
            (None, Some("h"), Some("p"), Some(7), "x")
        );
        assert_eq!(
            e.date_error.as_deref(),
            Some("impossible date `Feb 30 10:00:00`")
        );
        let e = parse("2024-13-45T10:00:00Z h p: x", RECEIVED).expect("an envelope");
        assert!(e.timestamp_ms.is_none() && e.date_error.is_some() && e.body == "x");
        let e = parse("<14>1 2024-02-30T10:00:00Z h p - - - x", RECEIVED).expect("an envelope");
        assert!(e.timestamp_ms.is_none() && e.date_error.is_some() && e.body == "x");
        assert!(matches!(
            parse("<1000>Jun  8 14:34:33 h p: x", RECEIVED),
            Err(SyslogError::NotSyslog)
        ));
        assert!(matches!(
            parse("<999>Jun  8 14:34:33 h p: x", RECEIVED),
            Err(SyslogError::Invalid(_))
        ));
        assert!(matches!(
            parse("<200>Jun  8 14:34:33 h p: x", RECEIVED),
            Err(SyslogError::Invalid(_))
        ));
        // Multi-byte input must not panic on slicing.
        assert!(parse("Jun é8 14:34:33 h p: x", RECEIVED).is_err());
        assert!(parse("é", RECEIVED).is_err());
    }
}
