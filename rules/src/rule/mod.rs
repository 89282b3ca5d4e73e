//! Rules: what to alert on, compiled from YAML rule files.
//!
//! A [`Rule`] is immutable once loaded; everything that changes while events
//! flow lives in [`crate::EngineState`]. The kind of rule is an enum
//! ([`RuleKind`]): only single-event rules exist today; thresholds and
//! sequences will be new variants with their state in `EngineState`.

pub(crate) mod condition;
pub(crate) mod load;
pub(crate) mod stateful;
pub(crate) mod template;

use std::fmt;
use std::str::FromStr;

use crate::error::LoadErrors;
use crate::event::SourceFile;
use crate::lists::Lists;
use condition::Condition;
pub use stateful::{Learn, Sequence, Silence, Step, Suppress, Threshold};
use template::Template;

/// How serious a detection is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording, no action expected.
    Info,
    /// Look at it when time allows.
    Low,
    /// Look at it today.
    Medium,
    /// Look at it now.
    High,
    /// Wake someone up.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The placeholders a summary may use that the engine fills itself, from
/// the detection rather than the event: the count of a threshold, and the
/// newest event's time and the limit of a silence.
pub(crate) const SUMMARY_FIELDS: [&str; 4] = [
    "threshold.count",
    "silence.last_seen_ms",
    "silence.limit_ms",
    "silence.limit",
];

/// A severity name that is not one of info, low, medium, high, critical.
/// Its message names the one it likely misspells (`hgh`: `high`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseSeverityError(pub String);

impl fmt::Display for ParseSeverityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown severity `{}`, expected one of info, low, medium, high, critical",
            self.0
        )?;
        let written = self.0.trim().to_ascii_lowercase();
        match Severity::ALL
            .into_iter()
            .find(|sev| soc_config::misspells(&written, sev.as_str()))
        {
            Some(sev) => write!(f, "; did you mean `{sev}`?"),
            None => Ok(()),
        }
    }
}

impl FromStr for Severity {
    type Err = ParseSeverityError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseSeverityError(s.to_string()))
    }
}

/// What kind of logic a rule runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuleKind {
    /// One event that matches the condition raises one detection.
    Single,
    /// Matching events counted per group within a sliding window.
    Threshold(Threshold),
    /// Ordered steps joined by a key within a span.
    Sequence(Sequence),
    /// A source that matched before stays silent too long.
    Silence(Silence),
}

impl RuleKind {
    /// `single`, `threshold`, `sequence` or `silence`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleKind::Single => "single",
            RuleKind::Threshold(_) => "threshold",
            RuleKind::Sequence(_) => "sequence",
            RuleKind::Silence(_) => "silence",
        }
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable identifier, unique across all loaded files.
    pub id: String,
    /// Short name shown in lists.
    pub title: String,
    /// What the rule detects and why it matters.
    pub description: String,
    /// Severity of the detections it raises.
    pub severity: Severity,
    /// ATT&CK ids and other tags (`attack.t1133`).
    pub tags: Vec<String>,
    /// Bumped when the logic changes, so alerts say which version raised them.
    pub version: u32,
    /// Disabled rules are loaded and tested but never raise detections.
    pub enabled: bool,
    /// Who maintains the rule.
    pub owner: Option<String>,
    /// Links for the analyst.
    pub references: Vec<String>,
    /// The file the rule came from.
    pub file: String,
    /// Its line in that file.
    pub line: usize,
    pub(crate) kind: RuleKind,
    /// One alert per key per period, when set.
    pub suppress: Option<Suppress>,
    /// Hash of the rule's text; a reload keeps state only when it is equal.
    pub fingerprint: u64,
    pub(crate) condition: Condition,
    pub(crate) summary: Template,
    pub(crate) tests: Vec<load::RuleTest>,
}

impl Rule {
    /// The rule's kind.
    pub fn kind(&self) -> &RuleKind {
        &self.kind
    }

