//! Rule conditions: the `match:` tree of a rule and its evaluation.
//!
//! In YAML a condition is a mapping that is either a combination
//!
//! ```yaml
//! all: [ <condition>, ... ]     # every one holds
//! any: [ <condition>, ... ]     # at least one holds
//! not: <condition>              # does not hold
//! ```
//!
//! or a test of one field with one or more operators (all must hold):
//!
//! ```yaml
//! field: destination.port
//! in: [22, 3389]
//! ```
//!
//! Operators: `equals`, `in`, `contains`, `starts_with`, `ends_with` (a string
//! or a list, any may match), `regex`, `cidr` (a network or a list), `gt`,
//! `gte`, `lt`, `lte`, `exists`; `case_insensitive: true` applies to the text
//! operators. Values compare as numbers when both sides are numbers, else as
//! text. A test on an absent field is false (except `exists: false`), so
//! `not` of it is true. When the field holds a list, the test holds when it
//! holds for any element.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::decode::config::one_line;
use crate::yaml::OneOrMany;

/// What a field test without an operator is told.
pub(crate) const NO_OPERATOR: &str = "has no operator";

/// A condition as written in a rule file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionConfig {
    /// Every sub-condition holds.
    pub all: Option<Vec<ConditionConfig>>,
    /// At least one sub-condition holds.
    pub any: Option<Vec<ConditionConfig>>,
    /// The sub-condition does not hold.
    pub not: Option<Box<ConditionConfig>>,
    /// The field the operators test.
    pub field: Option<String>,
    /// Equal to this value.
    pub equals: Option<Value>,
    /// Equal to one of these values.
    #[serde(rename = "in")]
    pub in_list: Option<Vec<Value>>,
    /// Contains one of these strings.
    pub contains: Option<OneOrMany>,
    /// Starts with one of these strings.
    pub starts_with: Option<OneOrMany>,
    /// Ends with one of these strings.
    pub ends_with: Option<OneOrMany>,
    /// Matches this regular expression (unanchored).
    pub regex: Option<String>,
    /// An IP address inside one of these networks (`10.0.0.0/8`, `fc00::/7`).
    pub cidr: Option<OneOrMany>,
    /// Greater than (numbers).
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
    /// The field is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
    /// Text operators ignore case.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Equal to an entry of a named list (or inside one of its networks).
    #[serde(rename = "in_list")]
    pub named_list: Option<String>,
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Field { field: String, tests: Vec<Test> },
}

/// A value to compare with: its text (lower-cased when case-insensitive)
/// and its number, when it is one.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    text: String,
    num: Option<f64>,
}

impl Scalar {
    /// Its text (lower-cased when the test ignores case).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Its value when it is a number: then it equals numbers of that value.
    pub(crate) fn num(&self) -> Option<f64> {
        self.num
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Equals(Scalar, bool),
    In(Vec<Scalar>, bool),
    Contains(Needles, bool),
    StartsWith(Vec<String>, bool),
    EndsWith(Vec<String>, bool),
    Regex(Regex),
    Cidr(crate::lists::Networks),
    Compare(Cmp, f64),
    Exists(bool),
    InList(std::sync::Arc<crate::lists::List>),
}

impl Test {
    /// Whether it compares text ignoring case.
    pub(crate) fn ignores_case(&self) -> bool {
        matches!(
            self,
            Test::Equals(_, true)
                | Test::In(_, true)
                | Test::Contains(_, true)
                | Test::StartsWith(_, true)
                | Test::EndsWith(_, true)
        )
    }

    /// Text that is the same for two tests exactly when they give the same
    /// answers on every value (a list is told by its identity: a reloaded
    /// list is another one), so that the engine can test once per event
    /// what many rules test.
    pub(crate) fn memo_key(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Test::InList(list) => write!(out, "in_list@{:p};", std::sync::Arc::as_ptr(list)),
            t => write!(out, "{t:?};"),
        };
    }
}

