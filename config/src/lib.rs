//! Reading a TOML configuration file so that every mistake in it is
//! reported at once, each with its line.
//!
//! serde stops at the first key it refuses, so a file with five mistakes
//! would take five rounds of "fix, run again". [`read`] parses the file
//! once, then deserializes it; when a key is refused, the mistake is
//! kept, the key is left out and the file is read again, until it reads
//! or nothing more can be left out. What was left out is never reported a
//! second time: a required key that was refused is not reported again as
//! missing. A table that cannot be read without the key it lost (or that
//! misses a required key) is itself left out, so that the tables after it
//! are still checked; the file then has no value, only its mistakes.
//!
//! [`Document::leave_out`] does the same for the checks that come after
//! serde: a value they refuse is left out, and the file read and checked
//! again with that key's default.
//!
//! A syntax error is different: the rest of the file cannot be trusted,
//! so only syntax errors are reported (all of them the parser recovers
//! from).

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeString, DeTable, DeValue, ValueDeserializer};

mod log_filter;
pub use log_filter::{log_filter, log_filter_from_env};

/// One mistake of a file: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// 1-based line and column; 1:1 when the parser gave no place.
    pub line: usize,
    pub column: usize,
    /// The dotted key it is about (`shipping.flush_interval`,
    /// `sources[1].include`), when the mistake is in a key or its value.
    pub key: Option<String>,
    pub message: String,
}

