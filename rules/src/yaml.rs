//! Reading decoder and rule files: one list per file, one error per broken item.
//!
//! serde stops at the first error of a document. To report every broken rule of
//! a file at once, the file is first parsed as plain YAML (syntax errors stop
//! here, with their position), then the items of its top-level list are
//! deserialized one by one from that parse, so an error in item 3 does not
//! hide an error in item 7. The items are also cut out of the text by
//! indentation: each keeps its lines (to point later errors at a line), and
//! an item that fails is parsed again from its own text, whose error's line
//! serde_yaml_ng reports and is shifted back to the line in the whole file.
//!
//! When the list is not written in block style (e.g. `rules: [ ... ]`) the cut
//! is not possible; the whole file is then deserialized at once and only its
//! first error is reported.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};

use crate::SourceFile;
use crate::error::LoadError;

/// One item of a file's top-level list, with where it sits in the file.
#[derive(Debug)]
pub(crate) struct Located<T> {
    /// The deserialized item.
    pub value: T,
    /// 1-based line of the item's `-`.
    pub start_line: usize,
    /// The item's own lines, for [`Located::line_of`].
    pub lines: Vec<String>,
    /// Paths of the keys left out of the item (misspelt, or of the wrong
    /// kind), each reported already; a misspelt key read as the key it
    /// misspells is not left out.
    pub left_out: Vec<String>,
}

impl<T> Located<T> {
    /// The first line of this item that contains `needle`, else the item's first
    /// line. Used to point semantic errors (bad regex, unknown parent) at the
    /// line that holds the offending value.
    pub fn line_of(&self, needle: &str) -> usize {
        if needle.is_empty() {
            return self.start_line;
        }
        self.lines
            .iter()
            .position(|l| l.contains(needle))
            .map_or(self.start_line, |i| self.start_line + i)
    }

    /// The line of a test case under `tests:`: where its `name:` is
    /// written, else the first line from `tests:` on that holds its input
    /// line (which may also appear above, in a `match:`), else the line of
    /// `tests:`.
    pub fn line_of_test(&self, name: Option<&str>, input: Option<&str>) -> usize {
        let from = self.line_of_key("tests");
        let named = name.map(|n| {
            [
                format!("name: {n}"),
                format!("name: \"{n}\""),
                format!("name: '{n}'"),
            ]
        });
        let holds = |l: &str| match (&named, input) {
            (Some(named), _) => {
                let t = l
                    .trim_start()
                    .trim_start_matches("- ")
                    .trim_start_matches("{ ");
                named.iter().any(|p| t.starts_with(p.as_str()))
            }
            (None, Some(i)) => !i.is_empty() && l.contains(i),
            (None, None) => false,
        };
        self.lines
            .iter()
            .enumerate()
            .skip(from - self.start_line)
            .find(|(_, l)| holds(l))
            .map_or(from, |(i, _)| self.start_line + i)
    }

    /// The line of `key:` inside this item, else the item's first line.
    pub fn line_of_key(&self, key: &str) -> usize {
        let pats = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ];
        self.lines
            .iter()
            .position(|l| {
                let t = l.trim_start().trim_start_matches("- ");
                pats.iter().any(|p| t.starts_with(p.as_str()))
            })
            .map_or(self.start_line, |i| self.start_line + i)
    }
}

/// Where each name (a rule's id, a decoder's name) was first written in a
/// set of files, whether or not its item compiled: an item repeating the
/// name of one with a mistake is reported with that mistake, not after it
/// is fixed.
#[derive(Debug, Default)]
pub(crate) struct FirstWritten<'f>(HashMap<String, (&'f str, usize)>);

impl<'f> FirstWritten<'f> {
    /// Where `name` was first written (file and line), when `item` of
    /// `file` repeats it; otherwise `name` is taken here, by `item`.
    pub fn repeated<T>(
        &mut self,
        name: &str,
        file: &'f str,
        item: &Located<T>,
    ) -> Option<(&'f str, usize)> {
        match self.0.get(name) {
            Some(&first) => Some(first),
            None => {
                self.0.insert(name.to_string(), (file, item.start_line));
                None
            }
        }
    }

