//! `in_list:` lookups of addresses in lists of 10 to 100,000 networks, as
//! threat-intelligence feeds (FireHOL, Spamhaus DROP, abuse.ch) are.
//!
//! Each list holds random IPv4 networks from /16 to /32 and a few IPv6 ones.
//! One iteration looks up 1,024 addresses, a quarter of them inside a
//! network of the list. Run: `cargo bench -p soc-rules --bench lists`.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use soc_rules::{Lists, SourceFile};

/// The allocator `soc-collector` and `socctl` run the engine with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::Rng;

/// A list file of `n` networks, and the first address of each.
fn list_text(n: usize, rng: &mut Rng) -> (String, Vec<u32>) {
    let mut text = String::from("# generated\n");
    let mut starts = Vec::with_capacity(n);
    for i in 0..n {
        if i % 50 == 49 {
            let _ = writeln!(text, "2001:db8:{:x}::/48", rng.next() % 0xffff);
            continue;
        }
        let prefix = 16 + (rng.next() % 17) as u32;
        let addr = (rng.next() as u32) & (u32::MAX << (32 - prefix));
        starts.push(addr);
        let ip = std::net::Ipv4Addr::from(addr);
        if prefix == 32 {
            let _ = writeln!(text, "{ip}");
        } else {
            let _ = writeln!(text, "{ip}/{prefix}");
        }
    }
    (text, starts)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("list_lookup");
    for n in [10, 1_000, 100_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let (text, starts) = list_text(n, &mut rng);
        let lists = Lists::from_sources(&[SourceFile::new("blocklist-ip.txt", &text)])
            .unwrap_or_else(|e| panic!("{e}"));
        let list = lists
            .get("blocklist-ip")
            .unwrap_or_else(|| panic!("the list is loaded"));
        let addresses: Vec<String> = (0..1_024)
            .map(|i| {
                let a = if i % 4 == 0 {
                    starts[(rng.next() as usize) % starts.len()]
                } else {
                    rng.next() as u32
                };
                std::net::Ipv4Addr::from(a).to_string()
            })
            .collect();
        let hits = addresses.iter().filter(|a| list.contains(a)).count();
        eprintln!(
            "list_lookup/{n}: {hits} of {} addresses listed",
            addresses.len()
        );
        g.throughput(Throughput::Elements(addresses.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(n),
            &addresses,
            |b, addresses| {
                b.iter(|| {
                    addresses
                        .iter()
                        .filter(|a| list.contains(black_box(a)))
                        .count()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
