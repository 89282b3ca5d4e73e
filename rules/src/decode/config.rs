//! Decoder files: the YAML shape (serde structs) and its compilation.
//!
//! Loading is two-phase: the `*Config` structs mirror the file with
//! `deny_unknown_fields`; [`compile`] turns one into a [`Decoder`] that cannot
//! be invalid (regexes compiled, conversions checked, parents resolved later by
//! [`super::Decoders::from_sources`]).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::convert::{Convert, ConvertName};
use super::pairs::{NeedlePairs, Pairs};
use crate::yaml::{Located, OneOrMany, below};

/// One decoder as written in a file under `decoders:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecoderConfig {
    /// Unique name, used by `after:` and shown in `decoder.name`.
    pub name: String,
    /// What the decoder reads, for people.
    #[serde(default)]
    pub description: String,
    /// Decoders whose output (their `body`) this one reads; `line` is the raw
    /// line. Default: `[line]`.
    #[serde(default)]
    pub after: Option<OneOrMany>,
    /// Cheap checks that select the decoder before any parsing.
    #[serde(default)]
    pub when: WhenConfig,
    /// Parse steps, run in order. The first decides whether the decoder
    /// applies; later failures are decode errors.
    #[serde(default)]
    pub parse: Vec<StepConfig>,
    /// Output fields, each taken from a captured value.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldConfig>,
    /// Constant fields set when the decoder applies.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Inline test cases.
    #[serde(default)]
    pub tests: Vec<DecoderTestConfig>,
}

/// Preconditions; each present key must hold, a list means "any of".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenConfig {
    /// The syslog program (`process.name`) set by the parent. Lines without a
    /// program name (other envelopes, bare lines) pass.
    pub program: Option<OneOrMany>,
    /// The agent's source type hint. Decoders with this list are skipped when
    /// the agent named another source type; an empty hint lets them run.
    pub source_type: Option<OneOrMany>,
    /// The text starts with one of these.
    pub starts_with: Option<OneOrMany>,
    /// The text contains one of these.
    pub contains: Option<OneOrMany>,
    /// The text ends with one of these.
    pub ends_with: Option<OneOrMany>,
}

/// One parse step: exactly one of the keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepConfig {
    /// Read a syslog envelope.
    pub syslog: Option<SyslogConfig>,
    /// Match a regular expression with named groups.
    pub regex: Option<RegexConfig>,
    /// Split `KEY=value` pairs.
    pub kv: Option<KvConfig>,
    /// Split a CSV record into named columns.
    pub csv: Option<CsvConfig>,
    /// Split a W3C extended log line (space-separated, `-` empty) into named
    /// fields.
    pub w3c: Option<W3cConfig>,
    /// Read a CEF record (header and extension).
    pub cef: Option<FromConfig>,
    /// Read a LEEF 1.0/2.0 record.
    pub leef: Option<FromConfig>,
    /// Read a JSON object, flattened to dotted keys.
    pub json: Option<FromConfig>,
    /// Read a kernel LOG target record (iptables, nftables, ufw): captures
    /// `prefix` (the text before `IN=`) and `pairs` (from `IN=` on).
    pub netfilter: Option<FromConfig>,
}

/// `csv: {columns: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsvConfig {
    /// Capture to split instead of the decoder's input text.
    pub from: Option<String>,
    /// Column names in order; `_` or `""` skips a column. Columns past the
    /// list are ignored, missing trailing columns are simply not captured.
    pub columns: Vec<String>,
    /// The separator, one character; default `,`. `"\t"` for tab.
    pub separator: Option<String>,
}

/// `w3c: {fields: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct W3cConfig {
    /// Capture to split instead of the decoder's input text.
    pub from: Option<String>,
    /// The field list of the `#Fields:` header this decoder expects (the
    /// header arrives as earlier lines of the file, which a per-line decoder
    /// cannot see, so the decoder declares it).
    pub fields: Vec<String>,
}

/// A step whose only option is the capture it reads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FromConfig {
    /// Capture to read instead of the decoder's input text.
    pub from: Option<String>,
}

