//! Field conversions: turning captured text into typed field values.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

/// How a captured value becomes a field value (`convert:` in a decoder file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ConvertName {
    /// Keep the text.
    String,
    /// An IPv4 or IPv6 address, stored in canonical text form.
    Ip,
    /// A signed 64-bit integer (decimal, or hex with `0x`).
    Int,
    /// A floating-point number.
    Float,
    /// Lower-case text.
    Lowercase,
    /// Upper-case text.
    Uppercase,
    /// Whitespace-separated words as a list of strings.
    List,
    /// A date and time with `format:` (chrono syntax, `rfc3339`, `unix`,
    /// `unix_ms`/`_us`/`_ns`, or `cef`), stored as RFC 3339 UTC text. Becomes
    /// the event time when the field is `@timestamp`.
    Timestamp,
}

/// A compiled conversion.
#[derive(Debug, Clone)]
pub(crate) enum Convert {
    String,
    Ip,
    Int,
    Float,
    Lowercase,
    Uppercase,
    List,
    /// The format and the UTC offset (seconds) of times without one.
    Timestamp(TimeFormat, i32),
}

#[derive(Debug, Clone)]
pub(crate) enum TimeFormat {
    Rfc3339,
    /// A chrono format with an offset (`%z`).
    WithOffset(String),
    /// A chrono format without offset: the time is taken at the field's
    /// `timezone` (default UTC).
    Naive(String),
    /// Time since the epoch; the number of sub-second digits: 0 = seconds
    /// (fractions allowed), 3 = ms, 6 = µs, 9 = ns.
    Unix(u32),
    /// The CEF time fields (`rt`, `start`, `end`): milliseconds since the
    /// epoch, or `MMM dd yyyy HH:mm:ss[.SSS][ zone]` (the spec's dated forms;
    /// the zone is `UTC`/`GMT`/`Z` or an offset, else the field's
    /// `timezone`). The spec's year-less forms are an error: the year would
    /// be a guess.
    Cef,
    /// Several formats, tried in order; the first that reads the value
    /// wins (`format: [rfc3339, unix_ms]` for a source that writes either).
    FirstOf(Vec<TimeFormat>),
}

impl Convert {
    /// Builds a conversion; `formats` are only for timestamps, which need at
    /// least one (several are tried in order).
    pub(crate) fn new(name: Option<ConvertName>, formats: &[&str]) -> Result<Convert, String> {
        let name = name.unwrap_or(ConvertName::String);
        if !formats.is_empty() && name != ConvertName::Timestamp {
            return Err("`format` is only used with `convert: timestamp`".into());
        }
        Ok(match name {
            ConvertName::String => Convert::String,
            ConvertName::Ip => Convert::Ip,
            ConvertName::Int => Convert::Int,
            ConvertName::Float => Convert::Float,
            ConvertName::Lowercase => Convert::Lowercase,
            ConvertName::Uppercase => Convert::Uppercase,
            ConvertName::List => Convert::List,
            ConvertName::Timestamp => {
                let mut parsed = formats
                    .iter()
                    .map(|f| time_format(f))
                    .collect::<Result<Vec<_>, _>>()?;
                let format = match parsed.len() {
                    0 => {
                        return Err(
                            "`convert: timestamp` needs a `format` (chrono syntax or `rfc3339`)"
                                .into(),
                        );
                    }
                    1 => parsed.remove(0),
                    _ => TimeFormat::FirstOf(parsed),
                };
                Convert::Timestamp(format, 0)
            }
        })
    }

    /// Sets the offset of times written without one (`+07:00`, `-0500`,
    /// `UTC`).
    pub(crate) fn with_timezone(self, tz: Option<&str>) -> Result<Convert, String> {
        match (self, tz) {
            (c, None) => Ok(c),
            (Convert::Timestamp(f, _), Some(tz)) => match parse_offset(tz) {
                Some(off) => Ok(Convert::Timestamp(f, off)),
                None => Err(format!(
                    "`{tz}` is not a UTC offset (`+07:00`, `-0500`, `UTC`)"
                )),
            },
            (c, Some(_)) => Ok(c),
        }
    }

    /// Converts one value; `tz` (an offset text from the line) overrides the
    /// configured time zone of a timestamp. A timestamp also gives its time
    /// (ms), so that the event's time need not be read back from the text.
    pub(crate) fn apply_tz(
        &self,
        v: &str,
        tz: Option<&str>,
    ) -> Result<(Value, Option<i64>), String> {
        match self {
            Convert::Timestamp(f, default) => {
                let off = tz.and_then(parse_offset).unwrap_or(*default);
                // A time the calendar cannot hold is written as the epoch,
                // and is the epoch for the event too.
                let ms = timestamp_ms(v, f, off)?;
                let ms = DateTime::<Utc>::from_timestamp_millis(ms).map_or(0, |_| ms);
                Ok((Value::String(format_ms(ms)), Some(ms)))
            }
            _ => Ok((self.apply(v)?, None)),
        }
    }