/// The texts of a `contains:` test. Past a few, they are searched for
/// together, in one pass over the value (Aho-Corasick), instead of one
/// search per text.
#[derive(Clone)]
pub(crate) struct Needles {
    texts: Vec<String>,
    /// A searcher per text, built once: `str::contains` builds one at every
    /// call, which costs more than the search of a short value
    /// (`cargo bench -p soc-rules --bench conditions`, `contains`).
    one_by_one: Vec<memchr::memmem::Finder<'static>>,
    together: Option<aho_corasick::AhoCorasick>,
}

impl Needles {
    /// From this many texts on, one pass finds any of them faster than a
    /// search for each (`cargo bench -p soc-rules --bench conditions`).
    const TOGETHER_FROM: usize = 4;

    pub(crate) fn new(texts: Vec<String>) -> Needles {
        // A set too large for the automaton's limits is searched for one
        // text at a time, as a short one is.
        let together = (texts.len() >= Needles::TOGETHER_FROM)
            .then(|| aho_corasick::AhoCorasick::new(&texts).ok())
            .flatten();
        let one_by_one = match together {
            Some(_) => Vec::new(),
            None => texts
                .iter()
                .map(|t| memchr::memmem::Finder::new(t).into_owned())
                .collect(),
        };
        Needles {
            texts,
            one_by_one,
            together,
        }
    }

    /// Whether `hay` contains one of the texts.
    pub(crate) fn found_in(&self, hay: &str) -> bool {
        match &self.together {
            Some(all) => all.is_match(hay),
            None => self
                .one_by_one
                .iter()
                .any(|n| n.find(hay.as_bytes()).is_some()),
        }
    }
}

/// The texts alone: what tells two tests apart (see [`Test::memo_key`]).
impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.texts.fmt(f)
    }
}

/// One problem in a condition: (path inside the rule, message, text to find
/// its line by).
pub(crate) type CondProblem = (String, String, String);

impl Condition {
    /// Text that is the same for two conditions written alike (their tests
    /// as [`Test::memo_key`] tells them apart), so that the engine can tell
    /// sequences that start with the same step.
    pub(crate) fn memo(&self, out: &mut String) {
        let list = |name: &str, cs: &[Condition], out: &mut String| {
            out.push_str(name);
            out.push('(');
            cs.iter().for_each(|c| c.memo(out));
            out.push(')');
        };
        match self {
            Condition::All(cs) => list("all", cs, out),
            Condition::Any(cs) => list("any", cs, out),
            Condition::Not(c) => list("not", std::slice::from_ref(c), out),
            Condition::Field { field, tests } => {
                out.push_str(&format!("{field:?}:"));
                tests.iter().for_each(|t| t.memo_key(out));
            }
        }
    }

