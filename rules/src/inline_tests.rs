//! Running the test cases written inside decoder and rule files.
//!
//! Every decoder and rule carries examples of what it must (and must not)
//! do. They are the executable part of the documentation: `cargo test` runs
//! them for the shipped content, `socctl rules test` for an operator's.

use std::sync::Arc;

use serde_json::Value;

use crate::decode::Decoders;
use crate::engine::{Engine, EngineState};
use crate::error::TestFailure;
use crate::event::Input;
use crate::rule::RuleSet;

/// Runs every inline test of `decoders` and `rules`; rule tests decode their
/// lines with `decoders`. Returns the failures (empty when all pass).
pub fn run_inline_tests(decoders: &Decoders, rules: &RuleSet) -> Vec<TestFailure> {
    let mut failures = Vec::new();
    for d in &decoders.decoders {
        for (i, t) in d.tests.iter().enumerate() {
            let name = label("decoder", &d.name, i, t.name.as_deref());
            let fail = |message: String| TestFailure {
                file: d.file.clone(),
                line: t.at,
                name: name.clone(),
                message,
            };
            let input = Input {
                raw: t.line.as_bytes(),
                source_type: &t.source_type,
                agent: "",
                source: "",
                path: "",
                received_ms: t.received_ms,
            };
            let (event, chain) = decoders.decode_traced(&input, None);
            let took_part = chain.contains(&d.name.as_str());
            if took_part != t.matches {
                let verb = if t.matches {
                    "did not decode"
                } else {
                    "decoded"
                };
                failures.push(fail(format!(
                    "decoder `{}` {verb} the line (decoders that applied: [{}])",
                    d.name,
                    chain.join(", ")
                )));
            }
            for (field, want) in &t.expect {
                match event.fields.get(field) {
                    Some(got) if same(got, want) => {}
                    Some(got) => {
                        failures.push(fail(format!("field `{field}`: expected {want}, got {got}")))
                    }
                    None => failures.push(fail(format!(
                        "field `{field}`: expected {want}, but it is absent{}",
                        event
                            .get_str("decode.error")
                            .map(|e| format!(" (decode.error: {e})"))
                            .unwrap_or_default()
                    ))),
                }
            }
            for field in &t.absent {
                if let Some(got) = event.fields.get(field) {
                    failures.push(fail(format!("field `{field}` should be absent, got {got}")));
                }
            }
        }
    }

    let engine = Engine::new(Arc::new(rules.clone()));
    for rule in rules.rules() {
        // The rule's own count runs it alone and enabled, so disabled rules
        // stay testable.
        let alone = Engine::new(Arc::new(RuleSet::only(rule)));
        for (i, t) in rule.tests.iter().enumerate() {
            let name = label("rule", &rule.id, i, t.name.as_deref());
            let fail = |message: String| TestFailure {
                file: rule.file.clone(),
                line: t.at,
                name: name.clone(),
                message,
            };
            let mut state = EngineState::default();
            let mut own_state = EngineState::default();
            let mut own = 0usize;
            let mut fired: Vec<String> = Vec::new();
            for (n, line) in t.lines.iter().enumerate() {
                let input = Input {
                    raw: line.as_bytes(),
                    source_type: &t.source_type,
                    agent: "",
                    source: "",
                    path: "",
                    received_ms: t.received_ms,
                };
                let mut event = decoders.decode(&input);
                event.id = n as u64 + 1;
                own += alone.process(&mut own_state, &event).len();
                fired.extend(
                    engine
                        .process(&mut state, &event)
                        .into_iter()
                        .map(|d| d.rule_id.to_string()),
                );
            }
            own += alone.flush(&mut own_state).len();
            fired.extend(
                engine
                    .flush(&mut state)
                    .into_iter()
                    .map(|d| d.rule_id.to_string()),
            );
            if let Some(want) = t.alerts.filter(|w| *w != own) {
                failures.push(fail(format!(
                    "expected {want} alert(s) from `{}`, got {own}",
                    rule.id
                )));
            }
            if let Some(ids) = &t.rule_ids {
                for id in ids {
                    if !fired.contains(id) {
                        fired.sort();
                        fired.dedup();
                        failures.push(fail(format!(
                            "expected rule `{id}` to fire; fired: [{}]",
                            fired.join(", ")
                        )));
                    }
                }
            }
        }
    }
    failures
}

fn label(what: &str, id: &str, index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{what} {id} test {} ({n})", index + 1),
        None => format!("{what} {id} test {}", index + 1),
    }
}

/// Equal JSON values, with numbers compared by value (`8123` == `8123.0`).
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceFile;

    /// Inline tests must be able to fail: wrong values, wrong counts, a
    /// decoder that does not apply, a rule that does not fire.
    #[test]
    fn wrong_expectations_are_reported() {
        let decoders = Decoders::from_sources(&[SourceFile::new(
            "d.yml",
            r#"
decoders:
  - name: word
    parse: [{ regex: { pattern: '^(?P<w>[a-z]+)$' } }]
    fields: { w: { from: w } }
    set: { event.module: words }
    tests:
      - line: hello
        expect: { w: hello }
        absent: [x]
      - name: wrong value
        line: hello
        expect: { w: bye, missing: 1 }
        absent: [w]
      - name: does not apply
        line: "123"
"#,
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let rules = RuleSet::from_sources(&[SourceFile::new(
            "r.yml",
            r#"
rules:
  - id: r1
    title: R1
    severity: low
    match: { field: w, equals: hello }
    summary: s
    tests:
      - { line: hello, alerts: 1, rule_ids: [r1] }
      - { name: count, lines: [hello, hello], alerts: 1 }
      - { name: ids, line: bye, rule_ids: [r1] }
"#,
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let failures = run_inline_tests(&decoders, &rules);
        let text: Vec<String> = failures.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "d.yml:11: decoder word test 2 (wrong value): field `missing`: expected 1, but it is absent",
                "d.yml:11: decoder word test 2 (wrong value): field `w`: expected \"bye\", got \"hello\"",
                "d.yml:11: decoder word test 2 (wrong value): field `w` should be absent, got \"hello\"",
                "d.yml:15: decoder word test 3 (does not apply): decoder `word` did not decode the line (decoders that applied: [])",
                "r.yml:10: rule r1 test 2 (count): expected 1 alert(s) from `r1`, got 2",
                "r.yml:11: rule r1 test 3 (ids): expected rule `r1` to fire; fired: []",
            ]
        );
    }
}
