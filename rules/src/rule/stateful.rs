//! The keys of stateful rules: `threshold:`, `sequence:`, `silence:` and
//! `suppress:`, their YAML shape and their compiled form.
//!
//! ```yaml
//! threshold: { count: 20, distinct: destination.port, window: 60s, group_by: [source.ip] }
//! sequence:
//!   by: [host.name]
//!   within: 10m
//!   steps:
//!     - { name: malware, match: { field: event.action, equals: malware_detected } }
//!     - { name: outbound, match: { field: observer.egress.interface.name, exists: true } }
//! silence: { by: [agent.name, log.source], after: 1h }
//! suppress: { for: 1h, by: [source.ip] }
//! ```
//!
//! The compiled values are immutable; what changes while events flow lives in
//! [`crate::EngineState`].

use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};

/// `threshold:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdConfig {
    /// Events (or distinct values of `distinct`) needed within `window`.
    pub count: u64,
    /// Count distinct values of this field instead of events.
    pub distinct: Option<String>,
    /// Sliding window (`30s`, `10m`, `1h`, `1d`).
    pub window: String,
    /// Fields whose values form the group key; none = one global group.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// One `sequence.steps` item as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepConfig {
    /// Shown in errors and summaries.
    pub name: Option<String>,
    /// What the step's event must satisfy (on top of the rule's `match`).
    #[serde(rename = "match")]
    pub condition: ConditionConfig,
    /// Join fields of this step when its events name the key differently.
    pub by: Option<Vec<String>>,
}

/// `sequence:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SequenceConfig {
    /// Join key fields (the same values on every step).
    #[serde(default)]
    pub by: Vec<String>,
    /// The whole sequence must happen within this span of the first step.
    pub within: String,
    /// Two or more steps, in the order they must happen.
    pub steps: Vec<StepConfig>,
}

/// `silence:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceConfig {
    /// Fields naming one log source.
    pub by: Vec<String>,
    /// How long a source may stay silent (in event time) before the alert;
    /// with `learn`, the longest limit and the one of a source not learnt
    /// yet.
    pub after: String,
    /// Learn each source's usual gap and give it its own limit.
    pub learn: Option<LearnConfig>,
}

/// `silence.learn:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LearnConfig {
    /// How long a source is watched before its own limit applies; its
    /// usual gap is the longest of the last one to two such periods.
    pub over: String,
    /// The limit is this many times the usual gap.
    pub times: f64,
    /// The limit is never shorter than this.
    pub at_least: String,
}

/// `suppress:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuppressConfig {
    /// One alert per key per this period.
    #[serde(rename = "for")]
    pub period: String,
    /// Key fields; default: the rule's group key.
    pub by: Option<Vec<String>>,
}

/// A compiled threshold.
#[derive(Debug, Clone)]
pub struct Threshold {
    /// Events or distinct values needed.
    pub count: u64,
    /// The field counted distinctly, if any.
    pub distinct: Option<String>,
    /// Window in ms.
    pub window_ms: i64,
    /// Group key fields.
    pub group_by: Vec<String>,
}

/// A compiled sequence step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its name (or `step N`).
    pub name: String,
    pub(crate) condition: Condition,
    /// Join key fields for this step.
    pub by: Vec<String>,
}

/// A compiled sequence.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Span in ms from the first step to the last.
    pub within_ms: i64,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A compiled silence rule.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Fields naming a source.
    pub by: Vec<String>,
    /// Allowed gap in ms (with `learn`, the longest allowed).
    pub after_ms: i64,
    /// Each source's own limit, learnt from its gaps.
    pub learn: Option<Learn>,
}

/// How a silence rule learns each source's limit: `times` × the longest
/// gap between two of its events in the current and the previous period of
/// `over_ms` (event time, periods counted from the epoch), within
/// `[at_least_ms, after_ms]`. A source watched for less than one period
/// has the limit `after_ms`; a gap that was reported as silence is not
/// learnt.
#[derive(Debug, Clone, PartialEq)]
pub struct Learn {
    /// Length of a learning period, ms.
    pub over_ms: i64,
    /// Multiple of the usual gap.
    pub times: f64,
    /// Shortest limit, ms.
    pub at_least_ms: i64,
}

impl Learn {
    /// The limit of a source whose usual gap is `usual_ms`, once learnt.
    pub fn limit_ms(&self, usual_ms: i64, after_ms: i64) -> i64 {
        // Saturates: `as` turns a huge product into i64::MAX.
        let scaled = (usual_ms as f64 * self.times).ceil() as i64;
        scaled.clamp(self.at_least_ms.min(after_ms), after_ms)
    }
}

/// A compiled suppression.
#[derive(Debug, Clone)]
pub struct Suppress {
    /// Period in ms.
    pub period_ms: i64,
    /// Key fields; `None` = the detection's group key.
    pub by: Option<Vec<String>>,
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d` (a bare number is seconds) into
/// milliseconds; must be positive.
pub(crate) fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 10m, 1h or 1d"))?;
    let mult = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit; use ms, s, m, h or d"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("`{text}` must be a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Result<i64, ()>)] = &[
            ("60s", Ok(60_000)),
            ("60", Ok(60_000)),
            ("10m", Ok(600_000)),
            ("1h", Ok(3_600_000)),
            ("2d", Ok(172_800_000)),
            ("250ms", Ok(250)),
            ("0s", Err(())),
            ("10 minutes", Err(())),
            ("m", Err(())),
            ("-5s", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration_ms(text).map_err(|_| ()), *want, "{text}");
        }
    }
}
