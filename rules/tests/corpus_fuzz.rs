//! A fuzz-style harness over `Decoders::decode` without extra dependencies:
//! random bytes, and corpus lines mutated byte by byte (flips, deletions,
//! truncations, inserted format markers). Decoding must never panic, must
//! keep the raw line, and must stay fast on every input (a generous bound per
//! line that only a pathological parse would exceed).

use std::path::Path;
use std::time::{Duration, Instant};

use soc_rules::{Decoders, Input};

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus_lines() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.extend(
                    bytes
                        .split(|b| *b == b'\n')
                        .filter(|l| l.len() > 10)
                        .map(<[u8]>::to_vec),
                );
            }
        }
    }
    out
}

const MARKERS: &[&[u8]] = &[
    b"CEF:0|",
    b"LEEF:2.0|",
    b"|",
    b"\"",
    b"=",
    b"{",
    b"<134>1 ",
    b"%ASA-4-106023: ",
    b",",
    b"\\",
    b"date=2024-13-45 time=99:99:99 ",
    b"#Fields:",
    b"\xff\xfe",
    b"\xe2\x82",
];

#[test]
fn decode_never_panics_and_stays_fast() {
    let d = Decoders::builtin();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let lines = corpus_lines();
    assert!(!lines.is_empty(), "no corpus lines");
    let bound = Duration::from_millis(250);
    let check = |raw: &[u8]| {
        let start = Instant::now();
        let ev = d.decode(&Input {
            raw,
            source_type: "",
            agent: "",
            source: "",
            path: "",
            received_ms: 1_735_646_400_000,
        });
        let took = start.elapsed();
        assert!(ev.fields.contains_key("message") && ev.fields.contains_key("event.module"));
        assert!(
            took < bound,
            "{took:?} for {:?}",
            String::from_utf8_lossy(raw)
        );
    };
    for _ in 0..3000 {
        let len = rng.below(400);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&raw);
    }
    for _ in 0..20_000 {
        let mut l = lines[rng.below(lines.len())].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !l.is_empty() => {
                    let i = rng.below(l.len());
                    l[i] = rng.next() as u8;
                }
                1 if !l.is_empty() => {
                    let i = rng.below(l.len());
                    l.remove(i);
                }
                2 => {
                    let cut = rng.below(l.len() + 1);
                    l.truncate(cut);
                }
                _ => {
                    let m = MARKERS[rng.below(MARKERS.len())];
                    let at = rng.below(l.len() + 1);
                    l.splice(at..at, m.iter().copied());
                }
            }
        }
        check(&l);
    }
}
