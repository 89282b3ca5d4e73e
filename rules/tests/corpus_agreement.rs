//! Agreement with other projects' expected output over the whole shared
//! corpus (`../shared/corpus`, see its MANIFEST.md).
//!
//! For every format folder this test decodes every sample line and prints
//! one row: how many lines were decoded (a product decoder applied and no
//! `decode.error`), how many a product decoder took but flagged with a
//! `decode.error` because a value in them could not be read (for example an
//! anonymised `a.b.c.d` address; listed under the table), how many no
//! product decoder recognised at all (left `unknown`), and — where the
//! sample's own project ships expected fields — how many of the compared
//! fields agree with ours.
//! It fails when a format drops below the level recorded in
//! `tests/corpus-levels.txt`, and when any sample line is left `unknown`.
//!
//! # The documented mapping
//!
//! * **elastic/integrations** `*-expected.json`: the ECS documents are
//!   flattened to dotted names and compared field by field for the fields in
//!   [`ELASTIC_COMPARED`] that the expected document has (a field we do not
//!   emit counts as a disagreement). Text is compared case-insensitively;
//!   IPs in canonical form; numbers as text. `@timestamp` is compared as an
//!   instant in UTC without the year, because for year-less syslog lines both
//!   pipelines take the year from the time of reading. A time written
//!   without a zone is read as UTC by soc (unless the decoder says
//!   otherwise) but in the test config's `tz_offset` by elastic; such a
//!   value also agrees when its wall-clock time equals ours and its offset
//!   is that `tz_offset` (panw: `+09:30`, from the MANIFEST, the config was
//!   not copied). `event.action` is not
//!   compared: soc normalises it to `allow`/`deny`, elastic keeps the
//!   vendor's word.
//! * **crowdsec** `parser.assert`: the `s01-parse` stage's
//!   `Evt.Parsed[...]`/`Evt.Meta[...]` values, renamed by [`crowdsec_field`];
//!   `action` is compared after normalising both to allow/deny. A line for
//!   which every `s01-parse` parser that saw it asserts `Success == false` is
//!   a negative sample (iptables-logs line 3 renames `IN=` to `XX=` for that
//!   purpose): it is not counted under "lines decoded" but in the
//!   "rejected" column, and the test fails if we decode it.
//! * **wazuh** `.ini`: Wazuh asserts decoder names and rule ids, not fields;
//!   the lines only count towards "lines decoded".
//! * Samples without expected output (plaso, netint) count towards "lines
//!   decoded" only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use soc_rules::{Decoders, Event, Input, UNKNOWN_MODULE};

const RECEIVED_MS: i64 = 1_735_646_400_000;

/// ECS fields compared with elastic's expected documents.
const ELASTIC_COMPARED: &[&str] = &[
    "@timestamp",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "network.transport",
    "user.name",
    "event.outcome",
    "rule.name",
    "file.path",
    "url.original",
    "observer.ingress.interface.name",
    "observer.egress.interface.name",
    "observer.serial_number",
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// Text of a sample file; UTF-16LE files (with BOM) are converted.
fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if bytes.starts_with(&[0xff, 0xfe]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn sample_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The records of an exported JSON file, each as the one-line JSON object an
/// agent ships: the elements of an `events` array (PowerShell
/// `Get-WinEvent | ConvertTo-Json` wrapped by elastic's test), of a top-level
/// array, or the one object (evtx_dump).
fn json_records(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return sample_lines(text);
    };
    let items = match v {
        Value::Object(mut m) if m.get("events").is_some_and(Value::is_array) => {
            match m.remove("events") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            }
        }
        Value::Array(a) => a,
        other => vec![other],
    };
    items.iter().map(Value::to_string).collect()
}

fn decode(d: &Decoders, line: &str) -> Event {
    let input = Input {
        raw: line.as_bytes(),
        source_type: "",
        agent: "test",
        source: "corpus",
        path: "",
        received_ms: RECEIVED_MS,
    };
    let ev = d.decode(&input);
    // The shipped decoders loaded as `socctl rules test --replay` loads
    // them, each regex compiled when a line first reaches it, decode every
    // line the same.
    static DEFERRED: std::sync::LazyLock<Decoders> = std::sync::LazyLock::new(|| {
        Decoders::from_sources_deferred(&soc_rules::builtin_decoder_sources())
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let deferred = DEFERRED.decode(&input);
    assert_eq!(
        (deferred.timestamp_ms, &deferred.fields),
        (ev.timestamp_ms, &ev.fields),
        "{line}"
    );
    ev
}

fn decoded(ev: &Event) -> bool {
    ev.get_str("event.module") != Some(UNKNOWN_MODULE) && !ev.fields.contains_key("decode.error")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 => text(&a[0]),
        other => other.to_string(),
    }
}

fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                flatten(v, &key, out);
            } else {
                out.insert(key, v.clone());
            }
        }
    }
}

