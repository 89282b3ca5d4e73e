//! Decoders: from a raw line to named fields.
//!
//! A decoder file holds a list of decoders. Each decoder reads either the raw
//! line or the `body` left by another decoder (`after:`), so an envelope
//! (syslog) is written once and the formats inside it (netfilter, clamd) are
//! written as its children. Decoding walks this tree:
//!
//! 1. Try the root decoders (those `after: line`) in load order. A decoder
//!    applies when its `when:` preconditions hold and its first parse step
//!    matches. The first that applies wins; its siblings are not tried.
//! 2. Its fields are stored, then its children are tried on its `body`
//!    capture (or on the same text when it has none), and so on down.
//! 3. When a decoder applied but a later step or a conversion failed, the
//!    event gets `decode.error` naming the decoder and the reason; the fields
//!    that could be decoded are kept.
//!
//! Decoding never fails: a line nothing recognises still becomes an event with
//! `message` and `event.module: unknown`.

pub(crate) mod config;
pub(crate) mod convert;
pub(crate) mod formats;
pub(crate) mod kv;
pub(crate) mod netfilter;
pub(crate) mod pairs;
pub(crate) mod plain;
pub(crate) mod syslog;

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use crate::error::{LoadError, LoadErrors};
use crate::event::{Event, Fields, FieldsBuilder, Input, SharedName, SourceFile};
use crate::yaml::{FirstWritten, load_items};
use config::{Decoder, DecoderConfig, Step};

/// The pseudo-parent name for the raw line.
pub(crate) const LINE: &str = "line";

/// The value of `event.module` when no decoder set one.
pub const UNKNOWN_MODULE: &str = "unknown";

/// A compiled, immutable set of decoders.
#[derive(Debug)]
pub struct Decoders {
    pub(crate) decoders: Vec<Decoder>,
    /// The decoders that read the raw line, in load order.
    roots: Level,
    /// For each decoder, the decoders that read its output.
    children: Vec<Level>,
    /// Every field name a decoding can set, sorted: a field is handled by
    /// its index here until the event is built, so ordering fields compares
    /// integers, and every event shares these names instead of copying them.
    names: Vec<SharedName>,
    /// The ids of [`KNOWN`].
    known: KnownIds,
    /// Tells this set's [`Projection`]s from another's (whose name ids
    /// number other names).
    serial: u64,
}

/// The fields a decoding keeps (see [`Decoders::projection`]).
#[derive(Debug, Clone)]
pub struct Projection {
    /// The [`Decoders::serial`] of the decoders it was made for.
    serial: u64,
    /// One bit per name id; `None`: every field.
    keep: Option<Vec<u64>>,
}

impl Projection {
    /// Whether this keeps every field.
    pub fn keeps_all(&self) -> bool {
        self.keep.is_none()
    }
}

/// Field names set by the decoding itself rather than by a decoder's
/// `fields`; [`Known`] indexes them.
const KNOWN: [&str; 17] = [
    "@timestamp",
    "log.syslog.priority",
    "log.syslog.facility.code",
    "log.syslog.severity.code",
    "host.name",
    "process.name",
    "process.pid",
    "log.syslog.msgid",
    "event.module",
    "decoder.name",
    "decode.reason",
    "decode.error",
    "agent.name",
    "log.source",
    "log.file.path",
    "log.source_type",
    "message",
];

/// Indexes of [`KNOWN`].
#[derive(Clone, Copy)]
enum Known {
    Timestamp,
    SyslogPriority,
    SyslogFacility,
    SyslogSeverity,
    HostName,
    ProcessName,
    ProcessPid,
    SyslogMsgid,
    EventModule,
    DecoderName,
    DecodeReason,
    DecodeError,
    AgentName,
    LogSource,
    LogFilePath,
    LogSourceType,
    /// The raw line.
    Message,
}

/// The name ids of [`KNOWN`] in the loaded [`Decoders`]' name table.
#[derive(Debug)]
struct KnownIds([u32; KNOWN.len()]);

impl KnownIds {
    #[inline]
    fn id(&self, k: Known) -> u32 {
        self.0[k as usize]
    }
}

/// The candidate decoders of one level of the tree (indexes, in load
/// order), also sorted out by the syslog program their `when: program`
/// accepts, so that a line does not visit the decoders of other programs.
#[derive(Debug, Default)]
struct Level {
    all: Candidates,
    /// For each program some candidate names: the candidates that accept it
    /// (those naming it and those without a program condition). Hashed
    /// with FNV ([`crate::KeyHash`] on text), not SipHash: the decoder
    /// files fill the map and lines only read it, so a line cannot make
    /// its keys collide.
    by_program: HashMap<String, Candidates, std::hash::BuildHasherDefault<crate::KeyHash>>,
    /// The candidates without a program condition: those that accept a
    /// program no candidate names.
    any_program: Candidates,
}

