//! Rule files: the YAML shape (serde structs) and its compilation.
//!
//! ```yaml
//! rules:
//!   - id: clamav-malware-detected
//!     title: ClamAV found malware
//!     description: ...
//!     severity: high
//!     tags: [attack.t1204]
//!     match:
//!       all:
//!         - field: event.module
//!           equals: clamav
//!         - field: event.action
//!           equals: malware_detected
//!     summary: "ClamAV found {malware.name} in {file.path} on {host.name}"
//!     tests:
//!       - line: "..."
//!         alerts: 1
//! ```

use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};
use super::stateful::{
    Learn, SequenceConfig, Silence, SilenceConfig, Step, Suppress, SuppressConfig, Threshold,
    ThresholdConfig, parse_duration_ms,
};
use super::template::Template;
use super::{Rule, RuleKind, Severity};
use crate::decode::config::TEST_RECEIVED_MS;
use crate::error::{LoadError, LoadErrors};
use crate::event::SourceFile;
use crate::lists::Lists;
use crate::yaml::{FirstWritten, Located, load_items};

/// One rule as written in a file under `rules:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// Stable identifier: letters, digits, `.`, `_`, `-`.
    pub id: String,
    /// Short name. Required; an `Option` so that a rule without one is
    /// reported with the rule's other mistakes, not instead of them.
    #[serde(default)]
    pub title: Option<String>,
    /// What the rule detects and why it matters.
    #[serde(default)]
    pub description: String,
    /// info, low, medium, high or critical (any case). Required.
    #[serde(default)]
    pub severity: Option<String>,
    /// ATT&CK ids and other tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Links for the analyst.
    #[serde(default)]
    pub references: Vec<String>,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Maintainer.
    pub owner: Option<String>,
    /// Default 1; bump when the logic changes.
    #[serde(default = "one")]
    pub version: u32,
    /// The condition an event must satisfy (optional for sequences, whose
    /// steps carry their own).
    #[serde(rename = "match")]
    pub condition: Option<ConditionConfig>,
    /// Count (or distinct-count) matching events per group in a window.
    pub threshold: Option<ThresholdConfig>,
    /// Ordered steps joined by a key within a span.
    pub sequence: Option<SequenceConfig>,
    /// Alert when a source that matched stops sending for a while.
    pub silence: Option<SilenceConfig>,
    /// One alert per key per period.
    pub suppress: Option<SuppressConfig>,
    /// One sentence with `{field}` placeholders. Required.
    #[serde(default)]
    pub summary: Option<String>,
    /// Inline test cases.
    #[serde(default)]
    pub tests: Vec<RuleTestConfig>,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// One inline test of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleTestConfig {
    /// Optional label shown in failures.
    pub name: Option<String>,
    /// One input line...
    pub line: Option<String>,
    /// ...or several, fed in order.
    pub lines: Option<Vec<String>>,
    /// The agent's source type hint for the lines.
    #[serde(default)]
    pub source_type: String,
    /// When the lines were received (RFC 3339); default 2024-12-31T12:00:00Z.
    pub received: Option<String>,
    /// How many detections this rule must raise over all lines.
    pub alerts: Option<usize>,
    /// Rules (of the whole set) that must raise at least one detection.
    pub rule_ids: Option<Vec<String>>,
}

/// A compiled rule test.
#[derive(Debug, Clone)]
pub(crate) struct RuleTest {
    /// Where it is written (its name or first input line).
    pub at: usize,
    pub name: Option<String>,
    pub lines: Vec<String>,
    pub source_type: String,
    pub received_ms: i64,
    pub alerts: Option<usize>,
    pub rule_ids: Option<Vec<String>>,
}