/// The time zone elastic's pipeline test applies to times written without
/// one: `tz_offset` of the folder's `test-common-config.yml`, or for the
/// panw sample, whose config was not copied, the `+09:30` the MANIFEST
/// states.
fn elastic_tz(dir: &Path) -> Option<chrono::FixedOffset> {
    let text = std::fs::read_to_string(dir.join("test-common-config.yml")).ok();
    let raw = match text {
        Some(t) => t
            .lines()
            .find_map(|l| l.trim().strip_prefix("tz_offset:").map(str::trim))
            .map(|v| v.trim_matches('"').to_string())?,
        None if dir.parent().is_some_and(|p| p.ends_with("paloalto")) => "+09:30".into(),
        None => return None,
    };
    let t = format!("2000-01-01T00:00:00{}", raw.replace("UTC", "Z"));
    chrono::DateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%#z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&t))
        .ok()
        .map(|d| *d.offset())
}

/// Whether our `@timestamp` (a zone-less time read as UTC) is the same wall
/// clock time as elastic's, which applied its test config's `tz` to it.
fn same_wall_clock(ours: &str, theirs: &str, tz: Option<chrono::FixedOffset>) -> bool {
    let (Some(tz), Ok(o), Ok(t)) = (
        tz,
        chrono::DateTime::parse_from_rfc3339(ours),
        chrono::DateTime::parse_from_rfc3339(theirs),
    ) else {
        return false;
    };
    t.offset() == &tz && o.naive_utc() == t.naive_local()
}

fn same(field: &str, ours: &str, theirs: &str) -> bool {
    if field == "@timestamp" {
        let norm = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%m-%dT%H:%M:%S")
                    .to_string()
            })
        };
        return norm(ours).is_some() && norm(ours) == norm(theirs);
    }
    if field.ends_with(".ip") {
        let p = |s: &str| s.parse::<std::net::IpAddr>().ok();
        return p(ours).is_some() && p(ours) == p(theirs);
    }
    ours.trim().eq_ignore_ascii_case(theirs.trim())
}

/// allow / deny for a vendor's verdict word, if it is one.
fn verdict(s: &str) -> Option<&'static str> {
    match s.to_ascii_lowercase().as_str() {
        "pass" | "accept" | "allow" | "allowed" | "a" => Some("allow"),
        "block" | "drop" | "deny" | "denied" | "reject" | "d" | "r" => Some("deny"),
        _ => None,
    }
}

/// crowdsec's name for a field → ours.
fn crowdsec_field(name: &str) -> Option<&'static str> {
    Some(match name {
        "src_ip" | "source_ip" => "source.ip",
        "dst_ip" => "destination.ip",
        "src_port" => "source.port",
        "dst_port" => "destination.port",
        "proto" => "network.transport",
        "username" | "target_user" | "user" => "user.name",
        "int_eth" | "iface" | "if_in" => "observer.ingress.interface.name",
        "action" => "event.action",
        _ => return None,
    })
}

#[derive(Default)]
struct Row {
    lines: usize,
    decoded: usize,
    /// Lines no product decoder recognised (`event.module: unknown`).
    unknown: usize,
    /// Lines a product decoder took but flagged with a `decode.error` (a
    /// value in them could not be read).
    flagged: usize,
    compared: usize,
    agreed: usize,
    misses: Vec<String>,
    /// Sample lines not decoded cleanly (first few): unknown, or taken by a
    /// product decoder with a `decode.error`.
    undecoded: Vec<String>,
    /// Lines the sample's own project asserts no parser accepts (crowdsec
    /// `Success == false` from every `s01-parse` parser that saw the line).
    negatives: usize,
    /// Of those, the ones we did not decode either.
    negatives_rejected: usize,
    /// Negative lines we decoded anyway (first few).
    accepted_negatives: Vec<String>,
}