    /// Whether an item of these files has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Deserializes every item of the top-level list `key` of `file`.
///
/// Items that fail are reported in `errors` and left out of the result,
/// except an item whose only fault is keys of its own that `T` does not
/// know: those are reported, and the item is returned without them, so
/// that the caller's checks report its other mistakes too.
pub(crate) fn load_items<T: DeserializeOwned>(
    file: &SourceFile,
    key: &str,
    errors: &mut Vec<LoadError>,
) -> Vec<Located<T>> {
    let name = file.name.as_str();
    let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(yaml_error(name, 0, &e));
            return Vec::new();
        }
    };
    let mut parsed = match doc {
        serde_yaml_ng::Value::Null => return Vec::new(),
        serde_yaml_ng::Value::Mapping(map) => {
            let mut list = None;
            for (k, v) in map {
                match k.as_str() {
                    Some(k) if k == key => {
                        list = Some(match v {
                            serde_yaml_ng::Value::Sequence(s) => s,
                            serde_yaml_ng::Value::Null => Vec::new(),
                            _ => {
                                errors.push(LoadError::new(
                                    name,
                                    top_key_line(&file.text, key),
                                    Some(key),
                                    "expected a list",
                                ));
                                return Vec::new();
                            }
                        })
                    }
                    other => {
                        let shown = other.map_or_else(|| format!("{k:?}"), str::to_string);
                        errors.push(LoadError::new(
                            name,
                            top_key_line(&file.text, &shown),
                            Some(&shown),
                            format!("unknown top-level key, expected `{key}`"),
                        ));
                    }
                }
            }
            match list {
                Some(items) => items,
                None => {
                    errors.push(LoadError::new(
                        name,
                        Some(1),
                        None,
                        format!("missing the top-level `{key}:` list"),
                    ));
                    return Vec::new();
                }
            }
        }
        _ => {
            errors.push(LoadError::new(
                name,
                Some(1),
                None,
                format!("expected a mapping with a top-level `{key}:` list"),
            ));
            return Vec::new();
        }
    };

    let all_lines: Vec<&str> = file.text.lines().collect();
    let spans = split_list(&all_lines, key);
    if spans.len() != parsed.len() {
        return load_whole(file, key, errors);
    }
    let mut out = Vec::with_capacity(spans.len());
    for ((start, end), item) in spans.into_iter().zip(parsed.iter_mut()) {
        let lines: Vec<String> = all_lines[start..end]
            .iter()
            .map(|l| l.to_string())
            .collect();
        // The item as the whole file's parse read it: no second parse of
        // its text, which took as long as the first. Only an item that
        // fails is parsed again from its own text, for the error's line.
        let whole = match serde_yaml_ng::from_value::<T>(std::mem::take(item)) {
            Ok(value) => {
                out.push(Located {
                    value,
                    start_line: start + 1,
                    lines,
                    left_out: Vec::new(),
                });
                continue;
            }
            Err(e) => e,
        };
        let text = lines.join("\n");
        match serde_yaml_ng::from_str::<Vec<T>>(&text) {
            Ok(mut items) if items.len() == 1 => {
                if let Some(value) = items.pop() {
                    out.push(Located {
                        value,
                        start_line: start + 1,
                        lines,
                        left_out: Vec::new(),
                    });
                }
            }
            Ok(_) => errors.push(LoadError::new(
                name,
                Some(start + 1),
                None,
                "could not isolate this list item",
            )),
            // Alone, the item lacks the anchors of the others: the error
            // that counts is the whole file's, put on its field's line.
            Err(e) if e.to_string().starts_with("unknown anchor") => {
                let mut err = yaml_error(name, 0, &whole);
                let at = Located {
                    value: (),
                    start_line: start + 1,
                    lines,
                    left_out: Vec::new(),
                };
                let key = err.field.as_deref().and_then(|f| f.rsplit('.').next());
                err.line = Some(key.map_or(at.start_line, |k| at.line_of_key(k)));
                errors.push(err);
            }
            Err(e) => {
                let err = yaml_error(name, start, &e);
                let typo = refused_key(&err).map(str::to_string);
                errors.push(err);
                let at = Located {
                    value: (),
                    start_line: start + 1,
                    lines,
                    left_out: Vec::new(),
                };
                if let Some((value, left_out)) =
                    typo.and_then(|k| without_refused(&text, k, name, &at, errors))
                {
                    out.push(Located {
                        value,
                        start_line: at.start_line,
                        lines: at.lines,
                        left_out,
                    });
                }
            }
        }
    }
    out
}