/// Loads every rule of every file, collecting all errors.
pub(crate) fn load(files: &[SourceFile], lists: &Lists) -> Result<Vec<Rule>, LoadErrors> {
    let mut errors = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut first = FirstWritten::default();
    for file in files {
        for item in load_items::<RuleConfig>(file, "rules", &mut errors) {
            let compiled = compile(&file.name, &item, lists);
            let id = item.value.id.as_str();
            if let Some((prev_file, prev_line)) = first.repeated(id, &file.name, &item) {
                errors.push(LoadError::repeated_name(
                    &file.name,
                    item.line_of_key("id"),
                    "id",
                    format!("rule id `{id}` is already used at {prev_file}:{prev_line}"),
                ));
            }
            match compiled {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.extend(
                    e.into_iter()
                        .filter(|e| !follows_from_left_out(e, &item.left_out)),
                ),
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        crate::yaml::sort_errors(files, &mut errors);
        Err(LoadErrors(errors))
    }
}

/// Whether `e` only repeats what leaving out a key of the item did: the
/// key was reported already, as misspelt or of the wrong kind. A rule
/// whose `title:` was refused lacks a title; a field test whose operator
/// was misspelt (`contians:`) has no operator once it is left out.
fn follows_from_left_out(e: &LoadError, left_out: &[String]) -> bool {
    let parent = |path: &str| path.rsplit_once('.').map(|(p, _)| p.to_string());
    let Some(field) = e.field.as_deref() else {
        return false;
    };
    left_out.iter().any(|k| k == field)
        || e.message.contains(super::condition::NO_OPERATOR)
            && parent(field).is_some_and(|test| {
                left_out
                    .iter()
                    .any(|k| parent(k).as_deref() == Some(test.as_str()))
            })
}

fn compile(file: &str, item: &Located<RuleConfig>, lists: &Lists) -> Result<Rule, Vec<LoadError>> {
    let cfg = &item.value;
    let mut errors = Vec::new();
    let mut err = |line: usize, field: &str, msg: String| {
        errors.push(LoadError::new(
            file,
            Some(line),
            Some(field),
            format!("rule `{}`: {msg}", cfg.id),
        ));
    };
    if cfg.id.is_empty()
        || !cfg
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        err(
            item.line_of_key("id"),
            "id",
            "ids use only letters, digits, `.`, `_` and `-`".into(),
        );
    }
    let title = cfg.title.as_deref().unwrap_or_default();
    match &cfg.title {
        None => err(
            item.start_line,
            "title",
            "missing: every rule needs a short name".into(),
        ),
        Some(t) if t.trim().is_empty() => err(
            item.line_of_key("title"),
            "title",
            "must not be empty".into(),
        ),
        Some(_) => {}
    }
    let severity = match cfg.severity.as_deref().map(str::parse::<Severity>) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            err(item.line_of_key("severity"), "severity", e.to_string());
            None
        }
        None => {
            err(
                item.start_line,
                "severity",
                "missing: one of info, low, medium, high, critical".into(),
            );
            None
        }
    };
    let mut problems = Vec::new();
    let condition = match &cfg.condition {
        Some(c) => Condition::compile(c, "match", lists, &mut problems),
        None if cfg.sequence.is_some() => Some(Condition::All(Vec::new())),
        None => {
            err(
                item.start_line,
                "match",
                "a rule needs `match:` (only sequences may leave it out)".into(),
            );
            None
        }
    };
    let kinds =
        cfg.threshold.is_some() as u8 + cfg.sequence.is_some() as u8 + cfg.silence.is_some() as u8;
    let mut kind = Some(RuleKind::Single);
    if kinds > 1 {
        err(
            item.start_line,
            "threshold",
            "use at most one of `threshold`, `sequence`, `silence`".into(),
        );
        kind = None;
    }
    // The line of `key:`, else of the section holding it (flow style).
    let at = |key: &str, section: &str| {
        let l = item.line_of_key(key);
        if l == item.start_line {
            item.line_of_key(section)
        } else {
            l
        }
    };
    let duration = |key: &str, field: &str, text: &str, errs: &mut Vec<(usize, String, String)>| {
        let section = field.split('.').next().unwrap_or(field);
        parse_duration_ms(text)
            .map_err(|m| errs.push((at(key, section), field.to_string(), m)))
            .ok()
    };
    let mut errs: Vec<(usize, String, String)> = Vec::new();
    if let Some(t) = &cfg.threshold {
        let window = duration("window", "threshold.window", &t.window, &mut errs);
        if t.count == 0 {
            errs.push((
                at("count", "threshold"),
                "threshold.count".into(),
                "must be at least 1".into(),
            ));
        }
        kind = match (window, kind) {
            (Some(window_ms), Some(_)) if t.count > 0 => Some(RuleKind::Threshold(Threshold {
                count: t.count,
                distinct: t.distinct.clone(),
                window_ms,
                group_by: t.group_by.clone(),
            })),
            _ => None,
        };
    }
    if let Some(sq) = &cfg.sequence {
        let within = duration("within", "sequence.within", &sq.within, &mut errs);
        if sq.steps.len() < 2 {
            errs.push((
                at("steps", "sequence"),
                "sequence.steps".into(),
                "a sequence needs at least two steps".into(),
            ));
        }
        let mut steps = Vec::new();
        for (i, st) in sq.steps.iter().enumerate() {
            let path = format!("sequence.steps[{i}].match");
            let by = st.by.clone().unwrap_or_else(|| sq.by.clone());
            if by.len() != sq.by.len() {
                errs.push((
                    item.line_of_key("by"),
                    format!("sequence.steps[{i}].by"),
                    format!(
                        "must name as many fields as `sequence.by` ({})",
                        sq.by.len()
                    ),
                ));
            }
            if let Some(c) = Condition::compile(&st.condition, &path, lists, &mut problems) {
                steps.push(Step {
                    name: st.name.clone().unwrap_or_else(|| format!("step {}", i + 1)),
                    condition: c,
                    by,
                });
            }
        }
        kind = match (within, kind) {
            (Some(within_ms), Some(_)) if steps.len() == sq.steps.len() && steps.len() >= 2 => {
                Some(RuleKind::Sequence(super::stateful::Sequence {
                    within_ms,
                    steps,
                }))
            }
            _ => None,
        };
    }
    if let Some(si) = &cfg.silence {
        let after = duration("after", "silence.after", &si.after, &mut errs);
        if si.by.is_empty() {
            errs.push((
                item.line_of_key("silence"),
                "silence.by".into(),
                "name the fields of a source, e.g. [agent.name, log.source]".into(),
            ));
        }
        // `None` when a setting is wrong (each one reported).
        let learn = si.learn.as_ref().and_then(|l| {
            let over = duration("over", "silence.learn.over", &l.over, &mut errs);
            let at_least = duration("at_least", "silence.learn.at_least", &l.at_least, &mut errs);
            let mut ok = true;
            if !(l.times.is_finite() && l.times > 0.0) {
                errs.push((
                    at("times", "learn"),
                    "silence.learn.times".into(),
                    format!("must be a number above 0, not {}", l.times),
                ));
                ok = false;
            }
            if let (Some(a), Some(b)) = (at_least, after)
                && a > b
            {
                errs.push((
                    at("at_least", "learn"),
                    "silence.learn.at_least".into(),
                    format!("`{}` is longer than `after` (`{}`)", l.at_least, si.after),
                ));
                ok = false;
            }
            let learn = Learn {
                over_ms: over?,
                times: l.times,
                at_least_ms: at_least?,
            };
            ok.then_some(learn)
        });
        let learn_ok = si.learn.is_none() || learn.is_some();
        kind = match (after, kind) {
            (Some(after_ms), Some(_)) if !si.by.is_empty() && learn_ok => {
                Some(RuleKind::Silence(Silence {
                    by: si.by.clone(),
                    after_ms,
                    learn,
                }))
            }
            _ => None,
        };
    }
    let suppress = cfg.suppress.as_ref().and_then(|su: &SuppressConfig| {
        duration("for", "suppress.for", &su.period, &mut errs).map(|period_ms| Suppress {
            period_ms,
            by: su.by.clone(),
        })
    });
    for (line, field, msg) in errs {
        err(line, &field, msg);
    }
    for (path, msg, needle) in problems {
        let line = if needle.is_empty() {
            item.line_of_key(last_key(&path))
        } else {
            item.line_of(&needle)
        };
        err(line, &path, msg);
    }
    let summary = match cfg.summary.as_deref().map(Template::parse) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            err(item.line_of_key("summary"), "summary", e);
            None
        }
        None => {
            err(
                item.start_line,
                "summary",
                "missing: one sentence for the alert, with `{field}` placeholders".into(),
            );
            None
        }
    };
    let mut tests = Vec::new();
    for (i, t) in cfg.tests.iter().enumerate() {
        let field = format!("tests[{i}]");
        let line = item.line_of_test(
            t.name.as_deref(),
            t.line.as_deref().or(t
                .lines
                .as_ref()
                .and_then(|ls| ls.first())
                .map(String::as_str)),
        );
        let lines = match (&t.line, &t.lines) {
            (Some(l), None) => vec![l.clone()],
            (None, Some(ls)) if !ls.is_empty() => ls.clone(),
            _ => {
                err(
                    line,
                    &field,
                    "give either `line` or a non-empty `lines` list".into(),
                );
                continue;
            }
        };
        if t.alerts.is_none() && t.rule_ids.is_none() {
            err(
                line,
                &field,
                "say what to expect: `alerts` (count) and/or `rule_ids`".into(),
            );
            continue;
        }
        let received_ms = match &t.received {
            None => TEST_RECEIVED_MS,
            Some(r) => match crate::decode::convert::parse_ms(r) {
                Some(ms) => ms,
                None => {
                    err(
                        item.line_of(r),
                        &format!("{field}.received"),
                        format!("`{r}` is not an RFC 3339 time"),
                    );
                    continue;
                }
            },
        };
        tests.push(RuleTest {
            at: line,
            name: t.name.clone(),
            lines,
            source_type: t.source_type.clone(),
            received_ms,
            alerts: t.alerts,
            rule_ids: t.rule_ids.clone(),
        });
    }
    match (severity, condition, summary, kind) {
        (Some(severity), Some(condition), Some(summary), Some(kind)) if errors.is_empty() => {
            Ok(Rule {
                id: cfg.id.clone(),
                title: title.to_string(),
                description: cfg.description.trim().to_string(),
                severity,
                tags: cfg.tags.clone(),
                version: cfg.version,
                enabled: cfg.enabled,
                owner: cfg.owner.clone(),
                references: cfg.references.clone(),
                file: file.to_string(),
                line: item.start_line,
                kind,
                suppress,
                fingerprint: fingerprint(&item.lines),
                condition,
                summary,
                tests,
            })
        }
        _ => Err(errors),
    }
}