    /// Whether one event's fields satisfy the rule's condition: for a
    /// sequence, its `match` (when it has one) and the condition of at least
    /// one of its steps, since a sequence without `match` takes only the
    /// events of its steps.
    pub fn matches(&self, event: &crate::Event) -> bool {
        self.condition.eval(&event.fields)
            && (!matches!(self.kind, RuleKind::Sequence(_))
                || self.steps_holding(event).next().is_some())
    }

    /// The fields the rule reads: those its conditions test (its steps'
    /// too), its group, distinct, join and silence keys, its suppression
    /// key and its summary's placeholders, but for those the engine fills
    /// itself (`threshold.count`, `silence.last_seen_ms`,
    /// `silence.limit_ms`, `silence.limit`).
    pub fn fields_read(&self) -> std::collections::BTreeSet<&str> {
        let mut out = std::collections::BTreeSet::new();
        self.condition.fields(&mut out);
        match &self.kind {
            RuleKind::Single => {}
            RuleKind::Threshold(t) => {
                out.extend(t.group_by.iter().map(String::as_str));
                out.extend(t.distinct.as_deref());
            }
            RuleKind::Sequence(seq) => {
                for step in &seq.steps {
                    step.condition.fields(&mut out);
                    out.extend(step.by.iter().map(String::as_str));
                }
            }
            RuleKind::Silence(s) => out.extend(s.by.iter().map(String::as_str)),
        }
        if let Some(by) = self.suppress.as_ref().and_then(|s| s.by.as_ref()) {
            out.extend(by.iter().map(String::as_str));
        }
        out.extend(
            self.summary
                .fields()
                .filter(|f| !SUMMARY_FIELDS.contains(f)),
        );
        out
    }

    /// How many inline test cases the rule has.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// Whether `event` satisfies the rule's condition, as [`Rule::matches`]
    /// tells, and with it, for a sequence, the names of the steps whose
    /// condition it satisfies, in step order (empty for other kinds); `None`
    /// when it does not. Each step is tested once.
    pub fn matching_steps(&self, event: &crate::Event) -> Option<Vec<&str>> {
        if !self.condition.eval(&event.fields) {
            return None;
        }
        let steps: Vec<&str> = self
            .steps_holding(event)
            .map(|step| step.name.as_str())
            .collect();
        match self.kind {
            RuleKind::Sequence(_) if steps.is_empty() => None,
            _ => Some(steps),
        }
    }

    /// The steps of a sequence whose condition `event` satisfies (none for
    /// other kinds).
    fn steps_holding<'r>(&'r self, event: &crate::Event) -> impl Iterator<Item = &'r Step> {
        let steps = match &self.kind {
            RuleKind::Sequence(seq) => &seq.steps[..],
            _ => &[],
        };
        steps
            .iter()
            .filter(|step| step.condition.eval(&event.fields))
    }

    /// The summary sentence for `event`.
    pub fn summary_for(&self, event: &crate::Event) -> String {
        self.summary.render(&event.fields)
    }
}