impl Level {
    fn new(all: Vec<usize>, decoders: &[Decoder]) -> Level {
        let any_program: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| decoders[i].when.program.is_empty())
            .collect();
        let mut by_program = HashMap::default();
        for &i in &all {
            for p in &decoders[i].when.program {
                by_program.entry(p.clone()).or_insert_with(|| {
                    let ids = all
                        .iter()
                        .copied()
                        .filter(|&j| {
                            let w = &decoders[j].when.program;
                            w.is_empty() || w.contains(p)
                        })
                        .collect();
                    Candidates::new(ids, decoders)
                });
            }
        }
        Level {
            all: Candidates::new(all, decoders),
            by_program,
            any_program: Candidates::new(any_program, decoders),
        }
    }

    /// The candidates whose program condition `program` (none: any) meets.
    fn candidates(&self, program: Option<&str>) -> &Candidates {
        match program {
            None => &self.all,
            Some(p) => self.by_program.get(p).unwrap_or(&self.any_program),
        }
    }

    fn is_empty(&self) -> bool {
        self.all.ids.is_empty()
    }
}

/// Decoders a line visits in turn.
#[derive(Debug, Default)]
struct Candidates {
    ids: Vec<usize>,
    /// Whether a line's byte pairs are worth reading before the `contains`
    /// texts are searched for (see [`pairs`]): when many texts come before
    /// the first decoder of a named program (from [`Candidates::PAIRS_FROM`]
    /// texts on; fewer are searched for faster than a line's pairs are read).
    pairs: bool,
    /// With `pairs`, which candidates a line's pairs and first byte leave
    /// open (see [`pairs::Gate`]); `None` for a long list.
    gate: Option<pairs::Gate>,
}

impl Candidates {
    const PAIRS_FROM: usize = 12;

    fn new(ids: Vec<usize>, decoders: &[Decoder]) -> Candidates {
        let texts_first: usize = ids
            .iter()
            .map(|&i| &decoders[i].when)
            .take_while(|w| w.program.is_empty())
            .map(|w| w.contains.len())
            .sum();
        let pairs = texts_first >= Candidates::PAIRS_FROM;
        let gate = pairs
            .then(|| {
                pairs::Gate::new(ids.iter().map(|&i| {
                    let w = &decoders[i].when;
                    (
                        w.contains.iter().map(|(f, _)| f.needle()).collect(),
                        w.starts_with.iter().map(|s| s.as_bytes()).collect(),
                    )
                }))
            })
            .flatten();
        Candidates { pairs, gate, ids }
    }
}

/// Captured values of one decoder: (name, value); later entries win.
/// Kept on the stack up to [`CAPTURES`] of them (a netfilter line has
/// about twenty): each level of each line took an allocation before.
type Captures<'c> = smallvec::SmallVec<[(&'c str, Cow<'c, str>); CAPTURES]>;

/// How many captures a level keeps without allocating.
const CAPTURES: usize = 24;

/// Why a decoder that recognised a line could not decode all of it: the
/// bounded value of `decode.reason` (a metric label for the collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// A later parse step did not match (or read a capture nobody made).
    NoMatch,
    /// The text has the format's marker but is broken (bad syslog date,
    /// invalid JSON, a cut CEF header).
    Malformed,
    /// A captured value could not be converted (not an IP, not a number,
    /// not a time).
    Conversion,
}

impl FailReason {
    /// The label: `no_match`, `malformed`, `conversion`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoMatch => "no_match",
            FailReason::Malformed => "malformed",
            FailReason::Conversion => "conversion",
        }
    }
}

/// One decode failure, for `decode.error`.
struct Failure<'d> {
    decoder: &'d str,
    reason: FailReason,
    text: String,
}

/// What one decoding accumulates across the decoder tree.
struct Output<'d> {
    /// Fields by name id; setting a field again replaces its value.
    fields: FieldSlots<'d>,
    timestamp_ms: Option<i64>,
    errors: Vec<Failure<'d>>,
    /// The innermost decoder that applied so far.
    last: Option<&'d str>,
    /// Decoders that applied, outermost first; kept only when traced (a
    /// vector per line otherwise: one allocation for nothing).
    chain: Option<Vec<&'d str>>,
}

impl Decoders {
    /// The decoders shipped with soc (`rules/decoders/*.yml`).
    pub fn builtin() -> Decoders {
        // Proven by the `builtin_content_loads` test; the files are compiled in.
        Decoders::from_sources(&crate::builtin_decoder_sources())
            .expect("builtin decoder files must load")
    }

    /// Compiles decoder files, in order. Reports every error of every file.
    pub fn from_sources(files: &[SourceFile]) -> Result<Decoders, LoadErrors> {
        Decoders::load(files, false)
    }

    /// Like [`Decoders::from_sources`], but a regex is compiled the first
    /// time a line reaches it, not when the file loads (only its syntax is
    /// checked then): for a short run over one log, where most decoders
    /// never see a line. A pattern that parses and still cannot be
    /// compiled (over the size limit) then fails the lines that reach it,
    /// with the reason, instead of failing the load.
    pub fn from_sources_deferred(files: &[SourceFile]) -> Result<Decoders, LoadErrors> {
        Decoders::load(files, true)
    }