    /// Adds the fields it tests to `out`.
    pub(crate) fn fields<'c>(&'c self, out: &mut std::collections::BTreeSet<&'c str>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.fields(out)),
            Condition::Not(c) => c.fields(out),
            Condition::Field { field, .. } => {
                out.insert(field);
            }
        }
    }

    /// Compiles `cfg`; `path` names it in errors (e.g. `match.all[1]`).
    pub(crate) fn compile(
        cfg: &ConditionConfig,
        path: &str,
        lists: &crate::lists::Lists,
        problems: &mut Vec<CondProblem>,
    ) -> Option<Condition> {
        let combos = cfg.all.is_some() as u8 + cfg.any.is_some() as u8 + cfg.not.is_some() as u8;
        let has_ops = cfg.equals.is_some()
            || cfg.in_list.is_some()
            || cfg.contains.is_some()
            || cfg.starts_with.is_some()
            || cfg.ends_with.is_some()
            || cfg.regex.is_some()
            || cfg.cidr.is_some()
            || cfg.gt.is_some()
            || cfg.gte.is_some()
            || cfg.lt.is_some()
            || cfg.lte.is_some()
            || cfg.exists.is_some()
            || cfg.named_list.is_some();
        if combos > 1 || (combos == 1 && (cfg.field.is_some() || has_ops)) {
            problems.push((
                path.into(),
                "use one of `all`, `any`, `not` alone, or `field` with operators; nest them to combine".into(),
                String::new(),
            ));
            return None;
        }
        let list = |items: &Vec<ConditionConfig>, key: &str, problems: &mut Vec<CondProblem>| {
            if items.is_empty() {
                problems.push((
                    format!("{path}.{key}"),
                    "needs at least one condition".into(),
                    String::new(),
                ));
            }
            let out: Vec<Condition> = items
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    Condition::compile(c, &format!("{path}.{key}[{i}]"), lists, problems)
                })
                .collect();
            (out.len() == items.len()).then_some(out)
        };
        if let Some(items) = &cfg.all {
            return list(items, "all", problems).map(Condition::All);
        }
        if let Some(items) = &cfg.any {
            return list(items, "any", problems).map(Condition::Any);
        }
        if let Some(inner) = &cfg.not {
            return Condition::compile(inner, &format!("{path}.not"), lists, problems)
                .map(|c| Condition::Not(Box::new(c)));
        }
        let Some(field) = &cfg.field else {
            problems.push((
                path.into(),
                "a condition needs `all`, `any`, `not` or `field`".into(),
                String::new(),
            ));
            return None;
        };
        if !has_ops {
            problems.push((
                format!("{path}.field"),
                format!("field `{field}` {NO_OPERATOR} (equals, in, contains, starts_with, ends_with, regex, cidr, gt, gte, lt, lte, exists, in_list)"),
                field.clone(),
            ));
            return None;
        }
        let ci = cfg.case_insensitive;
        let before = problems.len();
        let mut tests = Vec::new();
        if let Some(v) = &cfg.equals {
            match scalar(v, ci) {
                Some(s) => tests.push(Test::Equals(s, ci)),
                None => problems.push((
                    format!("{path}.equals"),
                    "must be a string, number or boolean".into(),
                    String::new(),
                )),
            }
        }
        if let Some(vs) = &cfg.in_list {
            let scalars: Vec<Scalar> = vs.iter().filter_map(|v| scalar(v, ci)).collect();
            if scalars.len() != vs.len() || vs.is_empty() {
                problems.push((
                    format!("{path}.in"),
                    "must be a non-empty list of strings, numbers or booleans".into(),
                    String::new(),
                ));
            } else {
                tests.push(Test::In(scalars, ci));
            }
        }
        let texts = |v: &OneOrMany| -> Vec<String> {
            v.0.iter()
                .map(|s| if ci { s.to_lowercase() } else { s.clone() })
                .collect()
        };
        if let Some(v) = &cfg.contains {
            tests.push(Test::Contains(Needles::new(texts(v)), ci));
        }
        if let Some(v) = &cfg.starts_with {
            tests.push(Test::StartsWith(texts(v), ci));
        }
        if let Some(v) = &cfg.ends_with {
            tests.push(Test::EndsWith(texts(v), ci));
        }
        if let Some(p) = &cfg.regex {
            let pattern = if ci { format!("(?i){p}") } else { p.clone() };
            match Regex::new(&pattern) {
                Ok(re) => tests.push(Test::Regex(re)),
                Err(e) => problems.push((
                    format!("{path}.regex"),
                    format!("invalid regex: {}", one_line(&e.to_string())),
                    p.clone(),
                )),
            }
        }
        if let Some(nets) = &cfg.cidr {
            let mut parsed = Vec::new();
            for n in &nets.0 {
                match crate::lists::parse_net(n) {
                    Some(net) => parsed.push(net),
                    None => problems.push((
                        format!("{path}.cidr"),
                        format!("`{n}` is not a network like 10.0.0.0/8 or fc00::/7"),
                        n.clone(),
                    )),
                }
            }
            tests.push(Test::Cidr(crate::lists::Networks::new(parsed)));
        }
        for (op, v) in [
            (Cmp::Gt, cfg.gt),
            (Cmp::Gte, cfg.gte),
            (Cmp::Lt, cfg.lt),
            (Cmp::Lte, cfg.lte),
        ] {
            if let Some(v) = v {
                tests.push(Test::Compare(op, v));
            }
        }
        if let Some(e) = cfg.exists {
            tests.push(Test::Exists(e));
        }
        if let Some(name) = &cfg.named_list {
            match lists.get(name) {
                Some(list) => tests.push(Test::InList(list)),
                None => problems.push((
                    format!("{path}.in_list"),
                    format!(
                        "no list named `{name}` is loaded (known: [{}])",
                        lists.names().join(", ")
                    ),
                    name.clone(),
                )),
            }
        }
        (problems.len() == before).then(|| Condition::Field {
            field: field.clone(),
            tests,
        })
    }

    /// Whether the condition holds for `fields`.
    pub(crate) fn eval(&self, fields: &crate::Fields) -> bool {
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.eval(fields)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(fields)),
            Condition::Not(c) => !c.eval(fields),
            Condition::Field { field, tests } => {
                let value = fields.get(field);
                tests.iter().all(|t| match (t, value) {
                    (Test::Exists(want), v) => v.is_some() == *want,
                    (_, None) => false,
                    (t, Some(v)) => test_value(t, v),
                })
            }
        }
    }
}

