//! A rule's `contains:` test with 1, 8 and 64 texts, as rules that watch
//! command lines or malware names for many known strings have.
//!
//! One rule, `match: {field: process.command_line, contains: [...]}`, and
//! 1,024 events whose command lines (about 100 bytes) hold none of the
//! texts, so the engine's time is the test's. Run:
//! `cargo bench -p soc-rules --bench conditions`.

use std::fmt::Write as _;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use soc_rules::{Engine, EngineState, Event, RuleSet, SourceFile};

/// The allocator `soc-collector` and `socctl` run the engine with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::Rng;

/// A word of 3 to 10 lower-case letters.
fn word(rng: &mut Rng) -> String {
    let len = 3 + (rng.next() % 8) as usize;
    (0..len)
        .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
        .collect()
}

fn rule(texts: &[String], case_insensitive: bool) -> String {
    let mut list = String::new();
    for t in texts {
        let _ = write!(list, "\"{t}\", ");
    }
    format!(
        "rules:\n  - id: watch\n    title: Watched command line\n    severity: low\n    summary: watched\n    \
         match: {{ field: process.command_line, contains: [{list}], case_insensitive: {case_insensitive} }}\n"
    )
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Command lines of words; the texts looked for are words of digits, so
    // that none is found.
    let events: Vec<Event> = (0..1_024u64)
        .map(|id| {
            let mut line = String::from("C:\\Windows\\System32\\cmd.exe /c");
            while line.len() < 100 {
                line.push(' ');
                line.push_str(&word(&mut rng));
            }
            let fields = serde_json::from_value(serde_json::json!({
                "event.module": "sysmon",
                "process.command_line": line,
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            Event {
                id: id + 1,
                timestamp_ms: 1_735_646_400_000 + id as i64,
                fields,
            }
        })
        .collect();
    let mut g = c.benchmark_group("contains");
    g.throughput(Throughput::Elements(events.len() as u64));
    for n in [1, 8, 64] {
        let texts: Vec<String> = (0..n)
            .map(|i| format!("{}{i}", rng.next() % 10_000))
            .collect();
        for ci in [false, true] {
            let set = RuleSet::from_sources(&[SourceFile::new("r.yml", rule(&texts, ci))])
                .unwrap_or_else(|e| panic!("{e}"));
            let engine = Engine::new(Arc::new(set));
            let id = BenchmarkId::new(if ci { "case_insensitive" } else { "exact" }, n);
            g.bench_function(id, |b| {
                b.iter(|| {
                    let mut state = EngineState::default();
                    events
                        .iter()
                        .map(|e| engine.process(&mut state, e).len())
                        .sum::<usize>()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