    fn load(files: &[SourceFile], deferred: bool) -> Result<Decoders, LoadErrors> {
        let mut errors = Vec::new();
        let mut decoders: Vec<Decoder> = Vec::new();
        // Names as first written, compiled or not: an `after:` naming a
        // decoder that has a mistake is not reported again as naming no
        // decoder.
        let mut first = FirstWritten::default();
        for file in files {
            for item in load_items::<DecoderConfig>(file, "decoders", &mut errors) {
                let compiled = config::compile(&file.name, &item, deferred);
                let name = item.value.name.as_str();
                let repeated = first.repeated(name, &file.name, &item);
                if let Some((prev_file, prev_line)) = repeated {
                    errors.push(LoadError::repeated_name(
                        &file.name,
                        item.line_of_key("name"),
                        "name",
                        format!("decoder `{name}` is already defined at {prev_file}:{prev_line}"),
                    ));
                }
                match compiled {
                    Ok(d) if repeated.is_none() => decoders.push(d),
                    Ok(_) => {}
                    Err(problems) => {
                        errors.extend(problems.into_iter().map(|(line, field, msg)| {
                            LoadError::new(&file.name, Some(line), Some(&field), msg)
                        }))
                    }
                }
            }
        }
        let mut roots = Vec::new();
        let mut children = vec![Vec::new(); decoders.len()];
        for (i, d) in decoders.iter().enumerate() {
            for parent in &d.after {
                if parent == LINE {
                    roots.push(i);
                } else if let Some(p) = decoders.iter().position(|p| &p.name == parent) {
                    children[p].push(i);
                } else if !first.contains(parent) {
                    errors.push(LoadError::new(
                        &d.file,
                        Some(d.line),
                        Some("after"),
                        format!("no decoder named `{parent}` (use `{LINE}` for the raw line)"),
                    ));
                }
            }
        }
        if let Some(i) = find_cycle(&children) {
            let d = &decoders[i];
            errors.push(LoadError::new(
                &d.file,
                Some(d.line),
                Some("after"),
                format!("decoder `{}` is part of an `after:` cycle", d.name),
            ));
        }
        if !errors.is_empty() {
            crate::yaml::sort_errors(files, &mut errors);
            return Err(LoadErrors(errors));
        }
        let roots = Level::new(roots, &decoders);
        let children = children
            .into_iter()
            .map(|c| Level::new(c, &decoders))
            .collect();
        let mut names: Vec<&str> = KNOWN.to_vec();
        for d in &decoders {
            names.extend(d.fields.iter().map(|f| f.target.as_str()));
            names.extend(d.set.iter().map(|(k, _, _)| k.as_str()));
        }
        names.sort_unstable();
        names.dedup();
        let names: Vec<SharedName> = names.into_iter().map(SharedName::new).collect();
        let id = |name: &str| -> u32 {
            let at = names.binary_search_by(|n| n.as_str().cmp(name));
            // Every name was put in the table just above.
            at.map_or(0, |i| i as u32)
        };
        let known = KnownIds(KNOWN.map(id));
        for d in &mut decoders {
            for f in &mut d.fields {
                f.id = id(&f.target);
            }
            for (k, i, _) in &mut d.set {
                *i = id(k);
            }
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Decoders {
            decoders,
            roots,
            children,
            known,
            names,
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// A projection that keeps only the fields named in `names` of the
    /// events [`Decoders::decode_projected`] makes: for a caller that reads
    /// only those (the engine reads only the fields of its rules, see
    /// [`crate::Engine::fields_read`]). A field nobody keeps is neither
    /// converted nor copied, so decoding costs less.
    ///
    /// `decoder.name`, `decode.reason` and `decode.error` depend on every
    /// field's conversion: naming one keeps every field. Names no decoder
    /// sets are left out (no event can hold them). `process.name` is always
    /// kept: decoding reads it to choose the decoders of a program.
    pub fn projection<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Projection {
        let mut keep = vec![0u64; self.names.len().div_ceil(64)];
        let program = self.known.id(Known::ProcessName) as usize;
        keep[program / 64] |= 1 << (program % 64);
        let mut all = false;
        for name in names {
            all |= [Known::DecoderName, Known::DecodeReason, Known::DecodeError]
                .iter()
                .any(|&k| KNOWN[k as usize] == name);
            if let Ok(id) = self.names.binary_search_by(|n| n.as_str().cmp(name)) {
                keep[id / 64] |= 1 << (id % 64);
            }
        }
        Projection {
            serial: self.serial,
            keep: (!all).then_some(keep),
        }
    }

    /// The names of the fields an event can hold: those decoding itself
    /// sets (`message`, `host.name`, `agent.name`, ...) and those of every
    /// decoder's `fields:` and `set:`, sorted.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(SharedName::as_str)
    }

    /// Every field an event can hold: whether decoding itself sets it
    /// (`message`, `agent.name` on every event; `@timestamp`, `host.name`,
    /// `process.name` from a syslog envelope; `decode.error`, ...), and the
    /// decoders whose `fields:` or `set:` name it, in load order.
    pub fn fields_by_decoder(&self) -> std::collections::BTreeMap<&str, (bool, Vec<&str>)> {
        let mut out: std::collections::BTreeMap<&str, (bool, Vec<&str>)> = self
            .field_names()
            .map(|n| (n, (KNOWN.contains(&n), Vec::new())))
            .collect();
        for d in &self.decoders {
            let sets = d
                .fields
                .iter()
                .map(|f| f.target.as_str())
                .chain(d.set.iter().map(|(k, _, _)| k.as_str()));
            for name in sets {
                if let Some((_, by)) = out.get_mut(name)
                    && by.last() != Some(&d.name.as_str())
                {
                    by.push(&d.name);
                }
            }
        }
        out
    }

    /// Whether some decoder (or decoding itself) can set the field `name`.
    pub fn sets_field(&self, name: &str) -> bool {
        self.names
            .binary_search_by(|n| n.as_str().cmp(name))
            .is_ok()
    }

    /// Decoder names in load order.
    pub fn names(&self) -> Vec<String> {
        self.decoders.iter().map(|d| d.name.clone()).collect()
    }

    /// The description of a decoder, for listings.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.decoders
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.description.as_str())
    }