    /// Converts one value. Errors are short reasons for `decode.error`.
    pub(crate) fn apply(&self, v: &str) -> Result<Value, String> {
        Ok(match self {
            Convert::String => Value::String(v.to_string()),
            Convert::Ip => {
                let ip = crate::lists::parse_ip(v)
                    .ok_or_else(|| format!("`{v}` is not an IP address"))?;
                match ip {
                    // A dotted quad that parses is already in its one
                    // written form (the parser refuses leading zeros).
                    IpAddr::V4(_) => Value::String(v.to_string()),
                    IpAddr::V6(_) => Value::String(ip.to_string()),
                }
            }
            Convert::Int => {
                let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(hex) => i64::from_str_radix(hex, 16),
                    None => v.parse::<i64>(),
                };
                Value::from(n.map_err(|_| format!("`{v}` is not an integer"))?)
            }
            Convert::Float => {
                let f: f64 = v.parse().map_err(|_| format!("`{v}` is not a number"))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("`{v}` is not a finite number"))?
            }
            Convert::Lowercase => Value::String(v.to_lowercase()),
            Convert::Uppercase => Value::String(v.to_uppercase()),
            Convert::List => Value::Array(
                v.split_whitespace()
                    .map(|w| Value::String(w.to_string()))
                    .collect(),
            ),
            Convert::Timestamp(f, off) => Value::String(format_ms(timestamp_ms(v, f, *off)?)),
        })
    }
}

/// One `format:` name or chrono pattern.
fn time_format(f: &str) -> Result<TimeFormat, String> {
    Ok(match f {
        "rfc3339" => TimeFormat::Rfc3339,
        "unix" => TimeFormat::Unix(0),
        "unix_ms" => TimeFormat::Unix(3),
        "unix_us" => TimeFormat::Unix(6),
        "unix_ns" => TimeFormat::Unix(9),
        "cef" => TimeFormat::Cef,
        f if f.contains("%z") || f.contains("%:z") || f.contains("%#z") => {
            TimeFormat::WithOffset(f.to_string())
        }
        f => {
            // Catch format typos at load time rather than per line.
            if chrono::format::StrftimeItems::new(f)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                return Err(format!("invalid timestamp format `{f}`"));
            }
            TimeFormat::Naive(f.to_string())
        }
    })
}

/// `+07:00`, `-0700`, `+7`, `UTC`, `GMT`, `Z` → seconds east of UTC.
pub(crate) fn parse_offset(tz: &str) -> Option<i32> {
    let tz = tz.trim();
    if tz.is_empty()
        || ["utc", "gmt", "z"]
            .iter()
            .any(|u| tz.eq_ignore_ascii_case(u))
    {
        return Some(0);
    }
    let tz = tz
        .strip_prefix("UTC")
        .or_else(|| tz.strip_prefix("GMT"))
        .unwrap_or(tz);
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().ok()?, 0)
    } else {
        let split = digits.len() - 2;
        (
            digits[..split].parse::<i32>().ok()?,
            digits[split..].parse::<i32>().ok()?,
        )
    };
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

fn timestamp_ms(v: &str, f: &TimeFormat, offset_s: i32) -> Result<i64, String> {
    {
        let parsed = match f {
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(v).map(|t| t.timestamp_millis()),
            TimeFormat::WithOffset(f) => {
                DateTime::parse_from_str(v, f).map(|t| t.timestamp_millis())
            }
            TimeFormat::Naive(f) => NaiveDateTime::parse_from_str(v, f)
                .map(|t| t.and_utc().timestamp_millis() - i64::from(offset_s) * 1000),
            TimeFormat::Unix(digits) => {
                return unix_ms(v, *digits).ok_or_else(|| format!("`{v}` is not a Unix time"));
            }
            TimeFormat::Cef => return cef_ms(v, offset_s),
            TimeFormat::FirstOf(formats) => {
                return formats
                    .iter()
                    .find_map(|f| timestamp_ms(v, f, offset_s).ok())
                    .ok_or_else(|| {
                        format!(
                            "`{v}` is not a timestamp in any of its {} formats",
                            formats.len()
                        )
                    });
            }
        };
        parsed.map_err(|e| format!("`{v}` is not a timestamp: {e}"))
    }
}

