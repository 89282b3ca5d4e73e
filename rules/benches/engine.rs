//! Engine throughput with 10, 100 and 1,000 rules on lines from the bench
//! generator (`../shared/bench/gen_corpus.py`; set `SOC_BENCH_GEN` to its path
//! and `SOC_BENCH_LINES` to the corpus size, default 50,000).
//!
//! The lines are decoded once, outside the measurement; each iteration feeds
//! every event through a fresh `EngineState`. The rule sets are the shipped
//! rules plus generated variants of them (thresholds, distinct counts,
//! single-event tests with text operators, rules of other modules), so the
//! cost of prefiltering by `event.module` and of stateful groups both show.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use soc_rules::{
    Decoders, Engine, EngineState, Event, Input, RuleSet, SourceFile, builtin_list_sources,
    builtin_rule_sources,
};

fn corpus() -> Vec<String> {
    let lines: usize = std::env::var("SOC_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let generator = std::env::var("SOC_BENCH_GEN").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/gen_corpus.py"),
        PathBuf::from,
    );
    let dir = std::env::temp_dir().join(format!("soc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("corpus.log");
    let status = std::process::Command::new("python3")
        .arg(&generator)
        .args(["--lines", &lines.to_string(), "--out"])
        .arg(&out)
        .arg("--truth")
        .arg(dir.join("truth.json"))
        .status()
        .expect("python3 runs the generator");
    assert!(status.success(), "{} failed", generator.display());
    let text = std::fs::read_to_string(&out).expect("corpus written");
    let _ = std::fs::remove_dir_all(&dir);
    text.lines().map(str::to_owned).collect()
}

/// `n` rules: the shipped ones, then generated variants.
fn rule_set(n: usize) -> RuleSet {
    let mut files = builtin_rule_sources();
    let shipped = RuleSet::from_sources_with_lists(&files, &builtin_list_sources())
        .expect("shipped rules load")
        .rules()
        .len();
    let mut text = String::from("rules:\n");
    for i in 0..n.saturating_sub(shipped) {
        let body = match i % 5 {
            0 => format!(
                "    match: {{ all: [ {{ field: event.module, equals: sshd }}, {{ field: event.outcome, equals: failure }}, {{ field: user.name, in: [u{i}, admin, oracle] }} ] }}\n    threshold: {{ count: {}, window: {}s, group_by: [source.ip] }}\n",
                3 + i % 7,
                30 + i % 90
            ),
            1 => format!(
                "    match: {{ all: [ {{ field: event.module, equals: iptables }}, {{ field: event.action, equals: deny }}, {{ field: destination.port, gte: {} }} ] }}\n    threshold: {{ count: {}, distinct: destination.port, window: 60s, group_by: [source.ip] }}\n",
                i % 1000,
                10 + i % 20
            ),
            2 => format!(
                "    match: {{ all: [ {{ field: event.module, equals: clamav }}, {{ field: malware.name, contains: [\"Variant{i}\", \"Mirai\"], case_insensitive: true }} ] }}\n"
            ),
            3 => format!(
                "    match: {{ all: [ {{ field: event.module, equals: module{i} }}, {{ field: message, regex: 'pattern{i} [0-9]+' }} ] }}\n"
            ),
            _ => format!(
                "    match: {{ all: [ {{ field: event.module, equals: iptables }}, {{ field: source.ip, cidr: [10.{}.0.0/16] }} ] }}\n",
                i % 250
            ),
        };
        text.push_str(&format!(
            "  - id: gen-{i}\n    title: Generated {i}\n    severity: low\n{body}    summary: g\n"
        ));
    }
    files.push(SourceFile::new("generated.yml", text));
    let set = RuleSet::from_sources_with_lists(&files, &builtin_list_sources())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.rules().len(), n.max(shipped));
    set
}

fn bench(c: &mut Criterion) {
    let decoders = Decoders::builtin();
    let lines = corpus();
    let events: Vec<Event> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut e = decoders.decode(&Input {
                raw: l.as_bytes(),
                source_type: "",
                agent: "a",
                source: "s",
                path: "p",
                received_ms: 1_735_646_400_000,
            });
            e.id = i as u64 + 1;
            e
        })
        .collect();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    for n in [10usize, 100, 1000] {
        let engine = Engine::new(Arc::new(rule_set(n)));
        g.bench_with_input(BenchmarkId::new("rules", n), &events, |b, events| {
            b.iter(|| {
                let mut state = EngineState::default();
                let mut fired = 0usize;
                for e in events {
                    fired += engine.process(&mut state, e).len();
                }
                fired
            });
        });
    }
    g.finish();
    let mut d = c.benchmark_group("decode");
    d.sample_size(10);
    d.throughput(Throughput::Elements(lines.len() as u64));
    d.bench_function("builtin_decoders", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| {
                    decoders
                        .decode(&Input {
                            raw: l.as_bytes(),
                            source_type: "",
                            agent: "a",
                            source: "s",
                            path: "p",
                            received_ms: 1_735_646_400_000,
                        })
                        .fields
                        .len()
                })
                .sum::<usize>()
        });
    });
    d.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