    /// Decodes one line. Never fails.
    pub fn decode(&self, input: &Input<'_>) -> Event {
        self.decode_with(input, None, false).0
    }

    /// Decodes one line, keeping only the fields `only` keeps: the event
    /// [`Decoders::decode`] makes, without the other fields. The event's
    /// time is the same. A projection made by other decoders keeps every
    /// field.
    pub fn decode_projected(&self, input: &Input<'_>, only: &Projection) -> Event {
        let keep = if only.serial == self.serial {
            only.keep.as_deref()
        } else {
            None
        };
        self.decode_with(input, keep, false).0
    }

    /// Decodes one line, keeping the fields whose bit is set in `keep`
    /// (all: `None`), and also returns the names of the decoders that
    /// applied, outermost first (used by the inline tests).
    pub(crate) fn decode_traced<'d>(
        &'d self,
        input: &Input<'_>,
        keep: Option<&'d [u64]>,
    ) -> (Event, Vec<&'d str>) {
        let (event, chain) = self.decode_with(input, keep, true);
        (event, chain.unwrap_or_default())
    }

    /// Decodes one line, keeping the fields whose bit is set in `keep`
    /// (all: `None`), and also returns the names of the decoders that
    /// applied when `trace` is set.
    fn decode_with<'d>(
        &'d self,
        input: &Input<'_>,
        keep: Option<&'d [u64]>,
        trace: bool,
    ) -> (Event, Option<Vec<&'d str>>) {
        // Valid UTF-8 is checked by the vectorised validator; only invalid
        // lines take the slower repairing path.
        let message = match std::str::from_utf8(input.raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(input.raw),
        };
        let text = message.trim_end_matches(['\n', '\r']);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut out = Output {
            fields: FieldSlots::new(&self.names, keep),
            timestamp_ms: None,
            errors: Vec::new(),
            last: None,
            chain: trace.then(Vec::new),
        };
        self.run_level(&self.roots, text, input, &mut out);

        let known = |k: Known| self.known.id(k);
        let mut fields = out.fields;
        if fields.get(known(Known::EventModule)).is_none()
            && fields.wants(known(Known::EventModule))
        {
            fields.set(known(Known::EventModule), Value::from(UNKNOWN_MODULE));
        }
        // A projection keeps all of `decoder.name` and `decode.*` or none
        // (see `Decoders::projection`).
        let outcome = fields.wants(known(Known::DecoderName));
        if let Some(first) = out.errors.first().filter(|_| outcome) {
            // On failure `decoder.name` names the decoder that failed, so the
            // collector's failure metric is labelled by it.
            fields.set(known(Known::DecoderName), Value::from(first.decoder));
            fields.set(
                known(Known::DecodeReason),
                Value::from(first.reason.as_str()),
            );
            let text: Vec<String> = out
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.decoder, f.text))
                .collect();
            fields.set(known(Known::DecodeError), Value::from(text.join("; ")));
        } else if let Some(last) = out.last.filter(|_| outcome) {
            fields.set(known(Known::DecoderName), Value::from(last));
        }
        for (name, value) in [
            (Known::AgentName, input.agent),
            (Known::LogSource, input.source),
            (Known::LogFilePath, input.path),
            (Known::LogSourceType, input.source_type),
        ] {
            if !value.is_empty() && fields.wants(known(name)) {
                fields.set(known(name), Value::from(value));
            }
        }
        if fields.wants(known(Known::Message)) {
            fields.set(known(Known::Message), Value::String(message.into_owned()));
        }
        let event = Event {
            id: 0,
            timestamp_ms: out.timestamp_ms.unwrap_or(input.received_ms),
            fields: fields.take_fields(),
        };
        (event, out.chain)
    }

    /// Tries `candidates` on `text`; the first that applies wins and its
    /// children run on its body. Returns whether one applied.
    fn run_level<'d>(
        &'d self,
        level: &Level,
        text: &str,
        input: &Input<'_>,
        out: &mut Output<'d>,
    ) -> bool {
        let mut first_error: Option<Failure<'d>> = None;
        // The program is set by a parent, so it is the same for every
        // candidate of this level: look it up once.
        let program = out
            .fields
            .get(self.known.id(Known::ProcessName))
            .and_then(Value::as_str);
        // Reused by the candidates.
        let mut caps: Captures<'_> = Captures::new();
        let mut staged = Staged {
            fields: staging_take(),
            keep: out.fields.keep,
            ..Staged::default()
        };
        let candidates = level.candidates(program);
        // The line's byte pairs, read when a candidate first needs them,
        // or at once for the gate.
        let mut pairs = None;
        let open = match &candidates.gate {
            Some(gate) => {
                let p = pairs.insert(pairs::Pairs::of(text.as_bytes()));
                gate.open(text.as_bytes(), p)
            }
            None => u64::MAX,
        };
        for (at, &id) in candidates.ids.iter().enumerate() {
            // A list longer than `Gate::MAX` has no gate: all are open.
            if at < pairs::Gate::MAX && open & (1 << at) == 0 {
                continue;
            }
            let d = &self.decoders[id];
            let pairs = candidates.pairs.then_some(&mut pairs);
            if !d
                .when
                .accepts_besides_program(text, input.source_type, pairs)
            {
                continue;
            }
            caps.clear();
            staged.clear();
            match run_steps(d, &self.known, text, input, &mut caps, &mut staged) {
                StepsResult::NotApplicable => continue,
                StepsResult::Failed(reason, text) => {
                    // The decoder recognised the line but could not decode it.
                    // A later sibling may still do better.
                    first_error.get_or_insert(Failure {
                        decoder: &d.name,
                        reason,
                        text,
                    });
                    continue;
                }
                StepsResult::Ok => {}
            }
            // The decoder applies. Constants first, so that what its steps
            // and fields decode from the line can refine one.
            for (_, id, v) in &d.set {
                if out.fields.wants(*id) {
                    out.fields.set(*id, v.clone());
                }
            }
            for (k, v) in staged.fields.drain(..) {
                out.fields.set(k, v);
            }
            for f in &d.fields {
                let is_time = f.id == self.known.id(Known::Timestamp);
                let kept = out.fields.wants(f.id);
                // The event's time is read from `@timestamp` even when the
                // field is not kept.
                if !is_time && !kept {
                    continue;
                }
                let Some(raw) = field_source(&caps, &f.from, &f.join).or_else(|| {
                    f.fallback
                        .iter()
                        .find_map(|n| get(&caps, n).map(Cow::Borrowed))
                }) else {
                    continue;
                };
                let v = f.mapped(&raw);
                if v.is_empty() {
                    continue;
                }
                let tz = f.timezone_from.as_deref().and_then(|n| get(&caps, n));
                match f.convert.apply_tz(v, tz) {
                    Ok((value, ms)) => {
                        if is_time {
                            staged.ts = ms.or_else(|| value.as_str().and_then(convert::parse_ms));
                        }
                        if kept {
                            out.fields.set(f.id, value);
                        }
                    }
                    Err(e) => staged.errors.push(Failure {
                        decoder: &d.name,
                        reason: FailReason::Conversion,
                        text: format!("field {}: {e}", f.target),
                    }),
                }
            }
            if staged.ts.is_some() {
                out.timestamp_ms = staged.ts;
            }
            out.errors.append(&mut staged.errors);
            out.last = Some(&d.name);
            if let Some(chain) = &mut out.chain {
                chain.push(&d.name);
            }
            let kids = &self.children[id];
            if !kids.is_empty() {
                let body = get(&caps, "body").unwrap_or(text);
                self.run_level(kids, body, input, out);
            }
            staging_give(staged.fields);
            return true;
        }
        if let Some(e) = first_error {
            out.errors.push(e);
        }
        staging_give(staged.fields);
        false
    }
}