/// A compiled, immutable set of rules in load order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules shipped with soc (`rules/rules/*.yml`).
    pub fn builtin() -> RuleSet {
        // Proven by the `builtin_content_loads` test; the files are compiled in.
        RuleSet::from_sources_with_lists(
            &crate::builtin_rule_sources(),
            &crate::builtin_list_sources(),
        )
        .expect("builtin rule files must load")
    }

    /// Compiles rule files, in order. Reports every error of every file;
    /// duplicate ids across files are errors.
    pub fn from_sources(files: &[SourceFile]) -> Result<RuleSet, LoadErrors> {
        RuleSet::from_sources_with_lists(files, &[])
    }

    /// Like [`RuleSet::from_sources`], with the list files `in_list:` may
    /// name (see [`crate::Lists`]); list and rule errors are reported together.
    pub fn from_sources_with_lists(
        files: &[SourceFile],
        list_files: &[SourceFile],
    ) -> Result<RuleSet, LoadErrors> {
        let (lists, mut errors) = match Lists::from_sources(list_files) {
            Ok(l) => (l, Vec::new()),
            Err(e) => (Lists::default(), e.0),
        };
        match load::load(files, &lists) {
            Ok(rules) if errors.is_empty() => Ok(RuleSet { rules }),
            Ok(_) => Err(LoadErrors(errors)),
            Err(e) => {
                errors.extend(e.0);
                Err(LoadErrors(errors))
            }
        }
    }

    /// A set holding only `rule`, enabled (inline tests of disabled rules).
    pub(crate) fn only(rule: &Rule) -> RuleSet {
        let mut r = rule.clone();
        r.enabled = true;
        RuleSet { rules: vec![r] }
    }

    /// All rules, enabled or not, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_round_trip_and_order() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(s.to_string().to_uppercase().parse::<Severity>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{s}\"")));
        }
        assert!(Severity::Low < Severity::High);
        assert_eq!(
            "urgent".parse::<Severity>(),
            Err(ParseSeverityError("urgent".into()))
        );
        // A misspelt name is told the one it likely means; another is not.
        let hint = |s: &str| s.parse::<Severity>().err().map(|e| e.to_string());
        assert!(
            hint("Hgh").is_some_and(|m| m.ends_with("critical; did you mean `high`?")),
            "{:?}",
            hint("Hgh")
        );
        assert!(
            hint("critcal").is_some_and(|m| m.ends_with("; did you mean `critical`?")),
            "{:?}",
            hint("critcal")
        );
        assert!(
            hint("urgent").is_some_and(|m| !m.contains("did you mean")),
            "{:?}",
            hint("urgent")
        );
    }

    /// A sequence matches the events of its steps, and no others: its
    /// top-level condition alone (empty when it has no `match`) holds for
    /// every event.
    #[test]
    fn a_sequence_matches_the_events_of_its_steps_only() {
        let decoders = crate::decode::Decoders::builtin();
        let rules = RuleSet::builtin();
        let Some(rule) = rules.get("malware-then-outbound-traffic") else {
            panic!("the shipped sequence rule is missing");
        };
        assert!(matches!(rule.kind(), RuleKind::Sequence(_)));
        let decode = |line: &str| {
            decoders.decode(&crate::Input {
                raw: line.as_bytes(),
                source_type: "",
                agent: "",
                source: "",
                path: "",
                received_ms: 1_709_251_200_000,
            })
        };
        let matches = |line: &str| rule.matches(&decode(line));
        let found =
            "Mar  1 10:00:00 ws-alice clamd[812]: /home/alice/a.exe: Win.Trojan.Agent-1 FOUND";
        // Step one, step two, neither.
        assert!(matches(found));
        assert!(matches(
            "Mar  1 10:05:00 ws-alice kernel: [UFW ALLOW] IN= OUT=eth0 SRC=10.1.2.3 DST=198.51.100.9 PROTO=TCP SPT=40000 DPT=443"
        ));
        assert!(!matches(
            "Mar  1 10:05:00 ws-alice systemd[1]: Started session-6219.scope - Session 8355 of User deploy."
        ));
        assert!(!matches(
            "Mar  1 10:05:00 ws-alice kernel: [UFW ALLOW] IN= OUT=eth0 SRC=10.1.2.3 DST=10.1.2.1 PROTO=TCP SPT=40000 DPT=53"
        ));
        // And which step a line is.
        let found = decode(found);
        assert_eq!(rule.matching_steps(&found), Some(vec!["malware found"]));
        let Some(single) = rules
            .rules()
            .iter()
            .find(|r| matches!(r.kind(), RuleKind::Single))
        else {
            panic!("no single-event rule shipped");
        };
        assert_eq!(
            single.matching_steps(&found).is_some(),
            single.matches(&found)
        );
        assert!(
            single
                .matching_steps(&found)
                .is_none_or(|steps| steps.is_empty())
        );
        // A line no step of the sequence takes: no match, no steps.
        let other = decode(
            "Mar  1 10:05:00 ws-alice systemd[1]: Started session-6219.scope - Session 8355 of User deploy.",
        );
        assert_eq!(rule.matching_steps(&other), None);
    }
}