/// The key `err` refuses: unknown (`sumary`, `threshold.windw`,
/// `match.all[1].equlas`) or of the wrong kind (`tags: {x: 1}`); not a key
/// that is missing.
fn refused_key(err: &LoadError) -> Option<&str> {
    err.field
        .as_deref()
        .filter(|_| !err.message.starts_with("missing field `"))
}

/// The item of `text` (a one-item list) read without the key `refused`
/// (already reported), and without each further key serde refuses, each
/// reported in `errors` with its path, on the line of its key. A refused
/// key (a typo, `sumary:` or `threshold: {windw: 5m}`, or a value of the
/// wrong kind) fails the whole item in serde: read without it, the item is
/// checked like the others, so that its other mistakes are reported
/// together with the first, not after it is fixed. An unknown key that
/// misspells a key its mapping expects and lacks (`titel:`, `windw:`) is
/// read as that key instead, its error saying so: its value is checked,
/// and the item is not reported for lacking the key as well. The item, and
/// the paths of the keys left out (as written, and as read when a key read
/// as another is refused too); `None` when the item cannot be read without
/// what was left out, or lacks a required key.
fn without_refused<T: DeserializeOwned>(
    text: &str,
    refused: String,
    file: &str,
    at: &Located<()>,
    errors: &mut Vec<LoadError>,
) -> Option<(T, Vec<String>)> {
    let mut items: Vec<serde_yaml_ng::Value> = serde_yaml_ng::from_str(text).ok()?;
    let mut item = items.pop()?;
    let mut left_out: Vec<String> = Vec::new();
    // (path as read, path as written) of the keys read as another.
    let mut renamed: Vec<(String, String)> = Vec::new();
    let mut refused = refused;
    // Each round leaves out or renames one key: bounded by the item's size.
    for _ in 0..256 {
        let value = take_at(&mut item, &refused)?;
        let written = as_written(&refused, &renamed);
        if written != refused {
            left_out.push(refused.clone());
        }
        let reported = errors
            .iter_mut()
            .rev()
            .find(|e| e.field.as_deref() == Some(written.as_str()));
        match reported.and_then(|e| meant(e, &refused, &mut item).map(|m| (e, m))) {
            Some((e, meant)) => {
                let name = meant.rsplit('.').next().unwrap_or(&meant);
                e.message.push_str(&format!("; read as `{name}`"));
                put_at(&mut item, &meant, value)?;
                renamed.push((meant, written));
            }
            None => left_out.push(written),
        }
        let e = match serde_yaml_ng::from_value::<T>(item.clone()) {
            Ok(value) => return Some((value, left_out)),
            Err(e) => e,
        };
        // A value read alone names no path: the same item written out and
        // read again as text does.
        let text = serde_yaml_ng::to_string(&[&item]).ok()?;
        let e = match serde_yaml_ng::from_str::<Vec<T>>(&text) {
            Ok(_) => e,
            Err(named) => named,
        };
        let mut err = yaml_error(file, 0, &e);
        // The mapping that lacks a key, or the key refused (`None`: the
        // item itself).
        let field = err.field.clone();
        let missing = err
            .message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
            .map(|name| match &field {
                Some(f) => format!("{f}.{name}"),
                None => name.to_string(),
            });
        if let Some(f) = &mut err.field {
            *f = as_written(f, &renamed);
        }
        err.line = Some(
            err.field
                .as_deref()
                .map_or(at.start_line, |f| line_of_path(at, f)),
        );
        match (missing, field) {
            (Some(key), _) => {
                // Left out above: reported already, as what it was.
                if !left_out.contains(&key) {
                    errors.push(err);
                }
                return None;
            }
            (None, Some(field)) => {
                errors.push(err);
                refused = field;
            }
            (None, None) => return None,
        }
    }
    None
}