thread_local! {
    /// The staging vectors of [`Decoders::run_level`], one per level being
    /// run on this thread, reused from line to line. Allocated at every
    /// level of every line and freed at its end, each one took mimalloc's
    /// slow path: a block freed and asked for again at once goes to a list
    /// that only the slow path reads.
    static STAGING: std::cell::RefCell<Vec<Vec<(u32, Value)>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A staging vector from this thread's pool (sized for most lines: 16
/// fields), or a new one.
fn staging_take() -> Vec<(u32, Value)> {
    STAGING
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(16))
}

/// Gives a staging vector back to this thread's pool, emptied; a pool
/// holds one per level of the decoder tree at most (a few).
fn staging_give(mut v: Vec<(u32, Value)>) {
    v.clear();
    let _ = STAGING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut()
            && p.len() < 8
        {
            p.push(v);
        }
    });
}

/// The fields of a line being decoded, by name id (see [`Decoders`]'s
/// `names`, sorted by name, so id order is name order): one slot per name
/// and a bitmap of the slots that are set. Setting a field is a store, and
/// the finished fields come out in name order without a search, a sort or a
/// move.
///
/// The slots belong to the decoding thread and are reused from line to line
/// ([`SLOTS`]). Every value is taken out when the event is made, and
/// dropping this (even while a panic unwinds) empties what is left, so they
/// are empty between lines.
struct FieldSlots<'d> {
    names: &'d [SharedName],
    /// The projection's bits (see [`Projection`]); `None`: every field.
    keep: Option<&'d [u64]>,
    /// `Null` where no value is set (the bitmap tells a set `null`).
    slots: Vec<Value>,
    /// One bit per slot: set when the slot holds a value.
    present: Vec<u64>,
    len: usize,
}