impl Row {
    fn line(&mut self, ev: &Event) {
        self.lines += 1;
        if decoded(ev) {
            self.decoded += 1;
            return;
        }
        let unknown = ev.get_str("event.module") == Some(UNKNOWN_MODULE);
        if unknown {
            self.unknown += 1;
        } else {
            self.flagged += 1;
        }
        if self.undecoded.len() < max_misses() {
            let msg = ev.get_str("message").unwrap_or_default();
            let why = ev.get_str("decode.error").unwrap_or("no decoder");
            let how = if unknown {
                "unknown".to_string()
            } else {
                format!(
                    "decoded by {} with an error",
                    ev.get_str("event.module").unwrap_or_default()
                )
            };
            self.undecoded.push(format!(
                "{how}: {why}: {}",
                msg.chars().take(160).collect::<String>()
            ));
        }
    }
    /// A line its project expects to be rejected: it does not count as a
    /// sample line; decoding it is a failure of its own.
    fn negative(&mut self, ev: &Event) {
        self.negatives += 1;
        if decoded(ev) {
            let msg = ev.get_str("message").unwrap_or_default();
            self.accepted_negatives
                .push(msg.chars().take(160).collect::<String>());
        } else {
            self.negatives_rejected += 1;
        }
    }
    fn field(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.compared += 1;
        if ok {
            self.agreed += 1;
        } else if self.misses.len() < max_misses() {
            self.misses.push(what());
        }
    }
    fn decoded_pct(&self) -> f64 {
        pct(self.decoded, self.lines)
    }
    fn field_pct(&self) -> Option<f64> {
        (self.compared > 0).then(|| pct(self.agreed, self.compared))
    }
}