/// `syslog: {}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyslogConfig {
    /// Capture to read instead of the decoder's input text.
    pub from: Option<String>,
}

/// `regex: {pattern: ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexConfig {
    /// The pattern (Rust regex syntax); each named group `(?P<name>...)` becomes
    /// a capture. A list is tried in order; the first that matches gives the
    /// captures.
    pub pattern: OneOrMany,
    /// Capture to match instead of the decoder's input text.
    pub from: Option<String>,
    /// When true, no match is not an error (the step just adds nothing).
    #[serde(default)]
    pub optional: bool,
}

/// `kv: {}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KvConfig {
    /// Capture to split instead of the decoder's input text.
    pub from: Option<String>,
    /// Capture that receives the bare words (flags), space-separated.
    /// Default `flags`.
    pub flags: Option<String>,
    /// Between key and value; one character, default `=`.
    pub separator: Option<String>,
    /// Between pairs besides spaces; one character, e.g. `;`. Default: only
    /// spaces and tabs.
    pub delimiter: Option<String>,
}

/// How one output field is filled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldConfig {
    /// The capture to read; a list joins the captures with one space
    /// (e.g. `[date, time]`).
    pub from: OneOrMany,
    /// Captures tried in order when `from` is missing (one of its captures
    /// was not made), e.g. `from: [event_id, action]` with `fallback:
    /// [event_id]` for events that have no action.
    #[serde(default)]
    pub fallback: Option<OneOrMany>,
    /// What goes between the captures of a `from:` list; default one space
    /// (`""` glues a directory and a file name).
    pub join: Option<String>,
    /// Type conversion, applied after `map`.
    pub convert: Option<ConvertName>,
    /// Timestamp format for `convert: timestamp`; a list is tried in order
    /// (a source that writes the time in more than one way).
    pub format: Option<OneOrMany>,
    /// Replace known values (keys compared case-insensitively; a key ending
    /// in `*` matches every value that starts with the rest, exact keys
    /// first, then the longest prefix).
    pub map: Option<BTreeMap<String, String>>,
    /// Value when `map` has no entry; without it the value is kept.
    pub default: Option<String>,
    /// For `convert: timestamp` with a format without offset: the fixed UTC
    /// offset of the times (`+07:00`, `-0500`, `UTC`). Default UTC.
    pub timezone: Option<String>,
    /// For `convert: timestamp`: a capture holding the offset (`-0700`,
    /// `+07:00`, `UTC`/`GMT`/`Z`); wins over `timezone` when present.
    pub timezone_from: Option<String>,
}

/// One inline test of a decoder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecoderTestConfig {
    /// Optional label shown in failures.
    pub name: Option<String>,
    /// The raw input line.
    pub line: String,
    /// The agent's source type hint for this line.
    #[serde(default)]
    pub source_type: String,
    /// When the line was received (RFC 3339); default 2024-12-31T12:00:00Z.
    pub received: Option<String>,
    /// Fields that must have exactly these values.
    #[serde(default)]
    pub expect: BTreeMap<String, Value>,
    /// Fields that must not be present.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Whether this decoder must take part in decoding the line (default true);
    /// `false` writes a negative test.
    pub matches: Option<bool>,
}

/// Default reception time of test lines: 2024-12-31T12:00:00Z.
pub(crate) const TEST_RECEIVED_MS: i64 = 1_735_646_400_000;

/// A compiled decoder. Parents are resolved by the loader.
#[derive(Debug)]
pub(crate) struct Decoder {
    pub name: String,
    pub description: String,
    pub file: String,
    pub line: usize,
    pub after: Vec<String>,
    pub when: When,
    pub steps: Vec<Step>,
    pub fields: Vec<FieldMap>,
    /// Constant fields: name, id in [`super::Decoders`]'s name table, value.
    pub set: Vec<(String, u32, Value)>,
    pub tests: Vec<DecoderTest>,
    /// Every capture name this decoder reads (field sources, step sources,
    /// `body`), sorted: formats with open-ended keys read from owned text
    /// (JSON, CEF, LEEF) keep only these.
    pub wanted: Vec<String>,
}