thread_local! {
    /// The slots and bitmap of [`FieldSlots`], between two lines. Sized by
    /// the largest name table this thread has decoded with (a few hundred
    /// names: a few kilobytes).
    static SLOTS: std::cell::Cell<(Vec<Value>, Vec<u64>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

impl<'d> FieldSlots<'d> {
    /// Slots for `names`, keeping those `keep` keeps.
    fn new(names: &'d [SharedName], keep: Option<&'d [u64]>) -> Self {
        let (mut slots, mut present) = SLOTS.with(std::cell::Cell::take);
        if slots.len() < names.len() {
            slots.resize_with(names.len(), || Value::Null);
            present.resize(names.len().div_ceil(64), 0);
        }
        FieldSlots {
            names,
            keep,
            slots,
            present,
            len: 0,
        }
    }

    /// Whether the field `id` is kept.
    #[inline]
    fn wants(&self, id: u32) -> bool {
        wanted(self.keep, id)
    }

    fn get(&self, id: u32) -> Option<&Value> {
        let id = id as usize;
        (self.present[id / 64] & (1 << (id % 64)) != 0).then(|| &self.slots[id])
    }

    fn set(&mut self, id: u32, value: Value) {
        let id = id as usize;
        let (word, bit) = (&mut self.present[id / 64], 1 << (id % 64));
        if *word & bit == 0 {
            *word |= bit;
            self.len += 1;
            // An empty slot holds `Null`, which owns nothing: it is
            // overwritten without a call to drop it.
            let empty = std::mem::replace(&mut self.slots[id], value);
            debug_assert!(empty.is_null());
            std::mem::forget(empty);
        } else {
            self.slots[id] = value;
        }
    }

    /// The fields set, in name order; leaves the slots empty.
    fn take_fields(&mut self) -> Fields {
        let mut fields = FieldsBuilder::with_capacity(self.len);
        for (w, word) in self.present.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let id = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                fields.push(&self.names[id], std::mem::take(&mut self.slots[id]));
            }
        }
        self.len = 0;
        fields.finish()
    }
}

impl Drop for FieldSlots<'_> {
    fn drop(&mut self) {
        if self.len > 0 {
            // Only when decoding stopped half-way (a panic).
            drop(self.take_fields());
        }
        let buffers = (
            std::mem::take(&mut self.slots),
            std::mem::take(&mut self.present),
        );
        // Nothing to keep them for while the thread is being torn down.
        let _ = SLOTS.try_with(|c| c.set(buffers));
    }
}

/// What one decoder made of a line before it is merged into the event.
#[derive(Default)]
struct Staged<'d> {
    /// Fields the parse steps made (the syslog envelope's), by name id, in
    /// order; only those kept.
    fields: Vec<(u32, Value)>,
    /// The projection's bits (see [`FieldSlots::keep`]).
    keep: Option<&'d [u64]>,
    /// The event time, when a step or field gave one.
    ts: Option<i64>,
    /// Values that could not be read; the decoder still applies.
    errors: Vec<Failure<'d>>,
}

impl Staged<'_> {
    /// Stages a field the projection keeps; `value` makes it.
    #[inline]
    fn push(&mut self, id: u32, value: impl FnOnce() -> Value) {
        if wanted(self.keep, id) {
            self.fields.push((id, value()));
        }
    }

    fn clear(&mut self) {
        self.fields.clear();
        self.ts = None;
        self.errors.clear();
    }
}

enum StepsResult {
    Ok,
    NotApplicable,
    Failed(FailReason, String),
}

/// Whether the projection `keep` (see [`FieldSlots::keep`]) keeps field `id`.
#[inline]
fn wanted(keep: Option<&[u64]>, id: u32) -> bool {
    let id = id as usize;
    keep.is_none_or(|k| k.get(id / 64).is_some_and(|w| w & (1 << (id % 64)) != 0))
}

/// The text of a field's capture, or of several joined with `join` (all
/// must be present).
fn field_source<'a>(caps: &'a Captures<'_>, from: &[String], join: &str) -> Option<Cow<'a, str>> {
    match from {
        [one] => get(caps, one).map(Cow::Borrowed),
        many => {
            let mut out = String::new();
            for (i, name) in many.iter().enumerate() {
                if i > 0 {
                    out.push_str(join);
                }
                out.push_str(get(caps, name)?);
            }
            Some(Cow::Owned(out))
        }
    }
}

/// Whether two capture names are equal. Most names differ in length or in
/// the first byte; testing those first spares a `memcmp` call per
/// comparison in the lookups, the commonest operation of decoding.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// The last value captured under `name`.
fn get<'a>(caps: &'a Captures<'_>, name: &str) -> Option<&'a str> {
    caps.iter()
        .rev()
        .find(|(n, _)| same_name(n, name))
        .map(|(_, v)| v.as_ref())
}

/// The text a step reads: a capture (by value when it is owned) or the input.
fn step_input<'c>(caps: &Captures<'c>, text: &'c str, from: Option<&str>) -> Option<Cow<'c, str>> {
    match from {
        None => Some(Cow::Borrowed(text)),
        Some(name) => caps
            .iter()
            .rev()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| match v {
                Cow::Borrowed(s) => Cow::Borrowed(*s),
                Cow::Owned(s) => Cow::Owned(s.clone()),
            }),
    }
}