/// A CEF time field to ms (see [`TimeFormat::Cef`]).
fn cef_ms(v: &str, offset_s: i32) -> Result<i64, String> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return unix_ms(v, 3).ok_or_else(|| format!("`{v}` is not a Unix time"));
    }
    // A trailing zone, when the last word is one.
    let (text, offset_s) = match v.rsplit_once(' ') {
        Some((head, zone)) if !zone.contains(':') || zone.starts_with(['+', '-']) => {
            match parse_offset(zone) {
                Some(off) => (head, off),
                None => (v, offset_s),
            }
        }
        _ => (v, offset_s),
    };
    NaiveDateTime::parse_from_str(text, "%b %d %Y %H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis() - i64::from(offset_s) * 1000)
        .map_err(|e| format!("`{v}` is not a CEF time: {e}"))
}

/// A Unix time with `digits` sub-second digits (0 = seconds, fractions
/// allowed) to ms.
fn unix_ms(v: &str, digits: u32) -> Option<i64> {
    if digits == 0 {
        let f: f64 = v.trim().parse().ok()?;
        return (f.is_finite() && f.abs() < 1e13).then(|| (f * 1000.0).round() as i64);
    }
    let n: i64 = v.trim().parse().ok()?;
    Some(n / 10i64.pow(digits - 3))
}

/// Milliseconds since the epoch as RFC 3339 UTC text (`2024-06-08T14:34:33Z`).
pub(crate) fn format_ms(ms: i64) -> String {
    // Lines come mostly in time order, and many share a second: the text of
    // the thread's last time is kept.
    LAST_FORMATTED.with_borrow_mut(|last| match last {
        Some((at, text)) if *at == ms => text.clone(),
        _ => {
            let text = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            *last = Some((ms, text.clone()));
            text
        }
    })
}

/// Parses what [`format_ms`] writes (and any RFC 3339 text) back to ms.
pub(crate) fn parse_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