/// The path to read the value of the unknown key at `path` at, when `e`,
/// its error, lists a key it misspells that its mapping in `item` lacks
/// (``unknown field `titel`, expected one of `id`, `title`, ...``).
fn meant(e: &LoadError, path: &str, item: &mut serde_yaml_ng::Value) -> Option<String> {
    let (parent, Last::Key(_)) = split_last(path)? else {
        return None;
    };
    let mapping = match walk(item, parent)? {
        serde_yaml_ng::Value::Mapping(m) => m,
        _ => return None,
    };
    let meant = soc_config::meant_key(&e.message, |k| !mapping.contains_key(k))?;
    Some(if parent.is_empty() {
        meant.to_string()
    } else {
        format!("{parent}.{meant}")
    })
}

/// What follows `key` in `path` (`""`, `.window`, `[1].field`), when the
/// path is `key` or goes on below it.
pub(crate) fn below<'p>(path: &'p str, key: &str) -> Option<&'p str> {
    path.strip_prefix(key)
        .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `path` with the keys read under another name (`renamed`: as read, as
/// written) written as they are in the file.
fn as_written(path: &str, renamed: &[(String, String)]) -> String {
    for (read, written) in renamed {
        if let Some(rest) = below(path, read) {
            return format!("{written}{rest}");
        }
    }
    path.to_string()
}

/// What `path` (`fields.user.name.frm`, `match.all[1]`) leads to from
/// `value`. serde writes a key that holds a dot (`user.name`) as it is, so
/// at each mapping the longest key the path goes on with is taken.
fn walk<'v>(
    value: &'v mut serde_yaml_ng::Value,
    path: &str,
) -> Option<&'v mut serde_yaml_ng::Value> {
    if path.is_empty() {
        return Some(value);
    }
    match value {
        serde_yaml_ng::Value::Mapping(m) => {
            let key = m
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| below(path, k).is_some())
                .max_by_key(|k| k.len())?
                .to_string();
            let rest = &path[key.len()..];
            walk(
                m.get_mut(key.as_str())?,
                rest.strip_prefix('.').unwrap_or(rest),
            )
        }
        serde_yaml_ng::Value::Sequence(s) => {
            let (i, rest) = path.strip_prefix('[')?.split_once(']')?;
            let item = s.get_mut(i.parse::<usize>().ok()?)?;
            walk(item, rest.strip_prefix('.').unwrap_or(rest))
        }
        _ => None,
    }
}

/// The last step of a path: a key (which holds no dot: the keys serde
/// refuses or misses are those of a struct), or an index into a list.
enum Last<'p> {
    Key(&'p str),
    At(usize),
}

/// `path` as the path of the mapping or list that holds its last step, and
/// that step.
fn split_last(path: &str) -> Option<(&str, Last<'_>)> {
    match path.strip_suffix(']') {
        Some(inner) => {
            let (parent, i) = inner.rsplit_once('[')?;
            Some((parent, Last::At(i.parse().ok()?)))
        }
        None => Some(match path.rsplit_once('.') {
            Some((parent, key)) => (parent, Last::Key(key)),
            None => ("", Last::Key(path)),
        }),
    }
}

/// Takes what `path` (`threshold.windw`, `match.all[1].equlas`) leads to
/// out of `value`; `None` when it leads nowhere.
fn take_at(value: &mut serde_yaml_ng::Value, path: &str) -> Option<serde_yaml_ng::Value> {
    let (parent, last) = split_last(path)?;
    match (last, walk(value, parent)?) {
        (Last::Key(key), serde_yaml_ng::Value::Mapping(m)) => m.remove(key),
        (Last::At(i), serde_yaml_ng::Value::Sequence(s)) if i < s.len() => Some(s.remove(i)),
        _ => None,
    }
}

/// Puts `new` at `path` (a key of a mapping) in `value`; `None` when the
/// path leads to no mapping.
fn put_at(value: &mut serde_yaml_ng::Value, path: &str, new: serde_yaml_ng::Value) -> Option<()> {
    let (parent, Last::Key(key)) = split_last(path)? else {
        return None;
    };
    match walk(value, parent)? {
        serde_yaml_ng::Value::Mapping(m) => {
            m.insert(serde_yaml_ng::Value::String(key.to_string()), new);
            Some(())
        }
        _ => None,
    }
}