/// Runs the parse steps of `d` on `text`.
fn run_steps<'c, 'd: 'c>(
    d: &'d Decoder,
    known: &KnownIds,
    text: &'c str,
    input: &Input<'_>,
    caps: &mut Captures<'c>,
    staged: &mut Staged<'d>,
) -> StepsResult {
    let known = |k: Known| known.id(k);
    for (i, step) in d.steps.iter().enumerate() {
        let first = i == 0;
        let Some(src) = step_input(caps, text, step.from()) else {
            if matches!(step, Step::Regex { optional: true, .. }) {
                // An optional step on a capture nobody made adds nothing.
                continue;
            }
            if first {
                return StepsResult::NotApplicable;
            }
            let from = step.from().unwrap_or_default();
            return StepsResult::Failed(
                FailReason::NoMatch,
                format!("{} step: nothing captured as `{from}`", step.kind()),
            );
        };
        match step {
            Step::Syslog { .. } => match syslog::parse(&src, input.received_ms) {
                Ok(env) => {
                    if let Some(t) = env.timestamp_ms {
                        staged.ts = Some(t);
                        staged.push(known(Known::Timestamp), || {
                            Value::from(convert::format_ms(t))
                        });
                    }
                    if let Some(p) = env.priority {
                        staged.push(known(Known::SyslogPriority), || Value::from(p));
                        staged.push(known(Known::SyslogFacility), || Value::from(p / 8));
                        staged.push(known(Known::SyslogSeverity), || Value::from(p % 8));
                    }
                    if let Some(h) = env.host {
                        staged.push(known(Known::HostName), || Value::from(h));
                    }
                    if let Some(p) = env.program {
                        staged.push(known(Known::ProcessName), || Value::from(p));
                    }
                    if let Some(p) = env.pid {
                        staged.push(known(Known::ProcessPid), || Value::from(p));
                    }
                    if let Some(m) = env.msgid {
                        staged.push(known(Known::SyslogMsgid), || Value::from(m));
                    }
                    if let Some(e) = env.date_error {
                        // The rest of the line is still decoded.
                        staged.errors.push(Failure {
                            decoder: &d.name,
                            reason: FailReason::Malformed,
                            text: e,
                        });
                    }
                    let start = src.len() - env.body.len();
                    push_sub(caps, &src, "body", start..src.len());
                }
                Err(syslog::SyslogError::NotSyslog) if first => return StepsResult::NotApplicable,
                Err(syslog::SyslogError::NotSyslog) => {
                    return StepsResult::Failed(FailReason::NoMatch, "not a syslog line".into());
                }
                Err(syslog::SyslogError::Invalid(reason)) => {
                    return StepsResult::Failed(FailReason::Malformed, reason);
                }
            },
            Step::Netfilter { .. } => match netfilter::split(&src) {
                Some(r) => {
                    push_sub(caps, &src, "prefix", r.prefix);
                    if let Some(name) = r.rule_name {
                        push_sub(caps, &src, "rule_name", name);
                    }
                    push_sub(caps, &src, "pairs", r.pairs);
                    if let Some(verdict) = r.verdict {
                        push_sub(caps, &src, "verdict", verdict);
                    }
                }
                None if first => return StepsResult::NotApplicable,
                None => {
                    return StepsResult::Failed(
                        FailReason::NoMatch,
                        format!("parse[{i}] not a netfilter LOG record"),
                    );
                }
            },
            Step::Regex {
                patterns, optional, ..
            } => {
                let mut matched = false;
                for p in patterns {
                    if p.whole {
                        // One group around the whole pattern: the match is
                        // the capture. A pattern that cannot be compiled
                        // matches nothing.
                        let found = p.regex.get().ok().and_then(|r| r.find(&src));
                        if let (Some(m), Some((_, name))) = (found, p.groups.first()) {
                            push_sub(caps, &src, name, m.range());
                            matched = true;
                            break;
                        }
                        continue;
                    }
                    if let Some(plain) = p.regex.plain() {
                        let mut slots = [None; plain::MAX_GROUPS];
                        match plain.captures(&src, &mut slots) {
                            Some(true) => {
                                for (gi, name) in &p.groups {
                                    if let Some(Some((s, e))) = slots.get(*gi) {
                                        push_sub(caps, &src, name, *s..*e);
                                    }
                                }
                                matched = true;
                                break;
                            }
                            Some(false) => continue,
                            // A search that gave up: the regex reads it.
                            None => {}
                        }
                    }
                    let regex = match p.regex.get() {
                        Ok(regex) => regex,
                        Err(e) => {
                            return StepsResult::Failed(
                                FailReason::NoMatch,
                                format!("parse[{i}] regex cannot be compiled: {e}"),
                            );
                        }
                    };
                    let mut locs = regex.capture_locations();
                    if regex.captures_read(&mut locs, &src).is_some() {
                        for (gi, name) in &p.groups {
                            if let Some((s, e)) = locs.get(*gi) {
                                push_sub(caps, &src, name, s..e);
                            }
                        }
                        matched = true;
                        break;
                    }
                }
                if !matched {
                    if *optional {
                        continue;
                    }
                    if first {
                        return StepsResult::NotApplicable;
                    }
                    return StepsResult::Failed(
                        FailReason::NoMatch,
                        format!("parse[{i}] regex did not match"),
                    );
                }
            }
            Step::Kv {
                flags,
                separator,
                delimiter,
                ..
            } => {
                let mut flag_words: Option<String> = None;
                let mut any = false;
                match &src {
                    Cow::Borrowed(s) => {
                        for item in kv::parse_with(s, *separator, *delimiter) {
                            any = true;
                            match item {
                                kv::Item::Pair(k, v) => caps.push((k, v)),
                                kv::Item::Flag(f) => add_flag(&mut flag_words, f),
                            }
                        }
                    }
                    Cow::Owned(s) => {
                        for item in kv::parse_with(s, *separator, *delimiter) {
                            any = true;
                            match item {
                                kv::Item::Pair(k, v) => {
                                    // Keys of owned text cannot be borrowed; keep only read ones.
                                    if let Some(k) = d.wanted(k) {
                                        caps.push((k, Cow::Owned(v.into_owned())));
                                    }
                                }
                                kv::Item::Flag(f) => add_flag(&mut flag_words, f),
                            }
                        }
                    }
                }
                if !any && first {
                    return StepsResult::NotApplicable;
                }
                if let Some(words) = flag_words {
                    caps.push((flags.as_str(), Cow::Owned(words)));
                }
            }
            Step::Csv {
                columns,
                separator,
                dash_empty,
                ..
            } => {
                if *dash_empty && src.starts_with('#') {
                    // A W3C header line (`#Fields:`) is not a record.
                    if first {
                        return StepsResult::NotApplicable;
                    }
                    return StepsResult::Failed(FailReason::NoMatch, "w3c header line".into());
                }
                match &src {
                    Cow::Borrowed(s) => {
                        for (name, v) in
                            columns.iter().zip(formats::csv(s, *separator, *dash_empty))
                        {
                            if name != "_" && !name.is_empty() {
                                caps.push((name.as_str(), v));
                            }
                        }
                    }
                    Cow::Owned(s) => {
                        for (name, v) in
                            columns.iter().zip(formats::csv(s, *separator, *dash_empty))
                        {
                            if name != "_" && !name.is_empty() {
                                caps.push((name.as_str(), Cow::Owned(v.into_owned())));
                            }
                        }
                    }
                }
            }
            Step::Cef { .. } | Step::Leef { .. } => {
                let cef = matches!(step, Step::Cef { .. });
                let names: &[&'static str] = if cef {
                    &formats::CEF_HEADER
                } else {
                    &formats::LEEF_HEADER
                };
                let parse: for<'x> fn(
                    &'x str,
                )
                    -> Result<formats::Record<'x>, formats::RecordError> =
                    if cef { formats::cef } else { formats::leef };
                let result = match &src {
                    Cow::Borrowed(s) => parse(s).map(|r| {
                        for (name, v) in names.iter().zip(r.header) {
                            caps.push((name, v));
                        }
                        caps.extend(r.pairs);
                    }),
                    Cow::Owned(s) => parse(s).map(|r| {
                        for (name, v) in names.iter().zip(r.header) {
                            caps.push((name, Cow::Owned(v.into_owned())));
                        }
                        for (k, v) in r.pairs {
                            if let Some(k) = d.wanted(k) {
                                caps.push((k, Cow::Owned(v.into_owned())));
                            }
                        }
                    }),
                };
                match result {
                    Ok(()) => {}
                    Err(formats::RecordError::Absent) if first => {
                        return StepsResult::NotApplicable;
                    }
                    Err(formats::RecordError::Absent) => {
                        return StepsResult::Failed(
                            FailReason::NoMatch,
                            format!("no {} record", step.kind().to_uppercase()),
                        );
                    }
                    Err(formats::RecordError::Truncated(n)) => {
                        return StepsResult::Failed(
                            FailReason::Malformed,
                            format!(
                                "{} header has {n} of {} fields",
                                step.kind().to_uppercase(),
                                names.len()
                            ),
                        );
                    }
                }
            }
            Step::Json { .. } => {
                let trimmed = src.trim_start();
                if !trimmed.starts_with('{') {
                    if first {
                        return StepsResult::NotApplicable;
                    }
                    return StepsResult::Failed(FailReason::NoMatch, "not a JSON object".into());
                }
                match serde_json::from_str::<Value>(trimmed) {
                    Ok(v) => formats::flatten_json(&v, &mut |k, v| {
                        if let Some(k) = d.wanted(k) {
                            caps.push((k, Cow::Owned(v)));
                        }
                    }),
                    Err(e) => {
                        return StepsResult::Failed(
                            FailReason::Malformed,
                            format!("invalid JSON at column {}", e.column()),
                        );
                    }
                }
            }
        }
    }
    StepsResult::Ok
}