/// How many disagreements to print per format (`SOC_CORPUS_MISSES`, default 8).
fn max_misses() -> usize {
    std::env::var("SOC_CORPUS_MISSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn elastic(d: &Decoders, dir: &Path, row: &mut Row) {
    let tz = elastic_tz(dir);
    for log in files(dir) {
        let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let expected = dir.join(format!("{name}-expected.json"));
        if !expected.is_file() {
            if name.ends_with(".json") && !name.ends_with("-expected.json") {
                // Exported events (Defender): one compact JSON object each.
                for l in json_records(&read_text(&log)) {
                    row.line(&decode(d, &l));
                }
            } else if name.ends_with(".log") {
                // Input without a golden file (upstream skips it): decode only.
                for l in sample_lines(&read_text(&log)) {
                    row.line(&decode(d, &l));
                }
            }
            continue;
        }
        let docs: Value = serde_json::from_str(&read_text(&expected)).expect("expected json");
        let docs = docs["expected"].as_array().cloned().unwrap_or_default();
        let lines = sample_lines(&read_text(&log));
        if !name.ends_with(".log") {
            continue; // JSON inputs (Defender) are handled by their own decoders' tests
        }
        assert_eq!(lines.len(), docs.len(), "{}", log.display());
        for (i, (line, doc)) in lines.iter().zip(&docs).enumerate() {
            let ev = decode(d, line);
            row.line(&ev);
            let mut flat = BTreeMap::new();
            flatten(doc, "", &mut flat);
            for field in ELASTIC_COMPARED {
                let Some(want) = flat.get(*field) else {
                    continue;
                };
                let want = text(want);
                let got = ev.fields.get(field).map(text).unwrap_or_default();
                let ok = same(field, &got, &want)
                    || (*field == "@timestamp" && same_wall_clock(&got, &want, tz));
                row.field(ok, || {
                    format!("{name}:{} {field}: ours {got:?}, elastic {want:?}", i + 1)
                });
            }
        }
    }
}

fn crowdsec(d: &Decoders, dir: &Path, row: &mut Row) {
    let Some(log) = files(dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
    else {
        return;
    };
    let lines = sample_lines(&read_text(&log));
    let events: Vec<Event> = lines.iter().map(|l| decode(d, l)).collect();
    let assert_file = dir.join("parser.assert");
    let asserts = if assert_file.is_file() {
        read_text(&assert_file)
    } else {
        String::new()
    };
    let (lines_of, success) = parser_lines(&asserts, lines.len());
    for (i, ev) in events.iter().enumerate() {
        // What the parsers that saw line `i` concluded about it.
        let verdicts: Vec<bool> = lines_of
            .iter()
            .filter_map(|(p, seen)| {
                let k = seen.iter().position(|&l| l == i)?;
                success.get(&(p.clone(), k)).copied()
            })
            .collect();
        if !verdicts.is_empty() && verdicts.iter().all(|ok| !ok) {
            row.negative(ev);
        } else {
            row.line(ev);
        }
    }
    if asserts.is_empty() {
        return;
    }
    let re = regex::Regex::new(
        r#"^results\["s01-parse"\]\["([^"]+)"\]\[(\d+)\]\.Evt\.(?:Parsed|Meta)\["([^"]+)"\] == "(.*)"$"#,
    )
    .expect("valid");
    for a in asserts.lines() {
        let Some(c) = re.captures(a) else { continue };
        let nth = c[2].parse::<usize>().unwrap_or(usize::MAX);
        let Some(&i) = lines_of.get(&c[1]).and_then(|l| l.get(nth)) else {
            continue;
        };
        let (name, want) = (&c[3], &c[4]);
        let Some(field) = crowdsec_field(name) else {
            continue;
        };
        let Some(ev) = events.get(i) else { continue };
        let got = ev.fields.get(field).map(text).unwrap_or_default();
        let ok = if field == "event.action" {
            match verdict(want) {
                Some(v) => got == v,
                None => continue,
            }
        } else {
            same(field, &got, want)
        };
        row.field(ok, || {
            format!(
                "{}:{} {name}→{field}: ours {got:?}, crowdsec {want:?}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                i + 1
            )
        });
    }
}

/// For each `s01-parse` parser, the sample lines its results are about.
///
/// crowdsec numbers a parser's results by the events that reached it: the
/// parsers of a stage are tried in order and an event stops at the first
/// that succeeds with `onsuccess: next_stage`. So a parser with a result for
/// every line saw every line; one with fewer saw the lines no earlier parser
/// parsed (`Success == false`), in order.
///
/// Also returns each parser's `Success` per result number.
#[allow(clippy::type_complexity)]
fn parser_lines(
    asserts: &str,
    n_lines: usize,
) -> (
    BTreeMap<String, Vec<usize>>,
    BTreeMap<(String, usize), bool>,
) {
    let len_re = regex::Regex::new(r#"^len\(results\["s01-parse"\]\["([^"]+)"\]\) == (\d+)$"#)
        .expect("valid");
    let ok_re = regex::Regex::new(
        r#"^results\["s01-parse"\]\["([^"]+)"\]\[(\d+)\]\.Success == (true|false)$"#,
    )
    .expect("valid");
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut success: BTreeMap<(String, usize), bool> = BTreeMap::new();
    for a in asserts.lines() {
        if let Some(c) = len_re.captures(a) {
            order.push((c[1].to_string(), c[2].parse().unwrap_or(0)));
        } else if let Some(c) = ok_re.captures(a) {
            let i = c[2].parse().unwrap_or(usize::MAX);
            success.insert((c[1].to_string(), i), &c[3] == "true");
        }
    }
    let mut out = BTreeMap::new();
    let mut remaining: Vec<usize> = (0..n_lines).collect();
    for (parser, n) in order {
        // A parser that reports a result for every line saw every line (it
        // does not stop the stage on success, like pf-logs and pf-logs-drop).
        let seen: Vec<usize> = if n == n_lines {
            (0..n_lines).collect()
        } else {
            remaining.iter().copied().take(n).collect()
        };
        let rest: Vec<usize> = remaining.iter().copied().skip(n).collect();
        remaining = seen
            .iter()
            .enumerate()
            .filter(|(k, _)| !success.get(&(parser.clone(), *k)).copied().unwrap_or(false))
            .map(|(_, &l)| l)
            .chain(rest)
            .collect();
        out.insert(parser, seen);
    }
    (out, success)
}

fn wazuh(d: &Decoders, dir: &Path, row: &mut Row) {
    for ini in files(dir) {
        for raw in read_text(&ini).lines() {
            // `fail` marks a Wazuh rule expectation that does not hold; the
            // line itself is as genuine a sample as a `pass` line.
            let line = raw
                .split_once(" pass = ")
                .or_else(|| raw.split_once(" fail = "))
                .filter(|(head, _)| head.starts_with("log "));
            if let Some((_, line)) = line {
                row.line(&decode(d, line));
            }
        }
    }
}

fn plain(d: &Decoders, dir: &Path, row: &mut Row) {
    for f in files(dir) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".json") {
            for l in json_records(&read_text(&f)) {
                row.line(&decode(d, &l));
            }
            continue;
        }
        // Configuration, documentation and output schemas are not logs.
        if [".yml", ".yaml", ".md", ".schema"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            continue;
        }
        for l in sample_lines(&read_text(&f)) {
            row.line(&decode(d, &l));
        }
    }
}

fn levels() -> BTreeMap<String, (f64, Option<f64>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-levels.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = l.split_whitespace().collect();
        let parse = |s: &str| -> f64 {
            s.parse()
                .unwrap_or_else(|_| panic!("{}:{}: `{s}` is not a number", path.display(), n + 1))
        };
        match parts.as_slice() {
            [fmt, dec, field] => {
                let field = (*field != "-").then(|| parse(field));
                out.insert(fmt.to_string(), (parse(dec), field));
            }
            _ => panic!(
                "{}:{}: expected `format decoded% field%`",
                path.display(),
                n + 1
            ),
        }
    }
    out
}