/// The line of the last key of `path` in the item `at`: each key of the
/// path looked for (as `key:`) from the line of the one before; the item's
/// first line when it is not found. A key may hold dots (`source.ip` in
/// `fields.source.ip.convert`): of the keys the path's next parts could
/// make, the longest written is taken, as [`walk`] takes it.
fn line_of_path(at: &Located<()>, path: &str) -> usize {
    let parts: Vec<&str> = path
        .split('.')
        .map(|p| p.split('[').next().unwrap_or(p))
        .collect();
    let written_at = |key: &str, from: usize| {
        at.lines.iter().skip(from).position(|l| {
            l.match_indices(key).any(|(i, _)| {
                let before = l[..i].chars().next_back();
                let after = l[i + key.len()..].trim_start_matches(['"', '\'']);
                before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '"' | '\''))
                    && after.starts_with(':')
            })
        })
    };
    let mut from = 0;
    let mut i = 0;
    while i < parts.len() {
        let found = (i + 1..=parts.len()).rev().find_map(|j| {
            let key = parts[i..j].join(".");
            if key.is_empty() {
                return None;
            }
            written_at(&key, from).map(|at| (j, at))
        });
        match found {
            Some((j, at)) => {
                from += at;
                i = j;
            }
            None => i += 1,
        }
    }
    at.start_line + from
}

/// Fallback for lists not written in block style: all or nothing.
fn load_whole<T: DeserializeOwned>(
    file: &SourceFile,
    key: &str,
    errors: &mut Vec<LoadError>,
) -> Vec<Located<T>> {
    match serde_yaml_ng::from_str::<BTreeMap<String, Vec<T>>>(&file.text) {
        Ok(mut map) => map
            .remove(key)
            .unwrap_or_default()
            .into_iter()
            .map(|value| Located {
                value,
                start_line: 1,
                lines: Vec::new(),
                left_out: Vec::new(),
            })
            .collect(),
        Err(e) => {
            errors.push(yaml_error(&file.name, 0, &e));
            Vec::new()
        }
    }
}

/// The 1-based line of a top-level `key:`.
fn top_key_line(text: &str, key: &str) -> Option<usize> {
    let pat = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&pat))
        .map(|i| i + 1)
}

/// Finds the items of the block list under the top-level `key:` as
/// `(first_line, end_line)` 0-based half-open line ranges.
fn split_list(lines: &[&str], key: &str) -> Vec<(usize, usize)> {
    let pat = format!("{key}:");
    let Some(key_line) = lines.iter().position(|l| {
        l.strip_prefix(&pat)
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    }) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    let mut indent: Option<usize> = None;
    let mut current: Option<usize> = None;
    let mut last_content = key_line;
    for (i, line) in lines.iter().enumerate().skip(key_line + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = line.len() - trimmed.len();
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if is_item => indent = Some(ind),
            None => return Vec::new(),
            Some(want) if ind < want || (ind == want && !is_item) => {
                // The list ended (another top-level key follows).
                if let Some(s) = current.take() {
                    spans.push((s, last_content + 1));
                }
                return spans;
            }
            Some(_) => {}
        }
        if is_item && Some(ind) == indent {
            if let Some(s) = current.take() {
                spans.push((s, last_content + 1));
            }
            current = Some(i);
        }
        last_content = i;
    }
    if let Some(s) = current {
        spans.push((s, last_content + 1));
    }
    spans
}

/// Orders errors by file (in the order given) and line, so a report reads
/// top to bottom.
pub(crate) fn sort_errors(files: &[SourceFile], errors: &mut [LoadError]) {
    errors.sort_by_key(|e| (files.iter().position(|f| f.name == e.file), e.line));
}

/// Turns a serde_yaml_ng error into a [`LoadError`], shifting its line by
/// `line_offset` and splitting its `path: message at line L column C` text.
fn yaml_error(file: &str, line_offset: usize, e: &serde_yaml_ng::Error) -> LoadError {
    let line = e.location().map(|l| l.line() + line_offset);
    let mut text = e.to_string();
    if let Some(pos) = text.rfind(" at line ") {
        text.truncate(pos);
    }
    // Item-local paths start with `[0]`, the index inside the cut-out list.
    let text = text.strip_prefix('.').unwrap_or(&text);
    let text = text
        .strip_prefix("[0]")
        .map_or(text, |t| t.strip_prefix('.').unwrap_or(t));
    let text = text.strip_prefix(": ").unwrap_or(text);
    let (mut field, message) = match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') => (
            Some(path.to_string()).filter(|p| !p.is_empty()),
            msg.to_string(),
        ),
        _ => (None, text.to_string()),
    };
    let message = soc_config::plain_message(&message);
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        field = Some(match field {
            Some(p) => format!("{p}.{unknown}"),
            None => unknown.to_string(),
        });
    }
    LoadError {
        file: file.to_string(),
        line,
        field,
        message,
        repeats_a_name: false,
    }
}