impl Decoder {
    /// The decoder's own copy of `name` when it reads that capture.
    #[inline]
    pub(crate) fn wanted(&self, name: &str) -> Option<&str> {
        self.wanted
            .binary_search_by(|w| w.as_str().cmp(name))
            .ok()
            .map(|i| self.wanted[i].as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct When {
    pub program: Vec<String>,
    pub source_type: Vec<String>,
    pub starts_with: Vec<String>,
    /// The `contains` texts, each searcher built once: the decoders that
    /// name no program test theirs on every line of every program they come
    /// before, and `str::contains` prepares its search at each call.
    /// With each text, its byte pairs (see [`super::pairs`]).
    pub contains: Vec<(memchr::memmem::Finder<'static>, NeedlePairs)>,
    pub ends_with: Vec<String>,
}

impl When {
    /// Whether the decoder may try `text`, its `program` condition aside:
    /// the decoders a line visits are chosen by its program (see
    /// `Level::candidates`), so every one of them accepts it. With `pairs`,
    /// the `contains` texts whose byte pairs `text` lacks are not searched
    /// for (the pairs of `text` are read into it when it is empty).
    #[inline]
    pub(crate) fn accepts_besides_program(
        &self,
        text: &str,
        source_type: &str,
        pairs: Option<&mut Option<Pairs>>,
    ) -> bool {
        (self.source_type.is_empty()
            || source_type.is_empty()
            || self.source_type.iter().any(|s| s == source_type))
            && (self.starts_with.is_empty()
                || self.starts_with.iter().any(|s| starts_with(text, s)))
            && (self.ends_with.is_empty() || self.ends_with.iter().any(|s| ends_with(text, s)))
            && (self.contains.is_empty() || {
                let have = pairs.map(|p| &*p.get_or_insert_with(|| Pairs::of(text.as_bytes())));
                self.contains.iter().any(|(f, want)| {
                    have.is_none_or(|have| have.may_contain(want))
                        && f.find(text.as_bytes()).is_some()
                })
            })
    }
}

/// `text.starts_with(prefix)`. Most texts differ from a prefix at its first
/// byte: tested first, it spares a `memcmp` call.
#[inline]
fn starts_with(text: &str, prefix: &str) -> bool {
    prefix
        .as_bytes()
        .first()
        .is_none_or(|b| text.as_bytes().first() == Some(b) && text.starts_with(prefix))
}

/// `text.ends_with(suffix)`, its last byte tested first.
#[inline]
fn ends_with(text: &str, suffix: &str) -> bool {
    suffix
        .as_bytes()
        .last()
        .is_none_or(|b| text.as_bytes().last() == Some(b) && text.ends_with(suffix))
}

/// One pattern of a `regex` step.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub regex: LazyRegex,
    pub groups: NamedGroups,
    /// The pattern is one group around the whole of it, like
    /// `(?i)(?P<verdict>block|drop)`: the match is the capture, found
    /// without the slower search for group positions.
    pub whole: bool,
}

/// A compiled parse step. New formats (CEF, LEEF, CSV, JSON, W3C) are new
/// variants here and new keys in [`StepConfig`].
#[derive(Debug)]
pub(crate) enum Step {
    Syslog {
        from: Option<String>,
    },
    Regex {
        from: Option<String>,
        /// The patterns, tried in order.
        patterns: Vec<Pattern>,
        optional: bool,
    },
    Kv {
        from: Option<String>,
        flags: String,
        separator: u8,
        delimiter: Option<u8>,
    },
    /// CSV and W3C: columns by position.
    Csv {
        from: Option<String>,
        columns: Vec<String>,
        separator: u8,
        dash_empty: bool,
    },
    Cef {
        from: Option<String>,
    },
    Leef {
        from: Option<String>,
    },
    Json {
        from: Option<String>,
    },
    Netfilter {
        from: Option<String>,
    },
}

impl Step {
    pub(crate) fn from(&self) -> Option<&str> {
        match self {
            Step::Syslog { from }
            | Step::Regex { from, .. }
            | Step::Kv { from, .. }
            | Step::Csv { from, .. }
            | Step::Cef { from }
            | Step::Leef { from }
            | Step::Json { from }
            | Step::Netfilter { from } => from.as_deref(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Step::Syslog { .. } => "syslog",
            Step::Regex { .. } => "regex",
            Step::Kv { .. } => "kv",
            Step::Csv {
                dash_empty: false, ..
            } => "csv",
            Step::Csv { .. } => "w3c",
            Step::Cef { .. } => "cef",
            Step::Leef { .. } => "leef",
            Step::Json { .. } => "json",
            Step::Netfilter { .. } => "netfilter",
        }
    }
}

#[derive(Debug)]
pub(crate) struct FieldMap {
    pub target: String,
    /// `target` in [`super::Decoders`]'s name table, set once all decoders
    /// are loaded.
    pub id: u32,
    /// One capture, or several joined with a space.
    pub from: Vec<String>,
    /// Single captures tried in order when `from` is missing.
    pub fallback: Vec<String>,
    /// Between the captures of `from`.
    pub join: String,
    /// Capture holding the time zone of a timestamp.
    pub timezone_from: Option<String>,
    /// Lower-cased exact keys.
    pub map: Vec<(String, String)>,
    /// Lower-cased prefixes (keys written with a trailing `*`), longest first.
    pub prefix_map: Vec<(String, String)>,
    pub default: Option<String>,
    pub convert: Convert,
}

impl FieldMap {
    /// The value after `map`/`default`, before conversion.
    #[inline]
    pub(crate) fn mapped<'v>(&'v self, v: &'v str) -> &'v str {
        if self.map.is_empty() && self.prefix_map.is_empty() {
            return v;
        }
        if let Some((_, to)) = self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(v)) {
            return to;
        }
        let starts = |k: &str| {
            v.len() >= k.len()
                && v.is_char_boundary(k.len())
                && v[..k.len()].eq_ignore_ascii_case(k)
        };
        match self.prefix_map.iter().find(|(k, _)| starts(k)) {
            Some((_, to)) => to,
            None => self.default.as_deref().unwrap_or(v),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DecoderTest {
    /// Where it is written (its name or input line).
    pub at: usize,
    pub name: Option<String>,
    pub line: String,
    pub source_type: String,
    pub received_ms: i64,
    pub expect: Vec<(String, Value)>,
    pub absent: Vec<String>,
    pub matches: bool,
}

/// A problem found while compiling one decoder: (line, field, message).
pub(crate) type Problem = (usize, String, String);

/// Compiles one decoder, collecting every problem.
pub(crate) fn compile(
    file: &str,
    item: &Located<DecoderConfig>,
    deferred: bool,
) -> Result<Decoder, Vec<Problem>> {
    let cfg = &item.value;
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem =
        |line: usize, field: &str, msg: String| problems.push((line, field.to_string(), msg));

    if cfg.name.trim().is_empty() || cfg.name.contains(char::is_whitespace) {
        problem(
            item.line_of_key("name"),
            "name",
            "must be a non-empty word".into(),
        );
    }
    if cfg.name == super::LINE {
        problem(
            item.line_of_key("name"),
            "name",
            format!("`{}` is reserved for the raw line", super::LINE),
        );
    }
    let when = When {
        program: cfg.when.program.clone().unwrap_or_default().0,
        source_type: cfg.when.source_type.clone().unwrap_or_default().0,
        starts_with: cfg.when.starts_with.clone().unwrap_or_default().0,
        contains: (cfg.when.contains.iter().flat_map(|c| &c.0))
            .map(|s| {
                let finder = memchr::memmem::Finder::new(s).into_owned();
                (finder, NeedlePairs::of(s.as_bytes()))
            })
            .collect(),
        ends_with: cfg.when.ends_with.clone().unwrap_or_default().0,
    };

    let mut steps = Vec::new();
    // Capture names known statically; None once a kv step makes them
    // open-ended, or when a parse step was left out or is wrong (a mistake
    // reported already, whose captures are not known: the fields reading
    // them are not reported again).
    let left_out_under = |key: &str| item.left_out.iter().any(|p| below(p, key).is_some());
    let parse_left_out = left_out_under("parse");
    let mut known: Option<Vec<String>> = (!parse_left_out).then(Vec::new);
    for (i, s) in cfg.parse.iter().enumerate() {
        let field = format!("parse[{i}]");
        let count = s.syslog.is_some() as u8
            + s.regex.is_some() as u8
            + s.kv.is_some() as u8
            + s.csv.is_some() as u8
            + s.w3c.is_some() as u8
            + s.cef.is_some() as u8
            + s.leef.is_some() as u8
            + s.json.is_some() as u8
            + s.netfilter.is_some() as u8;
        if count != 1 {
            problem(
                item.line_of_key("parse"),
                &field,
                "each parse step needs exactly one of `syslog`, `regex`, `kv`, `csv`, `w3c`, `cef`, `leef`, `json`, `netfilter`".into(),
            );
            known = None;
            continue;
        }
        let step = if let Some(sys) = &s.syslog {
            if let Some(k) = known.as_mut() {
                k.push("body".into());
            }
            Step::Syslog {
                from: sys.from.clone(),
            }
        } else if let Some(re) = &s.regex {
            let many = re.pattern.0.len() > 1;
            let mut patterns = Vec::new();
            for (k, pattern) in re.pattern.0.iter().enumerate() {
                let path = if many {
                    format!("{field}.regex.pattern[{k}]")
                } else {
                    format!("{field}.regex.pattern")
                };
                match LazyRegex::new(pattern).and_then(|parsed| {
                    if !deferred {
                        parsed.0.get().map_err(str::to_string)?;
                    }
                    Ok(parsed)
                }) {
                    Ok((regex, groups, whole)) => {
                        if groups.is_empty() {
                            problem(
                                item.line_of(pattern),
                                &path,
                                "the pattern has no named group `(?P<name>...)`, so it captures nothing".into(),
                            );
                        }
                        if let Some(k) = known.as_mut() {
                            k.extend(groups.iter().map(|(_, n)| n.clone()));
                        }
                        patterns.push(Pattern {
                            whole: whole && groups.len() == 1,
                            regex,
                            groups,
                        });
                    }
                    Err(e) => problem(
                        item.line_of(pattern),
                        &path,
                        format!("invalid regex: {}", one_line(&e.to_string())),
                    ),
                }
            }
            if re.pattern.0.is_empty() {
                problem(
                    item.line_of_key("pattern"),
                    &format!("{field}.regex.pattern"),
                    "the list of patterns is empty".into(),
                );
            }
            if patterns.len() < re.pattern.0.len() || patterns.is_empty() {
                known = None;
                continue;
            }
            Step::Regex {
                from: re.from.clone(),
                patterns,
                optional: re.optional,
            }
        } else if let Some(kv) = &s.kv {
            known = None;
            let separator = match one_char(kv.separator.as_deref(), b'=') {
                Ok(c) => c,
                Err(e) => {
                    problem(
                        item.line_of_key("separator"),
                        &format!("{field}.kv.separator"),
                        e,
                    );
                    known = None;
                    continue;
                }
            };
            let delimiter = match kv.delimiter.as_deref() {
                None => None,
                Some(d) => match one_char(Some(d), b' ') {
                    Ok(c) => Some(c),
                    Err(e) => {
                        problem(
                            item.line_of_key("delimiter"),
                            &format!("{field}.kv.delimiter"),
                            e,
                        );
                        known = None;
                        continue;
                    }
                },
            };
            Step::Kv {
                from: kv.from.clone(),
                flags: kv.flags.clone().unwrap_or_else(|| "flags".into()),
                separator,
                delimiter,
            }
        } else if let Some(c) = &s.csv {
            let separator = match one_char(c.separator.as_deref(), b',') {
                Ok(c) => c,
                Err(e) => {
                    problem(
                        item.line_of_key("separator"),
                        &format!("{field}.csv.separator"),
                        e,
                    );
                    known = None;
                    continue;
                }
            };
            if c.columns.is_empty() {
                problem(
                    item.line_of_key("columns"),
                    &format!("{field}.csv.columns"),
                    "needs at least one column name".into(),
                );
            }
            if let Some(k) = known.as_mut() {
                k.extend(c.columns.iter().cloned());
            }
            Step::Csv {
                from: c.from.clone(),
                columns: c.columns.clone(),
                separator,
                dash_empty: false,
            }
        } else if let Some(w) = &s.w3c {
            if w.fields.is_empty() {
                problem(
                    item.line_of_key("fields"),
                    &format!("{field}.w3c.fields"),
                    "needs the `#Fields:` list".into(),
                );
            }
            if let Some(k) = known.as_mut() {
                k.extend(w.fields.iter().cloned());
            }
            Step::Csv {
                from: w.from.clone(),
                columns: w.fields.clone(),
                separator: b' ',
                dash_empty: true,
            }
        } else if let Some(c) = &s.cef {
            known = None;
            Step::Cef {
                from: c.from.clone(),
            }
        } else if let Some(c) = &s.leef {
            known = None;
            Step::Leef {
                from: c.from.clone(),
            }
        } else if let Some(c) = &s.json {
            known = None;
            Step::Json {
                from: c.from.clone(),
            }
        } else if let Some(n) = &s.netfilter {
            if let Some(k) = known.as_mut() {
                k.extend(["prefix", "rule_name", "pairs", "verdict"].map(String::from));
            }
            Step::Netfilter {
                from: n.from.clone(),
            }
        } else {
            known = None;
            continue;
        };
        steps.push(step);
    }
    // Without a parse step or a `when` condition that was left out.
    let when_left_out = left_out_under("when");
    if steps.is_empty()
        && cfg.parse.is_empty()
        && when_is_empty(&when)
        && !parse_left_out
        && !when_left_out
    {
        problem(
            item.start_line,
            "parse",
            "a decoder needs a parse step or a `when` condition".into(),
        );
    }

    let mut fields = Vec::new();
    for (target, f) in &cfg.fields {
        let field = format!("fields.{target}");
        let fallback = f.fallback.clone().unwrap_or_default().0;
        if let Some(k) = known.as_ref() {
            for from in f
                .from
                .0
                .iter()
                .chain(&fallback)
                .chain(f.timezone_from.iter())
            {
                if !k.iter().any(|n| n == from) {
                    problem(
                        item.line_of_key(target),
                        &format!("{field}.from"),
                        format!("no parse step captures `{from}` (known: {})", k.join(", ")),
                    );
                }
            }
        }
        if f.from.0.is_empty() {
            problem(
                item.line_of_key(target),
                &format!("{field}.from"),
                "names no capture".into(),
            );
        }
        let tz_used = f.timezone.is_some() || f.timezone_from.is_some();
        if tz_used && f.convert != Some(super::convert::ConvertName::Timestamp) {
            problem(
                item.line_of_key(target),
                &format!("{field}.timezone"),
                "`timezone` is only used with `convert: timestamp`".into(),
            );
        }
        let formats: Vec<&str> = f
            .format
            .iter()
            .flat_map(|f| &f.0)
            .map(String::as_str)
            .collect();
        match Convert::new(f.convert, &formats).and_then(|c| c.with_timezone(f.timezone.as_deref()))
        {
            Ok(convert) => fields.push(FieldMap {
                target: target.clone(),
                id: 0,
                from: f.from.0.clone(),
                fallback,
                join: f.join.clone().unwrap_or_else(|| " ".into()),
                timezone_from: f.timezone_from.clone(),
                map: f
                    .map
                    .iter()
                    .flatten()
                    .filter(|(k, _)| !k.ends_with('*'))
                    .map(|(k, v)| (k.to_lowercase(), v.clone()))
                    .collect(),
                prefix_map: {
                    let mut p: Vec<(String, String)> = f
                        .map
                        .iter()
                        .flatten()
                        .filter_map(|(k, v)| {
                            k.strip_suffix('*').map(|k| (k.to_lowercase(), v.clone()))
                        })
                        .collect();
                    p.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
                    p
                },
                default: f.default.clone(),
                convert,
            }),
            Err(e) => problem(item.line_of_key(target), &field, e),
        }
    }
    for (k, v) in &cfg.set {
        if v.is_object() || v.is_array() || v.is_null() {
            problem(
                item.line_of_key(k),
                &format!("set.{k}"),
                "constants must be a string, number or boolean".into(),
            );
        }
    }

    let mut tests = Vec::new();
    for (i, t) in cfg.tests.iter().enumerate() {
        let received_ms = match &t.received {
            None => TEST_RECEIVED_MS,
            Some(r) => match super::convert::parse_ms(r) {
                Some(ms) => ms,
                None => {
                    problem(
                        item.line_of(r),
                        &format!("tests[{i}].received"),
                        format!("`{r}` is not an RFC 3339 time"),
                    );
                    continue;
                }
            },
        };
        tests.push(DecoderTest {
            at: item.line_of_test(t.name.as_deref(), Some(&t.line)),
            name: t.name.clone(),
            line: t.line.clone(),
            source_type: t.source_type.clone(),
            received_ms,
            expect: t
                .expect
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            absent: t.absent.clone(),
            matches: t.matches.unwrap_or(true),
        });
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let mut wanted: Vec<String> = fields
        .iter()
        .flat_map(|f: &FieldMap| {
            f.from
                .iter()
                .chain(&f.fallback)
                .chain(f.timezone_from.iter())
                .cloned()
        })
        .chain(steps.iter().filter_map(|s| s.from().map(str::to_string)))
        .chain(std::iter::once("body".to_string()))
        .collect();
    wanted.sort();
    wanted.dedup();
    Ok(Decoder {
        wanted,
        name: cfg.name.clone(),
        description: cfg.description.trim().to_string(),
        file: file.to_string(),
        line: item.start_line,
        after: cfg
            .after
            .clone()
            .map(|a| a.0)
            .unwrap_or_else(|| vec![super::LINE.to_string()]),
        when,
        steps,
        fields,
        set: cfg
            .set
            .iter()
            .map(|(k, v)| (k.clone(), 0, v.clone()))
            .collect(),
        tests,
    })
}

/// A regex's named groups: (group index, name).
pub(crate) type NamedGroups = Vec<(usize, String)>;

/// A decoder's regex: parsed when the file loads, and compiled then too
/// ([`super::Decoders::from_sources`]) or the first time a line reaches it
/// ([`super::Decoders::from_sources_deferred`], for `socctl rules test
/// --replay`). Most decoders are for products a site does not run, and
/// compiling every pattern took half of the instructions `socctl` spent
/// before replaying a single line.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    pattern: String,
    compiled: std::sync::OnceLock<Result<Regex, String>>,
    /// The pattern read without the regex engine, when it reads a line in
    /// one way only ([`super::plain`]).
    plain: Option<super::plain::Plain>,
}

impl LazyRegex {
    /// Checks `pattern` as `Regex::new` parses it; returns it with its
    /// named groups (group index, name), in the order `Regex` numbers them,
    /// and whether it is one group around the whole of it
    /// ([`one_whole_group`]).
    pub(crate) fn new(pattern: &str) -> Result<(LazyRegex, NamedGroups, bool), String> {
        use regex_syntax::hir::{Hir, HirKind};
        fn names(hir: &Hir, out: &mut NamedGroups) {
            match hir.kind() {
                HirKind::Capture(c) => {
                    if let Some(n) = &c.name {
                        out.push((c.index as usize, n.to_string()));
                    }
                    names(&c.sub, out);
                }
                HirKind::Concat(hs) | HirKind::Alternation(hs) => {
                    hs.iter().for_each(|h| names(h, out));
                }
                HirKind::Repetition(r) => names(&r.sub, out),
                HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => {}
            }
        }
        let hir = regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        let mut groups = Vec::new();
        names(&hir, &mut groups);
        groups.sort_unstable();
        Ok((
            LazyRegex {
                pattern: pattern.to_string(),
                compiled: std::sync::OnceLock::new(),
                plain: super::plain::Plain::compile(&hir),
            },
            groups,
            one_whole_group(&hir),
        ))
    }

    /// The pattern's plain reading, when it has one.
    pub(crate) fn plain(&self) -> Option<&super::plain::Plain> {
        self.plain.as_ref()
    }

    /// The compiled regex, or why it cannot be compiled (a pattern that
    /// parses but is over the compiled size limit).
    pub(crate) fn get(&self) -> Result<&Regex, &str> {
        self.compiled
            .get_or_init(|| Regex::new(&self.pattern).map_err(|e| one_line(&e.to_string())))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Whether a parsed pattern is a single capture group around the whole
/// pattern (flags aside), so that its match and its group are the same text.
fn one_whole_group(hir: &regex_syntax::hir::Hir) -> bool {
    match hir.kind() {
        regex_syntax::hir::HirKind::Capture(c) => {
            c.index == 1 && hir.properties().explicit_captures_len() == 1
        }
        _ => false,
    }
}

/// A one-character (ASCII) option; `\t` means tab.
fn one_char(v: Option<&str>, default: u8) -> Result<u8, String> {
    match v {
        None => Ok(default),
        Some("\\t") | Some("\t") => Ok(b'\t'),
        Some(s) if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        Some(s) => Err(format!("`{s}` must be a single ASCII character")),
    }
}

fn when_is_empty(w: &When) -> bool {
    w.program.is_empty()
        && w.source_type.is_empty()
        && w.starts_with.is_empty()
        && w.contains.is_empty()
        && w.ends_with.is_empty()
}

/// Regex errors span several lines (with a caret); keep them on one.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_whole_group_is_told_from_other_patterns() {
        let is_one_whole_group = |p: &str| {
            regex_syntax::Parser::new()
                .parse(p)
                .is_ok_and(|hir| one_whole_group(&hir))
        };
        for yes in [
            "(?P<v>a|b)",
            "(?i)(?P<verdict>block|drop|reject)",
            "(?P<v>x(?:y|z)+)",
            "(a)",
        ] {
            assert!(is_one_whole_group(yes), "{yes}");
        }
        for no in [
            "^(?P<v>a)",
            "(?P<v>a)b",
            "(?P<a>(?P<b>x))",
            "(?P<a>x)|(?P<b>y)",
            "(?P<v>a)(b)",
            "(?P<v>a",
        ] {
            assert!(!is_one_whole_group(no), "{no}");
        }
    }

    #[test]
    fn prefix_and_suffix_tests_agree_with_the_standard_ones() {
        let texts = ["", "F", "Failed password", "Fa", "é", "éa", "aé", " x "];
        let affixes = ["", "F", "Failed ", "Fa", "é", "a", "aé", "x ", " x "];
        for t in texts {
            for a in affixes {
                assert_eq!(
                    starts_with(t, a),
                    t.starts_with(a),
                    "{t:?} starts with {a:?}"
                );
                assert_eq!(ends_with(t, a), t.ends_with(a), "{t:?} ends with {a:?}");
            }
        }
    }

    /// A whole-group pattern captures through `find` exactly what the
    /// general path captures.
    #[test]
    fn whole_group_capture_equals_the_general_one() {
        let re = Regex::new("(?i)(?P<v>block|allow)").expect("valid");
        for text in ["[UFW BLOCK]", "x allow y", "nothing", "", "ALLOWBLOCK"] {
            let by_find = re.find(text).map(|m| m.as_str());
            let by_caps = re
                .captures(text)
                .and_then(|c| c.name("v"))
                .map(|m| m.as_str());
            assert_eq!(by_find, by_caps, "{text}");
        }
    }
}
