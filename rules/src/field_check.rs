//! Fields a rule reads that no decoder sets.
//!
//! A rule that tests `sorce.ip` loads, passes its checks and runs, and
//! never fires: no event ever holds that field. [`unset_fields`] finds such
//! fields, with the field the rule likely meant when one is a letter or two
//! away (see [`soc_config::misspells`]). They are warnings, not errors: a
//! rule may be written for a decoder that this check did not load (a rule
//! folder linted without the decoder folder the collector loads with it).

use std::fmt;

use crate::{Decoders, RuleSet, SourceFile};

/// A field a rule reads that none of the loaded decoders sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsetField {
    /// The rule's file.
    pub file: String,
    /// The line of the field in the rule (the rule's line when the field's
    /// is not found).
    pub line: usize,
    /// The rule's id.
    pub rule: String,
    /// The field.
    pub field: String,
    /// A field the decoders set that it likely misspells.
    pub meant: Option<String>,
}

impl fmt::Display for UnsetField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule `{}` reads `{}`, which no loaded decoder sets: no event can hold it",
            self.file, self.line, self.rule, self.field
        )?;
        match &self.meant {
            Some(m) => write!(f, "; did you mean `{m}`?"),
            None => Ok(()),
        }
    }
}

/// Every field a rule of `rules` reads (see [`crate::Rule::fields_read`])
/// that `decoders` cannot set, in rule order, each with its line in
/// `sources` (the rule files).
pub fn unset_fields(
    rules: &RuleSet,
    decoders: &Decoders,
    sources: &[SourceFile],
) -> Vec<UnsetField> {
    let mut out = Vec::new();
    for rule in rules.rules() {
        let from = out.len();
        let text = sources
            .iter()
            .find(|s| s.name == rule.file)
            .map(|s| s.text.as_str());
        for field in rule.fields_read() {
            if decoders.sets_field(field) {
                continue;
            }
            let meant = decoders
                .field_names()
                .filter(|name| soc_config::misspells(field, name))
                .min_by_key(|name| name.len().abs_diff(field.len()))
                .map(str::to_owned);
            out.push(UnsetField {
                file: rule.file.clone(),
                line: text.map_or(rule.line, |t| line_in_rule(t, rule.line, field)),
                rule: rule.id.clone(),
                field: field.to_owned(),
                meant,
            });
        }
        // A rule's fields in the order of its lines.
        out[from..].sort_by_key(|u| u.line);
    }
    out
}

/// The line of the first mention of `field` in the rule that starts at
/// line `start` of `text` (1-based), before the next item of its list;
/// `start` when there is none.
fn line_in_rule(text: &str, start: usize, field: &str) -> usize {
    let mut lines = text.lines().enumerate().skip(start.saturating_sub(1));
    let Some((_, first)) = lines.next() else {
        return start;
    };
    if mentions(first, field) {
        return start;
    }
    let indent = first.len() - first.trim_start().len();
    for (i, line) in lines {
        let own = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if !body.is_empty() && (own < indent || (own == indent && body.starts_with('-'))) {
            break;
        }
        if mentions(line, field) {
            return i + 1;
        }
    }
    start
}

/// Whether `line` holds `field` as a whole name (not inside a longer one).
fn mentions(line: &str, field: &str) -> bool {
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-');
    line.match_indices(field).any(|(i, _)| {
        !line[..i].chars().next_back().is_some_and(part_of_name)
            && !line[i + field.len()..]
                .chars()
                .next()
                .is_some_and(part_of_name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> (RuleSet, Vec<SourceFile>) {
        let files = vec![SourceFile::new("r.yml", text)];
        let set = RuleSet::from_sources_with_lists(&files, &crate::builtin_list_sources())
            .unwrap_or_else(|e| panic!("{e}"));
        (set, files)
    }

    #[test]
    fn the_shipped_rules_read_only_fields_the_shipped_decoders_set() {
        let files = crate::builtin_rule_sources();
        let set = RuleSet::from_sources_with_lists(&files, &crate::builtin_list_sources())
            .unwrap_or_else(|e| panic!("{e}"));
        let unset = unset_fields(&set, &Decoders::builtin(), &files);
        assert!(unset.is_empty(), "{unset:#?}");
    }

    #[test]
    fn a_field_no_decoder_sets_is_reported_on_its_line_with_the_field_meant() {
        let text = r#"rules:
  - id: one
    title: One
    severity: low
    summary: "from {sorce.ip}, {threshold.count} times"
    match:
      all:
        - { field: event.module, equals: sshd }
        - { field: source.ip, cidr: 10.0.0.0/8 }
        - not: { field: my.own_field, exists: true }
    threshold: { count: 3, window: 1m, group_by: [user.nmae] }
  - id: two
    title: Two
    severity: low
    summary: s
    match: { field: sorce.ip, equals: x }
"#;
        let (set, files) = rules(text);
        let unset = unset_fields(&set, &Decoders::builtin(), &files);
        let got: Vec<(usize, &str, &str, Option<&str>)> = unset
            .iter()
            .map(|u| {
                (
                    u.line,
                    u.rule.as_str(),
                    u.field.as_str(),
                    u.meant.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (5, "one", "sorce.ip", Some("source.ip")),
                (10, "one", "my.own_field", None),
                (11, "one", "user.nmae", Some("user.name")),
                (16, "two", "sorce.ip", Some("source.ip")),
            ],
            "{unset:#?}"
        );
        assert_eq!(
            unset[0].to_string(),
            "r.yml:5: rule `one` reads `sorce.ip`, which no loaded decoder sets: \
             no event can hold it; did you mean `source.ip`?"
        );
    }
}