fn scalar(v: &Value, ci: bool) -> Option<Scalar> {
    let (text, num) = match v {
        Value::String(s) => (s.clone(), s.trim().parse::<f64>().ok()),
        Value::Number(n) => (n.to_string(), n.as_f64()),
        Value::Bool(b) => (b.to_string(), None),
        _ => return None,
    };
    Some(Scalar {
        text: if ci { text.to_lowercase() } else { text },
        num,
    })
}

/// One test against one present value; lists match when any element does.
pub(crate) fn test_value(t: &Test, v: &Value) -> bool {
    if let Value::Array(items) = v {
        return items.iter().any(|i| test_value(t, i));
    }
    if let Value::Number(n) = v
        && let Some(answer) = test_number(t, n)
    {
        return answer;
    }
    let text: std::borrow::Cow<'_, str> = match v {
        Value::String(s) => s.as_str().into(),
        Value::Number(n) => n.to_string().into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        _ => return false,
    };
    let num = || match v {
        Value::Number(n) => n.as_f64(),
        _ => text.trim().parse::<f64>().ok(),
    };
    test_text(t, &text, num, None)
}

/// The answer of [`test_text`] for a number, when the test reads it only as
/// a number: then it is not written out as text first (an allocation and a
/// float formatting per test). `None` for the tests that read its text.
fn test_number(t: &Test, n: &serde_json::Number) -> Option<bool> {
    let b = n.as_f64()?;
    match t {
        Test::Equals(s, _) => Some(s.num? == b),
        Test::In(list, _) => list
            .iter()
            .map(|s| s.num.map(|a| a == b))
            .try_fold(false, |any, hit| Some(any || hit?)),
        Test::Compare(..) | Test::Exists(_) => Some(test_text(t, "", || Some(b), None)),
        _ => None,
    }
}

/// One test against a string value `text` (`lower`: the same lower-cased,
/// when the caller keeps it; `num`: the value as a number).
pub(crate) fn test_text(
    t: &Test,
    text: &str,
    num: impl Fn() -> Option<f64>,
    lower: Option<&str>,
) -> bool {
    let folded = |ci: bool| -> std::borrow::Cow<'_, str> {
        match (ci, lower) {
            (false, _) => text.into(),
            (true, Some(lower)) => lower.into(),
            (true, None) => text.to_lowercase().into(),
        }
    };
    // The value is only parsed as a number when the scalar is one.
    let eq = |s: &Scalar, ci: bool| match s.num.map(|a| (a, num())) {
        Some((a, Some(b))) => a == b,
        _ => folded(ci) == s.text.as_str(),
    };
    match t {
        Test::Equals(s, ci) => eq(s, *ci),
        Test::In(list, ci) => {
            // Fold and parse the value once, not once per list entry.
            let hay = folded(*ci);
            let mut parsed = None;
            list.iter().any(|s| match s.num {
                Some(a) => match *parsed.get_or_insert_with(&num) {
                    Some(b) => a == b,
                    None => hay == s.text.as_str(),
                },
                None => hay == s.text.as_str(),
            })
        }
        Test::Contains(needles, ci) => needles.found_in(&folded(*ci)),
        Test::StartsWith(needles, ci) => {
            let hay = folded(*ci);
            needles.iter().any(|n| hay.starts_with(n.as_str()))
        }
        Test::EndsWith(needles, ci) => {
            let hay = folded(*ci);
            needles.iter().any(|n| hay.ends_with(n.as_str()))
        }
        Test::Regex(re) => re.is_match(text),
        Test::Cidr(nets) => crate::lists::parse_ip(text).is_some_and(|ip| nets.contains(ip)),
        Test::Compare(op, limit) => num().is_some_and(|n| match op {
            Cmp::Gt => n > *limit,
            Cmp::Gte => n >= *limit,
            Cmp::Lt => n < *limit,
            Cmp::Lte => n <= *limit,
        }),
        Test::Exists(want) => *want,
        Test::InList(list) => list.contains(text),
    }
}