impl Mistake {
    /// What is wrong, after its key when it has one
    /// (`` `shipping.flush_intervl`: unknown field ... ``).
    pub fn described(&self) -> String {
        match &self.key {
            Some(key) => format!("`{key}`: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The errors of a file as one error: the only one, or `several` of them
/// in the order of `line`.
pub fn one_or_several<E>(
    mut errors: Vec<E>,
    line: impl Fn(&E) -> usize,
    several: impl FnOnce(Vec<E>) -> E,
) -> E {
    errors.sort_by_key(line);
    match errors.pop() {
        Some(only) if errors.is_empty() => only,
        last => {
            errors.extend(last);
            several(errors)
        }
    }
}

/// Each of `errors`, one a line.
pub fn one_a_line<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The key that the unknown key of serde's message (``unknown field
/// `windw`, expected one of `count`, `window`, ...``) was likely meant to
/// be: one the message lists, that the unknown key misspells (see
/// [`misspells`]), and that `lacks` says its table or mapping lacks.
pub fn meant_key(message: &str, lacks: impl Fn(&str) -> bool) -> Option<&str> {
    meant_choice(message, "unknown field `", lacks)
}

/// serde's message for a value that is not one of its choices (``unknown
/// variant `ipp`, expected one of `string`, `ip`, ...``), with the choice
/// the value likely misspells (see [`misspells`]) named at its end:
/// ``...; did you mean `ip`?``. Other messages come back as they are.
pub fn with_meant_variant(message: &str) -> String {
    match meant_choice(message, "unknown variant `", |_| true) {
        Some(choice) => format!("{message}; did you mean `{choice}`?"),
        None => message.to_owned(),
    }
}

/// A duration as a configuration file writes it (`"30s"`, `"500ms"`,
/// `"24h"`), kept as text for the key's own check, which names the key and
/// the values it takes. A bare number is refused with a message that asks
/// for the unit (`3` reads ``"`3` needs a unit: write "3s" (or ms, m, h,
/// d)"``), where serde would say `expected a string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(String);

impl std::ops::Deref for DurationText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DurationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        fn unitless<E: serde::de::Error>(n: impl std::fmt::Display) -> E {
            E::custom(format_args!(
                "`{n}` needs a unit: write \"{n}s\" (or ms, m, h, d)"
            ))
        }
        impl serde::de::Visitor<'_> for Text {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(unitless(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationText, E> {
                Err(unitless(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationText, E> {
                Err(unitless(v))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// serde's message in the words of the file rather than of Rust: a type
/// it expected is named as people write it (`expected f64` reads `expected
/// a number`, `expected u32` `expected a whole number, 0 or more`,
/// `expected struct RuleConfig` `expected a mapping`, `expected a
/// sequence` `expected a list`), and a misspelt choice is named (see
/// [`with_meant_variant`]).
pub fn plain_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected ") {
        let (before, after) = rest.split_at(at + "expected ".len());
        out.push_str(before);
        let word_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let (word, tail) = after.split_at(word_end);
        let plain = match word {
            "f32" | "f64" => Some("a number"),
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => Some("a whole number, 0 or more"),
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Some("a whole number"),
            _ => None,
        };
        rest = match plain {
            Some(plain) => {
                out.push_str(plain);
                tail
            }
            // `struct RuleConfig`: the struct's name means nothing in the file.
            None if word == "struct" => {
                out.push_str("a mapping");
                let name = tail.trim_start();
                let end = name
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(name.len());
                &name[end..]
            }
            None if after.starts_with("a sequence") => {
                out.push_str("a list");
                &after["a sequence".len()..]
            }
            None => after,
        };
    }
    out.push_str(rest);
    with_meant_variant(&out)
}

/// In serde's message ``<opening>written`, expected one of `a`, `b` ...``
/// (or ``expected `a` or `b` ``), the first choice listed that `written`
/// misspells and `wanted` takes.
fn meant_choice<'m>(
    message: &'m str,
    opening: &str,
    wanted: impl Fn(&str) -> bool,
) -> Option<&'m str> {
    let (written, rest) = message.strip_prefix(opening)?.split_once('`')?;
    let (_, expected) = rest.split_once("expected")?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|choice| misspells(written, choice) && wanted(choice))
}

/// Whether the key `written` (`windw`) misspells `meant` (`window`): at
/// most one edit away (two for names longer than four letters), a letter
/// swapped for its neighbour counting as one edit.
pub fn misspells(written: &str, meant: &str) -> bool {
    if written == meant {
        return false;
    }
    let (w, m): (Vec<char>, Vec<char>) = (written.chars().collect(), meant.chars().collect());
    let most = if m.len() > 4 { 2 } else { 1 };
    if w.len().abs_diff(m.len()) > most {
        return false;
    }
    // Optimal string alignment distance, three rows at a time.
    let mut before: Vec<usize> = Vec::new();
    let mut last: Vec<usize> = (0..=m.len()).collect();
    for i in 1..=w.len() {
        let mut row = vec![i; m.len() + 1];
        for j in 1..=m.len() {
            let cost = usize::from(w[i - 1] != m[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && w[i - 1] == m[j - 2] && w[i - 2] == m[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[m.len()] <= most
}

/// What [`read`] found.
#[derive(Debug)]
pub struct Read<T> {
    /// The file as a `T`, when it could be read: without the keys that
    /// were refused (each is one of `mistakes`). `None` after a syntax
    /// error, or when a table had to be left out whole.
    pub value: Option<T>,
    /// Every mistake found, in the order of the file.
    pub mistakes: Vec<Mistake>,
}

/// How often a file is read again at most: each round leaves out one key
/// or table, so a file with more mistakes than this reports the first ones.
const MAX_ROUNDS: usize = 256;

/// Reads `text` as a `T`, collecting every mistake (see the module
/// documentation).
pub fn read<T: DeserializeOwned>(text: &str) -> Read<T> {
    match Document::parse(text) {
        Ok(mut doc) => doc.read(),
        Err(mistakes) => Read {
            value: None,
            mistakes,
        },
    }
}

/// A parsed file, from which keys can be left out: by [`Document::read`]
/// when serde refuses them, and by [`Document::leave_out`] when a check
/// after serde does.
pub struct Document<'i> {
    text: &'i str,
    span: Range<usize>,
    table: DeTable<'i>,
    /// Where the keys left out were (as written), so that serde's "missing
    /// field" for one of them is not reported again.
    left_out: Vec<Vec<Step>>,
    /// Array elements left out (the array's path and the element's index,
    /// both as written), so that later mistakes are named by the index the
    /// element has in the file.
    gone: Vec<(Vec<Step>, usize)>,
    /// False once a table was left out whole.
    whole: bool,
}

impl<'i> Document<'i> {
    /// Parses `text`; its syntax errors, all those the parser recovers
    /// from, when it has any.
    pub fn parse(text: &'i str) -> Result<Document<'i>, Vec<Mistake>> {
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let mut mistakes: Vec<Mistake> = syntax
                .iter()
                .map(|e| mistake(text, e.span(), None, e.message()))
                .collect();
            sort(&mut mistakes);
            return Err(mistakes);
        }
        Ok(Document {
            text,
            span: root.span(),
            table: root.into_inner(),
            left_out: Vec::new(),
            gone: Vec::new(),
            whole: true,
        })
    }

    /// Reads the file as a `T`, leaving out each key serde refuses (see the
    /// module documentation). Keys left out stay out for the next read.
    pub fn read<T: DeserializeOwned>(&mut self) -> Read<T> {
        let mut mistakes = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let value = Spanned::new(self.span.clone(), DeValue::Table(self.table.clone()));
            let e = match T::deserialize(ValueDeserializer::from(value)) {
                Ok(v) => {
                    sort(&mut mistakes);
                    return Read {
                        value: self.whole.then_some(v),
                        mistakes,
                    };
                }
                Err(e) => e,
            };
            // An empty span is the root table's.
            let at = e.span().filter(|s| !s.is_empty());
            let path = match &at {
                Some(s) => locate(&self.table, s.start),
                None => Some(Vec::new()),
            };
            let missing = missing_field(e.message());
            let Some(mut path) = path else {
                mistakes.push(mistake(self.text, at, None, e.message()));
                break;
            };
            let written = as_written(&path, &self.gone);
            match missing {
                // The table at `path` lacks a key: unless that key was left
                // out, a mistake; either way the table goes.
                Some(name) => {
                    let mut key = written.clone();
                    key.push(Step::Key(name.to_owned()));
                    if !self.left_out.contains(&key) {
                        mistakes.push(mistake(self.text, at, Some(dotted(&key)), e.message()));
                    }
                    self.whole = false;
                }
                // A refused key or value: the key goes, or, a misspelling
                // of a key its table lacks, is read as that key.
                None => {
                    let mut m = mistake(self.text, at, Some(dotted(&written)), e.message());
                    if let Some(meant) = self.read_as_meant(&path, e.message()) {
                        m.message.push_str(&format!("; read as `{meant}`"));
                        mistakes.push(m);
                        continue;
                    }
                    mistakes.push(m);
                    while matches!(path.last(), Some(Step::Index(_))) {
                        path.pop();
                    }
                }
            }
            if !self.remove(&path) {
                break;
            }
        }
        sort(&mut mistakes);
        Read {
            value: None,
            mistakes,
        }
    }

    /// Leaves out the key `dotted` (`server.listen`: tables and keys, no
    /// array elements), so that the next [`Document::read`] gives its
    /// default. The key's line, or `None` when the file does not have it.
    pub fn leave_out(&mut self, dotted: &str) -> Option<usize> {
        let path: Vec<Step> = dotted.split('.').map(|k| Step::Key(k.to_owned())).collect();
        let mut table = &self.table;
        let mut line = None;
        for (i, step) in path.iter().enumerate() {
            let Step::Key(name) = step else { return None };
            let (k, v) = table.iter().find(|(k, _)| k.get_ref() == name)?;
            if i + 1 == path.len() {
                line = Some(line_col(self.text, k.span().start).0);
            } else if let DeValue::Table(t) = v.get_ref() {
                table = t;
            } else {
                return None;
            }
        }
        self.remove(&path).then_some(line).flatten()
    }

    /// When the unknown key at `path` (serde's `message`) misspells a key
    /// its table lacks (see [`meant_key`]), renames it to that key, keeping
    /// its place in the file; the key it is read as.
    fn read_as_meant(&mut self, path: &[Step], message: &str) -> Option<String> {
        let (Step::Key(name), parent) = path.split_last()? else {
            return None;
        };
        let table = table_at(&mut self.table, parent)?;
        let meant = meant_key(message, |k| key_named(table, k).is_none())?;
        let key = key_named(table, name)?;
        let value = table.remove(&key)?;
        let renamed = Spanned::new(key.span(), std::borrow::Cow::Owned(meant.to_owned()));
        table.insert(renamed, value);
        Some(meant.to_owned())
    }

    /// Removes what `path` (as the table is now) leads to, and remembers
    /// it; false when it leads nowhere.
    fn remove(&mut self, path: &[Step]) -> bool {
        if path.is_empty() || !remove(&mut self.table, path) {
            return false;
        }
        let written = as_written(path, &self.gone);
        if let Some((Step::Index(i), array)) = written.split_last() {
            self.gone.push((array.to_vec(), *i));
        }
        self.left_out.push(written);
        true
    }
}

/// One step of the way from the file's root to a key or array element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The deepest key or array element at byte `at`: its key's text, its
/// value, or (a table written as `[name]` or `[[name]]`) its header.
fn locate(table: &DeTable<'_>, at: usize) -> Option<Vec<Step>> {
    for (k, v) in table.iter() {
        let here = Step::Key(k.get_ref().to_string());
        if k.span().contains(&at) {
            return Some(vec![here]);
        }
        if let Some(mut deeper) = locate_value(v, at) {
            deeper.insert(0, here);
            return Some(deeper);
        }
    }
    None
}

/// Like [`locate`], inside one value: the steps below it, empty for the
/// value itself.
fn locate_value(v: &Spanned<DeValue<'_>>, at: usize) -> Option<Vec<Step>> {
    match v.get_ref() {
        DeValue::Table(t) => {
            if let Some(p) = locate(t, at) {
                return Some(p);
            }
        }
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                if let Some(mut deeper) = locate_value(e, at) {
                    deeper.insert(0, Step::Index(i));
                    return Some(deeper);
                }
            }
        }
        _ => {}
    }
    v.span().contains(&at).then(Vec::new)
}

/// `path` (in the table as it is after leaving elements out) with each
/// array index as written in the file.
fn as_written(path: &[Step], gone: &[(Vec<Step>, usize)]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(path.len());
    for step in path {
        let step = match step {
            Step::Key(k) => Step::Key(k.clone()),
            Step::Index(i) => {
                let mut before: Vec<usize> = gone
                    .iter()
                    .filter(|(array, _)| *array == out)
                    .map(|(_, j)| *j)
                    .collect();
                before.sort_unstable();
                let mut j = *i;
                for g in before {
                    if g <= j {
                        j += 1;
                    }
                }
                Step::Index(j)
            }
        };
        out.push(step);
    }
    out
}

/// The key of `table` written as `name`.
fn key_named<'i>(table: &DeTable<'i>, name: &str) -> Option<Spanned<DeString<'i>>> {
    table
        .iter()
        .map(|(k, _)| k)
        .find(|k| k.get_ref() == name)
        .cloned()
}

/// The value `path` (not empty) leads to.
fn value_at<'t, 'i>(
    table: &'t mut DeTable<'i>,
    path: &[Step],
) -> Option<&'t mut Spanned<DeValue<'i>>> {
    let (Step::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let v = table.get_mut(&key_named(table, first)?)?;
    value_in(v, rest)
}

/// What `path` leads to from `v` (`v` itself when empty).
fn value_in<'t, 'i>(
    v: &'t mut Spanned<DeValue<'i>>,
    path: &[Step],
) -> Option<&'t mut Spanned<DeValue<'i>>> {
    let Some((step, after)) = path.split_first() else {
        return Some(v);
    };
    match (step, v.get_mut()) {
        (_, DeValue::Table(t)) => value_at(t, path),
        (Step::Index(i), DeValue::Array(a)) => value_in(a.get_mut(*i)?, after),
        _ => None,
    }
}

/// The table `path` leads to (the file's own when empty).
fn table_at<'t, 'i>(table: &'t mut DeTable<'i>, path: &[Step]) -> Option<&'t mut DeTable<'i>> {
    if path.is_empty() {
        return Some(table);
    }
    match value_at(table, path)?.get_mut() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

/// Leaves out what `path` leads to; false when it leads nowhere.
fn remove(table: &mut DeTable<'_>, path: &[Step]) -> bool {
    match path.split_last() {
        Some((Step::Key(name), parent)) => table_at(table, parent)
            .is_some_and(|t| key_named(t, name).is_some_and(|key| t.remove(&key).is_some())),
        Some((Step::Index(i), parent)) if !parent.is_empty() => {
            match value_at(table, parent).map(|v| v.get_mut()) {
                Some(DeValue::Array(a)) if *i < a.len() => {
                    let mut kept = DeArray::new();
                    for (j, e) in a.iter().enumerate() {
                        if j != *i {
                            kept.push(e.clone());
                        }
                    }
                    *a = kept;
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// `agent.name`, `sources[1].include`.
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// The key of serde's "missing field `name`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

fn mistake(text: &str, span: Option<Range<usize>>, key: Option<String>, message: &str) -> Mistake {
    let (line, column) = span.as_ref().map_or((1, 1), |s| line_col(text, s.start));
    Mistake {
        line,
        column,
        key,
        message: plain_message(message.trim_end()),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn sort(mistakes: &mut [Mistake]) {
    mistakes.sort_by_key(|m| (m.line, m.column));
}

#[cfg(test)]
mod tests;
