//! Decode throughput: the shipped decoders per format and on the mixed
//! corpus of `../shared/bench`, side by side with a plain `regex` baseline
//! (one compiled regex applied to each line) on the same lines. `soc`
//! decodes every field (as the collector does); `soc_projected` only the
//! fields the shipped rules read (as `socctl rules test --replay` does).
//!
//! The mixed corpus is read at bench time from `SOC_BENCH_CORPUS` (default
//! `/tmp/mixed.log`); when it is absent it is generated with
//! `python3 ../shared/bench/gen_corpus.py --lines 200000 --out <path>
//! --truth <path>.truth.json`. The per-format sets are the sample files of
//! `../shared/corpus`, read in place.
//!
//! Criterion reports time per iteration and elements/s; one iteration decodes
//! every line of the set once on one thread, so elements/s is lines/s per
//! core. Run: `cargo bench -p soc-rules --bench decode`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The allocator `soc-collector` and `socctl` run the engine with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use regex::Regex;
use soc_rules::{Decoders, Engine, Input, Projection, RuleSet};

/// 2024-12-31T12:00:00Z: gives the year to RFC 3164 lines.
const RECEIVED_MS: i64 = 1_735_646_400_000;

/// Lines of the mixed corpus decoded per iteration.
const MIXED_LINES: usize = 50_000;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// The mixed corpus lines, generated first when the file is missing.
fn mixed_lines() -> Vec<String> {
    let path = PathBuf::from(
        std::env::var("SOC_BENCH_CORPUS").unwrap_or_else(|_| "/tmp/mixed.log".to_string()),
    );
    if !path.is_file() {
        let script = shared().join("bench/gen_corpus.py");
        let truth = path.with_extension("truth.json");
        eprintln!(
            "{} is missing: generating it with {}",
            path.display(),
            script.display()
        );
        let status = Command::new("python3")
            .arg(&script)
            .args(["--lines", "200000", "--out"])
            .arg(&path)
            .arg("--truth")
            .arg(&truth)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "no mixed corpus at {} and `python3 {} ...` failed ({other:?}); \
                 generate it by hand or set SOC_BENCH_CORPUS",
                path.display(),
                script.display()
            ),
        }
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the mixed corpus {}: {e}", path.display()));
    text.lines().take(MIXED_LINES).map(str::to_string).collect()
}

/// Sample lines of one corpus format (its log files, and the `pass`/`fail`
/// lines of Wazuh `.ini` files). UTF-16LE files are converted like the agent
/// does.
fn corpus_lines(format: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![shared().join("corpus").join(format)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let text = if bytes.starts_with(&[0xff, 0xfe]) {
                let units: Vec<u16> = bytes[2..]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            if name.ends_with(".ini") {
                out.extend(text.lines().filter_map(|l| {
                    l.split_once(" pass = ")
                        .or_else(|| l.split_once(" fail = "))
                        .map(|(_, v)| v.to_string())
                }));
            } else if name.ends_with(".log") || name.ends_with(".txt") || name.ends_with(".Log") {
                out.extend(
                    text.lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
    out
}

/// Decodes every line, into every field or into those `only` keeps.
fn decode_all(d: &Decoders, lines: &[String], only: Option<&Projection>) -> usize {
    let mut n = 0;
    for l in lines {
        let input = Input {
            raw: l.as_bytes(),
            source_type: "",
            agent: "bench",
            source: "bench",
            path: "",
            received_ms: RECEIVED_MS,
        };
        let ev = match only {
            Some(p) => d.decode_projected(&input, p),
            None => d.decode(&input),
        };
        n += ev.fields.len();
    }
    n
}

/// The baseline: one compiled regex per line (a syslog header plus the first
/// `key=value`), with captures, as a hand-written single-format parser would.
fn baseline(re: &Regex, lines: &[String]) -> usize {
    let mut locs = re.capture_locations();
    let mut n = 0;
    for l in lines {
        if re.captures_read(&mut locs, l).is_some() {
            n += locs.len();
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let decoders = Decoders::builtin();
    let engine = Engine::new(std::sync::Arc::new(RuleSet::builtin()));
    let projection = decoders.projection(engine.fields_read().iter().copied());
    let re = Regex::new(
        r"^(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) (?P<prog>[^:\[\s]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*?(?:SRC=(?P<src>\S+))?.*)$",
    )
    .expect("valid baseline regex");

    let mut sets: Vec<(String, Vec<String>)> = vec![("mixed".to_string(), mixed_lines())];
    for format in [
        "iptables",
        "pfsense-pf-filterlog",
        "fortigate",
        "cisco-asa",
        "paloalto",
        "sophos-xg",
        "checkpoint",
        "windows-firewall",
        "clamav",
        "sophos-av",
        "mcafee",
        "symantec-endpoint",
    ] {
        let lines = corpus_lines(format);
        if !lines.is_empty() {
            sets.push((format.to_string(), lines));
        }
    }

    let mut group = c.benchmark_group("decode");
    for (name, lines) in &sets {
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_with_input(BenchmarkId::new("soc", name), lines, |b, lines| {
            b.iter(|| black_box(decode_all(&decoders, lines, None)))
        });
        group.bench_with_input(
            BenchmarkId::new("soc_projected", name),
            lines,
            |b, lines| b.iter(|| black_box(decode_all(&decoders, lines, Some(&projection)))),
        );
        group.bench_with_input(
            BenchmarkId::new("regex_baseline", name),
            lines,
            |b, lines| b.iter(|| black_box(baseline(&re, lines))),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