/// A condition compiled from YAML, for tests; panics on any problem.
#[cfg(test)]
pub(crate) fn compile_for_test(yaml: &str) -> Condition {
    let cfg: ConditionConfig =
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let mut problems = Vec::new();
    let lists = crate::lists::Lists::default();
    match Condition::compile(&cfg, "match", &lists, &mut problems) {
        Some(c) if problems.is_empty() => c,
        _ => panic!("{yaml}: {problems:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fields;

    /// Searched for together or one at a time, the texts are found in the
    /// same values: random sets of short texts over a small alphabet (so
    /// they overlap, nest and repeat), an empty text, multi-byte letters.
    #[test]
    fn texts_searched_together_are_found_where_each_is() {
        let alphabet = ["a", "b", "ab", "é", " ", ""];
        let mut next = crate::decode::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        let text = |max: u64, next: &mut dyn FnMut() -> u64| -> String {
            (0..next() % max)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        };
        for _ in 0..2_000 {
            let n = 1 + (next() % 9) as usize;
            let texts: Vec<String> = (0..n).map(|_| text(4, &mut next)).collect();
            let needles = Needles::new(texts.clone());
            assert_eq!(needles.together.is_some(), n >= Needles::TOGETHER_FROM);
            for _ in 0..10 {
                let hay = text(12, &mut next);
                let want = texts.iter().any(|t| hay.contains(t.as_str()));
                assert_eq!(needles.found_in(&hay), want, "{texts:?} in {hay:?}");
            }
        }
    }

    fn cond(yaml: &str) -> Result<Condition, Vec<CondProblem>> {
        let cfg: ConditionConfig = serde_yaml_ng::from_str(yaml)
            .map_err(|e| vec![(String::new(), e.to_string(), String::new())])?;
        let mut problems = Vec::new();
        match Condition::compile(
            &cfg,
            "match",
            &crate::lists::Lists::default(),
            &mut problems,
        ) {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// (condition, fields, expected) table.
    #[test]
    fn operator_table() {
        let ev = fields(&[
            ("source.ip", Value::from("203.0.113.9")),
            ("source.ip6", Value::from("fd00::1")),
            ("destination.port", Value::from(3389)),
            ("port_text", Value::from("22")),
            (
                "malware.name",
                Value::from("Eicar-Test-Signature.UNOFFICIAL"),
            ),
            ("flags", serde_json::json!(["DF", "SYN"])),
            ("ok", Value::from(true)),
        ]);
        let table: &[(&str, bool)] = &[
            ("{field: destination.port, equals: 3389}", true),
            ("{field: destination.port, equals: '3389'}", true),
            ("{field: port_text, equals: 22}", true),
            ("{field: destination.port, in: [22, 3389]}", true),
            ("{field: destination.port, in: [22, 23]}", false),
            ("{field: malware.name, contains: eicar}", false),
            (
                "{field: malware.name, contains: eicar, case_insensitive: true}",
                true,
            ),
            ("{field: malware.name, starts_with: [Win., Eicar]}", true),
            ("{field: malware.name, ends_with: .UNOFFICIAL}", true),
            (
                "{field: malware.name, equals: EICAR-TEST-SIGNATURE.unofficial, case_insensitive: true}",
                true,
            ),
            (
                "{field: malware.name, regex: '^Eicar-.*\\.UNOFFICIAL$'}",
                true,
            ),
            (
                "{field: source.ip, cidr: [10.0.0.0/8, 203.0.113.0/24]}",
                true,
            ),
            ("{field: source.ip, cidr: 192.168.0.0/16}", false),
            ("{field: source.ip6, cidr: fc00::/7}", true),
            ("{field: malware.name, cidr: 0.0.0.0/0}", false),
            ("{field: destination.port, gt: 1024, lte: 3389}", true),
            ("{field: destination.port, lt: 1024}", false),
            ("{field: destination.port, gte: 3389.0}", true),
            ("{field: flags, equals: SYN}", true),
            ("{field: flags, equals: ACK}", false),
            ("{field: ok, equals: true}", true),
            ("{field: nope, exists: false}", true),
            ("{field: nope, exists: true}", false),
            ("{field: nope, equals: x}", false),
            ("{not: {field: nope, equals: x}}", true),
            (
                "{all: [{field: ok, exists: true}, {field: destination.port, equals: 3389}]}",
                true,
            ),
            (
                "{all: [{field: ok, exists: true}, {field: destination.port, equals: 22}]}",
                false,
            ),
            (
                "{any: [{field: nope, exists: true}, {field: destination.port, equals: 3389}]}",
                true,
            ),
            (
                "{any: [{field: nope, exists: true}, {field: destination.port, equals: 22}]}",
                false,
            ),
        ];
        for (yaml, want) in table {
            let c = cond(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
            assert_eq!(c.eval(&ev), *want, "{yaml}");
        }
    }

    /// A number is tested without being written out only where the answer
    /// is the one its text gives.
    #[test]
    fn numbers_tested_as_numbers_answer_as_their_text_does() {
        let tests = [
            "equals: 22",
            "equals: '22'",
            "equals: 22.0",
            "equals: '-0'",
            "equals: abc",
            "equals: '1e3'",
            "in: [22, 3389]",
            "in: [22, '80']",
            "in: ['22.0', x]",
            "in: [x, y]",
            "gt: 21.5",
            "lte: -1",
            "exists: true",
            "contains: '2'",
            "starts_with: '-'",
            "regex: '^[0-9]+$'",
            "equals: 22, case_insensitive: true",
        ];
        let values: Vec<serde_json::Number> = [
            "22", "22.0", "3389", "80", "0", "-0.0", "-1", "1000", "1e3", "21.5",
        ]
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
        let mut fast = 0;
        for yaml in tests {
            let Ok(Condition::Field { tests, .. }) = cond(&format!("{{field: n, {yaml}}}")) else {
                panic!("{yaml} does not compile to one field test");
            };
            for t in &tests {
                for n in &values {
                    let by_text = test_text(t, &n.to_string(), || n.as_f64(), None);
                    if let Some(answer) = test_number(t, n) {
                        fast += 1;
                        assert_eq!(answer, by_text, "{yaml} on {n}");
                    }
                    assert_eq!(
                        test_value(t, &Value::Number(n.clone())),
                        by_text,
                        "{yaml} on {n}"
                    );
                }
            }
        }
        assert!(
            fast >= 8 * values.len(),
            "the number path answered {fast} times"
        );
    }

    #[test]
    fn compile_errors_name_their_path() {
        let problems = cond("{all: [{field: a, regex: '('}, {field: b, cidr: [10.0.0.0/33]}, {field: c}, {any: []}]}")
            .err()
            .unwrap_or_default();
        let paths: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "match.all[0].regex",
                "match.all[1].cidr",
                "match.all[2].field",
                "match.all[3].any"
            ]
        );
        assert!(cond("{all: [], field: x, equals: 1}").is_err());
        assert!(cond("{field: x, in: []}").is_err());
        assert!(cond("{field: x, equals: [1]}").is_err());
        assert!(cond("{}").is_err());
    }
}
