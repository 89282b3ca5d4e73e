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
    /// A date and time with `format:` (chrono syntax, or `rfc3339`), stored as
    /// RFC 3339 UTC text. Becomes the event time when the field is `@timestamp`.
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
    Timestamp(TimeFormat),
}

#[derive(Debug, Clone)]
pub(crate) enum TimeFormat {
    Rfc3339,
    /// A chrono format with an offset (`%z`).
    WithOffset(String),
    /// A chrono format without offset: the time is taken as UTC.
    Naive(String),
}

impl Convert {
    /// Builds a conversion; `format` is only for timestamps.
    pub(crate) fn new(name: Option<ConvertName>, format: Option<&str>) -> Result<Convert, String> {
        let name = name.unwrap_or(ConvertName::String);
        if format.is_some() && name != ConvertName::Timestamp {
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
            ConvertName::Timestamp => Convert::Timestamp(match format {
                None => {
                    return Err(
                        "`convert: timestamp` needs a `format` (chrono syntax or `rfc3339`)".into(),
                    );
                }
                Some("rfc3339") => TimeFormat::Rfc3339,
                Some(f) if f.contains("%z") || f.contains("%:z") || f.contains("%#z") => {
                    TimeFormat::WithOffset(f.to_string())
                }
                Some(f) => {
                    // Catch format typos at load time rather than per line.
                    if chrono::format::StrftimeItems::new(f)
                        .any(|i| matches!(i, chrono::format::Item::Error))
                    {
                        return Err(format!("invalid timestamp format `{f}`"));
                    }
                    TimeFormat::Naive(f.to_string())
                }
            }),
        })
    }

    /// Converts one value. Errors are short reasons for `decode.error`.
    pub(crate) fn apply(&self, v: &str) -> Result<Value, String> {
        Ok(match self {
            Convert::String => Value::String(v.to_string()),
            Convert::Ip => {
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("`{v}` is not an IP address"))?;
                Value::String(ip.to_string())
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
            Convert::Timestamp(f) => Value::String(format_ms(self.timestamp_ms(v, f)?)),
        })
    }

    fn timestamp_ms(&self, v: &str, f: &TimeFormat) -> Result<i64, String> {
        let parsed = match f {
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(v).map(|t| t.timestamp_millis()),
            TimeFormat::WithOffset(f) => {
                DateTime::parse_from_str(v, f).map(|t| t.timestamp_millis())
            }
            TimeFormat::Naive(f) => {
                NaiveDateTime::parse_from_str(v, f).map(|t| t.and_utc().timestamp_millis())
            }
        };
        parsed.map_err(|e| format!("`{v}` is not a timestamp: {e}"))
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC text (`2024-06-08T14:34:33Z`).
pub(crate) fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses what [`format_ms`] writes (and any RFC 3339 text) back to ms.
pub(crate) fn parse_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(name: ConvertName, v: &str) -> Result<Value, String> {
        Convert::new(Some(name), None).and_then(|c| c.apply(v))
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
        let c = Convert::new(Some(ConvertName::Timestamp), Some("%a %b %e %H:%M:%S %Y"))
            .expect("valid");
        assert_eq!(
            c.apply("Sat Nov 28 19:47:08 2026"),
            Ok(Value::from("2026-11-28T19:47:08Z"))
        );
        assert_eq!(
            c.apply("Sun Nov  1 09:07:08 2026"),
            Ok(Value::from("2026-11-01T09:07:08Z"))
        );
        assert!(c.apply("yesterday").is_err());
        let c = Convert::new(Some(ConvertName::Timestamp), Some("rfc3339")).expect("valid");
        assert_eq!(
            c.apply("2024-01-02T03:04:05.5+01:00"),
            Ok(Value::from("2024-01-02T02:04:05.500Z"))
        );
        assert!(Convert::new(Some(ConvertName::Timestamp), None).is_err());
        assert!(Convert::new(Some(ConvertName::Int), Some("%Y")).is_err());
        assert!(Convert::new(Some(ConvertName::Timestamp), Some("%Q")).is_err());
        assert_eq!(
            parse_ms(&format_ms(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
    }
}