/// A value written either as one string or as a list of strings
/// (`contains: FOUND` or `contains: [FOUND, ERROR]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> serde::Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<StringLike>()? {
                    out.push(s.0);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar read as text: `22` and `"22"` both give `"22"`.
struct StringLike(String);

impl<'de> serde::Deserialize<'de> for StringLike {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StringLike;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringLike, E> {
                Ok(StringLike(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringLike, E> {
                Ok(StringLike(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringLike, E> {
                Ok(StringLike(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        id: String,
        #[serde(default)]
        tags: OneOrMany,
    }

    fn src(text: &str) -> SourceFile {
        SourceFile {
            name: "t.yml".into(),
            text: text.into(),
        }
    }

    /// (line, field) of each error.
    fn places(errors: &[LoadError]) -> Vec<(Option<usize>, Option<&str>)> {
        errors
            .iter()
            .map(|e| (e.line, e.field.as_deref()))
            .collect()
    }

    #[test]
    fn every_broken_item_is_reported_with_its_line() {
        let text = "# comment\nrules:\n  - id: a\n    tags: [x, 1]\n\n  - id: b\n    bogus: 1\n  - id: c\n  - idd: d\n  - id: e\n    bogus: 1\n    tags: {x: 1}\n  - name: f\n    tags: [y]\n  - id: g\n    tags: {y: 1}\n    bogus: 2\n";
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> = load_items(&src(text), "rules", &mut errors);
        let ids: Vec<&str> = items.iter().map(|i| i.value.id.as_str()).collect();
        // `b` is reported for its unknown key and kept without it, so that
        // the caller checks the rest of it too; `e` the same, without its
        // unknown key and its wrong `tags` (which has a default). `idd`
        // misspells the missing `id`: `d` is read with it as its id.
        // `name` misspells no key: `f` lacks an id. `g`'s wrong `tags`,
        // the first mistake, does not hide `bogus`.
        assert_eq!(ids, ["a", "b", "c", "d", "e", "g"]);
        assert_eq!(items[0].value.tags.0, ["x", "1"]);
        assert!(items[3].left_out.is_empty());
        assert_eq!(items[4].left_out, ["bogus", "tags"]);
        let lines: Vec<usize> = items.iter().map(|i| i.start_line).collect();
        assert_eq!(lines, [3, 6, 8, 9, 10, 15]);
        let got = places(&errors);
        assert_eq!(
            got,
            [
                (Some(7), Some("bogus")),
                (Some(9), Some("idd")),
                (Some(11), Some("bogus")),
                (Some(12), Some("tags")),
                (Some(13), Some("name")),
                (Some(13), None),
                (Some(16), Some("tags")),
                (Some(17), Some("bogus")),
            ],
            "{errors:?}"
        );
        assert!(errors[1].message.ends_with("; read as `id`"), "{errors:?}");
        assert!(!errors[4].message.contains("read as"), "{errors:?}");
        assert!(
            errors[5].message.contains("missing field `id`"),
            "{errors:?}"
        );
    }

    /// A key read as the one it misspells is checked there: a value of the
    /// wrong kind is reported under the key as written, on its line.
    #[test]
    fn a_misspelt_key_is_checked_as_the_key_it_misspells() {
        let text = "rules:\n  - id: a\n    tgas: {x: 1}\n  - tagz: [x]\n    id: b\n";
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> = load_items(&src(text), "rules", &mut errors);
        let got = places(&errors);
        assert_eq!(
            got,
            [
                (Some(3), Some("tgas")),
                (Some(3), Some("tgas")),
                (Some(4), Some("tagz"))
            ],
            "{errors:?}"
        );
        assert!(errors[1].message.starts_with("invalid type"), "{errors:?}");
        // `a` without the refused value (as written and as read); `b` with
        // its tags read from `tagz`.
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].left_out, ["tags", "tgas"]);
        assert_eq!(items[1].value.tags.0, ["x"]);
    }

    /// A plain scalar that YAML reads as a number is still text where the
    /// item wants text: the whole file's parse holds it as a number, and
    /// the item is read again from its own text, as before.
    #[test]
    fn numbers_written_where_text_is_wanted_stay_text() {
        let text = "rules:\n  - id: 1.50\n    tags: 22\n  - id: 0x1F\n  - id: plain\n";
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> = load_items(&src(text), "rules", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let ids: Vec<&str> = items.iter().map(|i| i.value.id.as_str()).collect();
        assert_eq!(ids, ["1.50", "0x1F", "plain"]);
        assert_eq!(items[0].value.tags.0, ["22"]);
        let lines: Vec<usize> = items.iter().map(|i| i.start_line).collect();
        assert_eq!(lines, [2, 4, 5]);
    }

    /// An item may name what another item of the file anchors: the items
    /// are read from the whole file's parse, where the alias resolves.
    #[test]
    fn aliases_reach_anchors_in_other_items() {
        let text =
            "rules:\n  - id: a\n    tags: &common [x, \"y\"]\n  - id: b\n    tags: *common\n";
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> = load_items(&src(text), "rules", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].value.id, "b");
        assert_eq!(items[1].value.tags.0, ["x", "y"]);
        assert_eq!(items[1].start_line, 4);
        // A broken item beside them is still reported alone, on its line.
        let text = format!("{text}  - id: c\n    tagz: *common\n");
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> = load_items(&src(&text), "rules", &mut errors);
        assert_eq!(items.len(), 2);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(7));
        assert_eq!(errors[0].field.as_deref(), Some("tagz"));
        assert!(errors[0].message.starts_with("unknown field"), "{errors:?}");
    }

    #[test]
    fn flow_lists_fall_back_to_whole_file() {
        let mut errors = Vec::new();
        let items: Vec<Located<Item>> =
            load_items(&src("rules: [{id: a}, {id: b}]\n"), "rules", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn syntax_and_top_level_errors() {
        let mut errors = Vec::new();
        let _: Vec<Located<Item>> = load_items(&src("rules:\n  - id: [\n"), "rules", &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].line.is_some());
        let mut errors = Vec::new();
        let _: Vec<Located<Item>> = load_items(&src("rules: []\nextra: 1\n"), "rules", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(2));
        assert_eq!(errors[0].field.as_deref(), Some("extra"));
    }

    #[test]
    fn located_finds_lines() {
        let l = Located {
            value: (),
            start_line: 10,
            lines: vec!["  - id: x".into(), "    regex: '(['".into()],
            left_out: Vec::new(),
        };
        assert_eq!(l.line_of("(["), 11);
        assert_eq!(l.line_of("nothing"), 10);
        assert_eq!(l.line_of_key("regex"), 11);
        assert_eq!(l.line_of_key("id"), 10);
    }

    #[test]
    fn a_path_is_found_key_by_key_and_taken() {
        let l = Located {
            value: (),
            start_line: 20,
            lines: [
                "  - id: x",
                "    match:",
                "      all:",
                "        - { field: window, equals: 1 }",
                "        - { field: b, \"contians\": x }",
                "    threshold: { count: 3, window: 5m }",
            ]
            .map(String::from)
            .to_vec(),
            left_out: Vec::new(),
        };
        assert_eq!(line_of_path(&l, "match.all[1].contians"), 24);
        // `window` as a key, after `threshold`: not the value on line 23.
        assert_eq!(line_of_path(&l, "threshold.window"), 25);
        assert_eq!(line_of_path(&l, "nowhere"), 20);
        let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "match: { all: [ { field: a }, { field: b, contians: x } ] }\nthreshold: { windw: 5m }",
        )
        .expect("yaml");
        assert_eq!(
            take_at(&mut v, "match.all[1].contians"),
            Some(serde_yaml_ng::Value::String("x".into()))
        );
        assert!(take_at(&mut v, "threshold.windw").is_some());
        assert!(take_at(&mut v, "threshold.windw").is_none());
        assert!(take_at(&mut v, "match.all[5].field").is_none());
        assert!(take_at(&mut v, "match.all[x].field").is_none());
        assert_eq!(
            v,
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
                "match: { all: [ { field: a }, { field: b } ] }\nthreshold: {}"
            )
            .expect("yaml")
        );
    }
}