#[test]
fn corpus_agreement_table() {
    let root = corpus();
    assert!(
        root.join("MANIFEST.md").is_file(),
        "no corpus at {}",
        root.display()
    );
    let d = Decoders::builtin();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for fmt_dir in files(&root) {
        let fmt = fmt_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !fmt_dir.is_dir() || fmt == "LICENSES" || fmt.starts_with("sigma") {
            continue;
        }
        let row = rows.entry(fmt).or_default();
        for src in files(&fmt_dir) {
            let kind = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            match kind {
                "elastic" => elastic(&d, &src, row),
                "wazuh" => wazuh(&d, &src, row),
                k if k.starts_with("crowdsec") => crowdsec(&d, &src, row),
                "generated" => {}
                _ => plain(&d, &src, row),
            }
        }
    }

    let mut table = String::from(
        "format                  lines  decoded%  flagged  unknown  fields  agree%  rejected\n",
    );
    for (fmt, r) in &rows {
        let agree = r.field_pct().map_or("-".to_string(), |p| format!("{p:.1}"));
        // A format without sample lines proves nothing: say so.
        let decoded = if r.lines == 0 {
            "untested".to_string()
        } else {
            format!("{:.1}", r.decoded_pct())
        };
        let rejected = if r.negatives == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", r.negatives_rejected, r.negatives)
        };
        let _ = writeln!(
            table,
            "{fmt:<22} {:>6}  {decoded:>8}  {:>7}  {:>7}  {:>6}  {agree:>6}  {rejected:>8}",
            r.lines, r.flagged, r.unknown, r.compared
        );
    }
    println!("{table}");
    for (fmt, r) in &rows {
        for m in &r.misses {
            println!("  {fmt}: {m}");
        }
        for u in &r.undecoded {
            println!("  {fmt}: not decoded cleanly: {u}");
        }
        for u in &r.accepted_negatives {
            println!("  {fmt}: decoded a line its project rejects: {u}");
        }
    }

    let mut failures: Vec<String> = rows
        .iter()
        .filter(|(_, r)| !r.accepted_negatives.is_empty())
        .map(|(fmt, r)| {
            format!(
                "{fmt}: decoded {} line(s) its sample's project asserts no parser accepts",
                r.accepted_negatives.len()
            )
        })
        .collect();
    failures.extend(rows.iter().filter(|(_, r)| r.unknown > 0).map(|(fmt, r)| {
        format!(
            "{fmt}: {} sample line(s) left unknown (no product decoder recognised them)",
            r.unknown
        )
    }));
    for (fmt, (dec, field)) in levels() {
        let Some(r) = rows.get(&fmt) else {
            failures.push(format!("{fmt}: recorded but not in the corpus"));
            continue;
        };
        if r.lines == 0 {
            failures.push(format!("{fmt}: no sample lines any more (untested)"));
            continue;
        }
        if r.decoded_pct() + 0.05 < dec {
            failures.push(format!(
                "{fmt}: lines decoded {:.1}% < recorded {dec}%",
                r.decoded_pct()
            ));
        }
        if let Some(f) = field
            && r.field_pct().unwrap_or(0.0) + 0.05 < f
        {
            failures.push(format!(
                "{fmt}: field agreement {:.1}% < recorded {f}%",
                r.field_pct().unwrap_or(0.0)
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