fn add_flag(words: &mut Option<String>, flag: &str) {
    match words {
        Some(w) => {
            w.push(' ');
            w.push_str(flag);
        }
        None => *words = Some(flag.to_string()),
    }
}

/// Stores `src[range]` under `name`, borrowing when `src` does.
#[allow(clippy::ptr_arg)] // the Cow itself is needed: borrowed or owned decides the result
fn push_sub<'c>(
    caps: &mut Captures<'c>,
    src: &Cow<'c, str>,
    name: &'c str,
    range: std::ops::Range<usize>,
) {
    let value = match src {
        Cow::Borrowed(s) => s.get(range).map(Cow::Borrowed),
        Cow::Owned(s) => s.get(range).map(|p| Cow::Owned(p.to_string())),
    };
    if let Some(v) = value {
        caps.push((name, v));
    }
}

/// Index of a decoder on an `after:` cycle, if any.
fn find_cycle(children: &[Vec<usize>]) -> Option<usize> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit(n: usize, children: &[Vec<usize>], state: &mut [u8]) -> Option<usize> {
        state[n] = 1;
        for &c in &children[n] {
            match state[c] {
                1 => return Some(c),
                0 => {
                    if let Some(x) = visit(c, children, state) {
                        return Some(x);
                    }
                }
                _ => {}
            }
        }
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; children.len()];
    (0..children.len()).find_map(|n| {
        if state[n] == 0 {
            visit(n, children, &mut state)
        } else {
            None
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