/// FNV-1a over the rule's own text: equal text = equal logic, so a reload
/// keeps the state of rules whose text did not change.
fn fingerprint(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in lines {
        for b in l.trim_end().bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `match.all[1].regex` → `regex`; `match.all[3].any` → `any`.
fn last_key(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"rules:
  - id: shared-id
    title: First
    severity: low
    match: { field: a, exists: true }
    summary: first
"#;

    /// One rule file with many different mistakes: every one is reported,
    /// with file, line and field, in line order.
    const BROKEN: &str = r#"# a file with mistakes on purpose
rules:
  - id: bad-severity
    title: Severity is not a level
    severity: urgent
    match: { field: a, exists: true }
    summary: x
  - id: unknown-key
    title: A typo in a key
    severity: low
    sumary: typo
    match: { field: a, exists: true }
    summary: x
  - id: bad-condition
    title: Broken regex, cidr and operator-less field
    severity: medium
    match:
      all:
        - field: a
          regex: '(unclosed'
        - field: source.ip
          cidr: [10.0.0.0/8, 300.0.0.0/8]
        - field: lonely
    summary: x
  - id: bad-summary
    title: Unclosed placeholder
    severity: high
    match: { field: a, exists: true }
    summary: "from {source.ip"
  - id: shared-id
    title: Duplicate of another file's id
    severity: low
    match: { field: a, exists: true }
    summary: x
  - id: bad-test
    title: A test without expectation
    severity: low
    match: { field: a, exists: true }
    summary: x
    tests:
      - line: "some line"
  - id: missing-keys
    match: { field: a, regex: '(' }
  - id: bad-severity
    title: Repeats the id of a rule with a mistake
    severity: low
    match: { field: a, exists: true }
    summary: x
  - id: typos-and-more
    title: Two misspelt keys and a bad severity
    severity: urgent
    descripton: typo
    match: { field: a, exists: true }
    sumary: typo
    summary: x
  - id: nested-typos
    title: Misspelt keys deeper down, and a bad severity and window
    severity: urgent
    match:
      all:
        - { field: a, exists: true }
        - { field: b, contians: x, case_insensitive: true }
    threshold: { count: 3, window: 5 parsecs, group_by: [a], distnct: b }
    summary: x
  - id: fine
    title: This one is fine
    severity: info
    match: { field: a, exists: true }
    summary: x
"#;

    #[test]
    fn broken_rule_file_reports_every_error_with_file_and_line() {
        let files = [
            SourceFile::new("good.yml", GOOD),
            SourceFile::new("broken.yml", BROKEN),
        ];
        let errors = load(&files, &Lists::default())
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        let got: Vec<(String, Option<usize>, Option<String>)> = errors
            .iter()
            .map(|e| (e.file.clone(), e.line, e.field.clone()))
            .collect();
        let want: Vec<(String, Option<usize>, Option<String>)> = [
            (5, "severity"),
            (11, "sumary"),
            (20, "match.all[0].regex"),
            (22, "match.all[1].cidr"),
            (23, "match.all[2].field"),
            (29, "summary"),
            (30, "id"),
            (41, "tests[0]"),
            // A rule without its required keys: those are reported with
            // its other mistakes, not instead of them.
            (42, "title"),
            (42, "severity"),
            (42, "summary"),
            (43, "match.regex"),
            // The id of a rule that failed is still taken.
            (44, "id"),
            // Misspelt keys are reported, and the rule is checked without
            // them.
            (51, "severity"),
            (52, "descripton"),
            (54, "sumary"),
            // At any depth too, each with its path and line.
            (58, "severity"),
            (62, "match.all[1].contians"),
            (63, "threshold.distnct"),
            (63, "threshold.window"),
        ]
        .into_iter()
        .map(|(l, f)| ("broken.yml".to_string(), Some(l), Some(f.to_string())))
        .collect();
        assert_eq!(got, want, "{}", LoadErrors(errors.clone()));
        let text = LoadErrors(errors).to_string();
        assert_eq!(text.lines().count(), 20);
        // A misspelt key the rule lacks is read as that key, and says so.
        assert!(
            text.contains("broken.yml:52: descripton: unknown field `descripton`, expected one of")
                && text.contains("`tests`; read as `description`"),
            "{text}"
        );
        assert!(!text.contains("sumary`, expected one of `id`, `title`, `description`, `severity`, `tags`, `references`, `enabled`, `owner`, `version`, `match`, `threshold`, `sequence`, `silence`, `suppress`, `summary`, `tests`; read as"), "{text}");
        // The test whose operator was misspelt is not also reported as
        // having none.
        assert!(
            !text.contains("nested-typos`: field `b` has no operator"),
            "{text}"
        );
        assert!(
            text.contains("broken.yml:5: severity: rule `bad-severity`: unknown severity `urgent`"),
            "{text}"
        );
        assert!(text.contains("broken.yml:22: match.all[1].cidr: rule `bad-condition`: `300.0.0.0/8` is not a network"), "{text}");
        assert!(
            text.contains("broken.yml:30: id: rule id `shared-id` is already used at good.yml:2"),
            "{text}"
        );
        assert!(
            text.contains("broken.yml:42: title: rule `missing-keys`: missing"),
            "{text}"
        );
        assert!(
            text.contains(
                "broken.yml:44: id: rule id `bad-severity` is already used at broken.yml:3"
            ),
            "{text}"
        );
    }

    #[test]
    fn good_rules_load_with_their_metadata() {
        let rules =
            load(&[SourceFile::new("good.yml", GOOD)], &Lists::default()).unwrap_or_default();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(
            (r.id.as_str(), r.severity, r.version, r.enabled),
            ("shared-id", Severity::Low, 1, true)
        );
        assert_eq!((r.file.as_str(), r.line), ("good.yml", 2));
    }
}
