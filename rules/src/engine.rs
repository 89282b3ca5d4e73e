//! The detection engine: events in, detections out.
//!
//! The engine holds only the immutable rules; the caller owns the
//! [`EngineState`] and passes it to every call. That split is what lets the
//! collector commit the state together with its journal cursor (after a crash
//! the same events give the same detections) and snapshot it for backups. The
//! engine never reads a clock: time is the events' time, so a replay gives the
//! same answer as the live run.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::event::Event;
use crate::rule::{RuleKind, RuleSet, Severity};

/// What the engine raises; the collector turns it into a stored alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// The rule that fired.
    pub rule_id: String,
    /// Its title at the time.
    pub rule_title: String,
    /// Its version at the time.
    pub rule_version: u32,
    /// Its severity.
    pub severity: Severity,
    /// Its tags (ATT&CK ids).
    pub tags: Vec<String>,
    /// The grouping key of stateful rules (`source.ip=…`); `""` for
    /// single-event rules.
    pub group_key: String,
    /// Event time of the event that completed the detection.
    pub timestamp_ms: i64,
    /// [`Event::id`] of the events behind the detection.
    pub evidence: Vec<u64>,
    /// One sentence for people, from the rule's `summary`.
    pub summary: String,
}

/// The format version written by this build.
pub const ENGINE_STATE_FORMAT: u32 = 1;

/// Per-rule, per-key state of stateful rules, kept apart from the compiled
/// rules. Empty while only single-event rules exist; the format version lets
/// a newer collector recognise (and migrate or reset) an older snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineState {
    /// Format version of this snapshot ([`ENGINE_STATE_FORMAT`] when created).
    pub format: u32,
    /// State by rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleState>,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            format: ENGINE_STATE_FORMAT,
            rules: BTreeMap::new(),
        }
    }
}

/// The state of one stateful rule (thresholds and sequences add fields here).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleState {}

/// A snapshot written by a newer (or unknown) format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "engine state has format {found}, this build reads format {ENGINE_STATE_FORMAT}; start from an empty state or upgrade"
)]
pub struct StateFormatError {
    /// The format found in the snapshot.
    pub found: u32,
}

impl EngineState {
    /// Checks that a deserialized snapshot can be used by this build.
    pub fn check_format(&self) -> Result<(), StateFormatError> {
        if self.format == ENGINE_STATE_FORMAT {
            Ok(())
        } else {
            Err(StateFormatError { found: self.format })
        }
    }
}

/// Runs a rule set over events.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
}

impl Engine {
    /// An engine over `rules`.
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine { rules }
    }

    /// The rules it runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Feeds one event; returns its detections in rule order. Deterministic:
    /// the same state and event give the same result.
    pub fn process(&self, state: &mut EngineState, event: &Event) -> Vec<Detection> {
        // Single-event rules keep no state; the parameter is the seam for
        // thresholds and sequences.
        let _ = state;
        let mut out = Vec::new();
        for rule in self.rules.rules().iter().filter(|r| r.enabled) {
            match rule.kind {
                RuleKind::Single => {
                    if rule.condition.eval(&event.fields) {
                        out.push(Detection {
                            rule_id: rule.id.clone(),
                            rule_title: rule.title.clone(),
                            rule_version: rule.version,
                            severity: rule.severity,
                            tags: rule.tags.clone(),
                            group_key: String::new(),
                            timestamp_ms: event.timestamp_ms,
                            evidence: vec![event.id],
                            summary: rule.summary.render(&event.fields),
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceFile;

    #[test]
    fn state_round_trips_and_checks_format() {
        let s = EngineState::default();
        assert_eq!(s.check_format(), Ok(()));
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, r#"{"format":1,"rules":{}}"#);
        let back: EngineState = serde_json::from_str(&json).unwrap_or_else(|_| EngineState {
            format: 0,
            rules: BTreeMap::new(),
        });
        assert_eq!(back, s);
        let future: EngineState = serde_json::from_str(r#"{"format":9}"#).unwrap_or_default();
        assert_eq!(future.check_format(), Err(StateFormatError { found: 9 }));
    }

    #[test]
    fn process_raises_detections_for_enabled_matching_rules() {
        let text = r#"
rules:
  - id: a
    title: A
    severity: high
    tags: [attack.t1]
    version: 3
    match: {field: x, equals: 1}
    summary: "x is {x}"
  - id: b
    title: B
    severity: low
    enabled: false
    match: {field: x, exists: true}
    summary: b
  - id: c
    title: C
    severity: low
    match: {field: x, equals: 2}
    summary: c
"#;
        let rules = RuleSet::from_sources(&[SourceFile::new("t.yml", text)])
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(Arc::new(rules));
        let mut state = EngineState::default();
        let event = Event {
            id: 42,
            timestamp_ms: 1000,
            fields: [("x".to_string(), serde_json::Value::from(1))]
                .into_iter()
                .collect(),
        };
        let got = engine.process(&mut state, &event);
        assert_eq!(
            got,
            vec![Detection {
                rule_id: "a".into(),
                rule_title: "A".into(),
                rule_version: 3,
                severity: Severity::High,
                tags: vec!["attack.t1".into()],
                group_key: String::new(),
                timestamp_ms: 1000,
                evidence: vec![42],
                summary: "x is 1".into(),
            }]
        );
        assert_eq!(state, EngineState::default());
    }
}