thread_local! {
    /// The last time [`format_ms`] wrote on this thread, and its text.
    static LAST_FORMATTED: std::cell::RefCell<Option<(i64, String)>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(name: ConvertName, v: &str) -> Result<Value, String> {
        Convert::new(Some(name), &[]).and_then(|c| c.apply(v))
    }

    #[test]
    fn conversions() {
        assert_eq!(
            conv(ConvertName::Ip, "195.54.160.107"),
            Ok(Value::from("195.54.160.107"))
        );
        assert_eq!(
            conv(ConvertName::Ip, "2001:DB8::1"),
            Ok(Value::from("2001:db8::1"))
        );
        assert!(conv(ConvertName::Ip, "999.1.1.1").is_err());
        // IPv4 text is kept as written, which is only sound because the
        // parser refuses every other spelling of the address.
        for odd in [
            "010.1.1.1",
            "1.1.1",
            "1.1.1.1.",
            " 1.1.1.1",
            "0x7f.0.0.1",
            "1.1.1.01",
        ] {
            assert!(conv(ConvertName::Ip, odd).is_err(), "{odd}");
        }
        assert_eq!(conv(ConvertName::Int, "8123"), Ok(Value::from(8123)));
        assert_eq!(conv(ConvertName::Int, "0x10"), Ok(Value::from(16)));
        assert!(conv(ConvertName::Int, "12a").is_err());
        assert_eq!(conv(ConvertName::Float, "0.5"), Ok(Value::from(0.5)));
        assert_eq!(conv(ConvertName::Lowercase, "TCP"), Ok(Value::from("tcp")));
        assert_eq!(
            conv(ConvertName::List, " DF  SYN "),
            Ok(serde_json::json!(["DF", "SYN"]))
        );
    }

    #[test]
    fn timestamps() {
        let c =
            Convert::new(Some(ConvertName::Timestamp), &["%a %b %e %H:%M:%S %Y"]).expect("valid");
        assert_eq!(
            c.apply("Sat Nov 28 19:47:08 2026"),
            Ok(Value::from("2026-11-28T19:47:08Z"))
        );
        assert_eq!(
            c.apply("Sun Nov  1 09:07:08 2026"),
            Ok(Value::from("2026-11-01T09:07:08Z"))
        );
        assert!(c.apply("yesterday").is_err());
        let c = Convert::new(Some(ConvertName::Timestamp), &["rfc3339"]).expect("valid");
        assert_eq!(
            c.apply("2024-01-02T03:04:05.5+01:00"),
            Ok(Value::from("2024-01-02T02:04:05.500Z"))
        );
        assert!(Convert::new(Some(ConvertName::Timestamp), &[]).is_err());
        assert!(Convert::new(Some(ConvertName::Int), &["%Y"]).is_err());
        assert!(Convert::new(Some(ConvertName::Timestamp), &["%Q"]).is_err());
        let c = Convert::new(Some(ConvertName::Timestamp), &["%Y-%m-%d %H:%M:%S"])
            .and_then(|c| c.with_timezone(Some("+07:00")))
            .expect("valid");
        assert_eq!(
            c.apply("2024-01-02 10:00:00"),
            Ok(Value::from("2024-01-02T03:00:00Z"))
        );
        assert_eq!(
            c.apply_tz("2024-01-02 10:00:00", Some("-0700"))
                .map(|(v, _)| v),
            Ok(Value::from("2024-01-02T17:00:00Z"))
        );
        let c = Convert::new(Some(ConvertName::Timestamp), &["unix_ns"]).expect("valid");
        assert_eq!(
            c.apply("1775176270239669800"),
            Ok(Value::from("2026-04-03T00:31:10.239Z"))
        );
        let c = Convert::new(Some(ConvertName::Timestamp), &["unix"]).expect("valid");
        assert_eq!(
            c.apply("1703859602"),
            Ok(Value::from("2023-12-29T14:20:02Z"))
        );
        assert!(c.apply("1e300").is_err());
        let c = Convert::new(Some(ConvertName::Timestamp), &["cef"]).expect("valid");
        for (v, want) in [
            ("1491523810000", "2017-04-07T00:10:10Z"),
            ("Apr 07 2017 00:10:10 GMT", "2017-04-07T00:10:10Z"),
            ("Apr 07 2017 00:10:10.250", "2017-04-07T00:10:10.250Z"),
            ("Apr 07 2017 02:10:10 +02:00", "2017-04-07T00:10:10Z"),
        ] {
            assert_eq!(c.apply(v), Ok(Value::from(want)), "{v}");
        }
        assert!(c.apply("Apr 07 00:10:10").is_err(), "no year");
        assert!(
            c.apply("Apr 07 2017 00:10:10 PST").is_err(),
            "unknown zone name"
        );
        assert!(c.apply("").is_err());
        // Several formats: the first that reads the value wins.
        let c = Convert::new(Some(ConvertName::Timestamp), &["rfc3339", "unix_ms"])
            .and_then(|c| c.with_timezone(Some("+07:00")))
            .expect("valid");
        assert_eq!(
            c.apply("2025-03-12T02:14:07.5318842+07:00"),
            Ok(Value::from("2025-03-11T19:14:07.531Z"))
        );
        assert_eq!(
            c.apply("1741745647531"),
            Ok(Value::from("2025-03-12T02:14:07.531Z"))
        );
        assert_eq!(
            c.apply("12/03/2025"),
            Err("`12/03/2025` is not a timestamp in any of its 2 formats".into())
        );
        assert!(Convert::new(Some(ConvertName::Timestamp), &["rfc3339", "%Q"]).is_err());
        assert!(Convert::new(Some(ConvertName::Int), &["rfc3339", "unix"]).is_err());
        assert_eq!(parse_offset("-0700"), Some(-25200));
        assert_eq!(parse_offset("+05:30"), Some(19800));
        assert_eq!(parse_offset("GMT"), Some(0));
        assert_eq!(parse_offset("+99"), None);
        assert_eq!(parse_offset("bogus"), None);
        assert_eq!(
            parse_ms(&format_ms(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
    }

    /// The time a timestamp conversion gives is the time its text reads
    /// back as, even for one the calendar cannot hold.
    #[test]
    fn a_timestamp_gives_the_time_its_text_says() {
        let c = Convert::new(Some(ConvertName::Timestamp), &["unix_ms"]).expect("valid");
        for v in ["1700000000123", "0", "-5", "9223372036854775807"] {
            let (text, ms) = c.apply_tz(v, None).expect("converts");
            assert_eq!(ms, text.as_str().and_then(parse_ms), "{v}");
        }
    }

    /// The thread keeps its last time and text: repeats, changes and
    /// returns give what formatting and parsing afresh give.
    #[test]
    fn last_time_kept_answers_like_a_fresh_one() {
        let times = [
            1_700_000_000_000,
            1_700_000_000_000,
            1_700_000_000_001,
            1_700_000_000_000,
            0,
            0,
            -1,
            i64::MIN,
            i64::MIN,
            i64::MAX,
            1_700_000_000_000,
        ];
        for ms in times {
            let fresh = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(format_ms(ms), fresh, "{ms}");
        }
        for text in [
            "2023-11-14T22:13:20Z",
            "2023-11-14T22:13:20Z",
            "not a time",
            "not a time",
            "2023-11-14T22:13:20.001Z",
            "2023-11-14T22:13:20Z",
            "",
        ] {
            let fresh = DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis());
            assert_eq!(parse_ms(text), fresh, "{text}");
        }
    }
}
