//! Engine throughput with 10, 100 and 1,000 rules on lines from the bench
//! generator (`../shared/bench/gen_corpus.py`; set `SOC_BENCH_GEN` to its path
//! and `SOC_BENCH_LINES` to the corpus size, default 50,000).
//!
//! The lines are decoded once, outside the measurement; each iteration feeds
//! every event through a fresh `EngineState`. The `engine` group reads the
//! events from memory as they lie after decoding them all; `engine_fresh`
//! copies each 64 events just before the engine takes them (outside the
//! time counted), so they are in the cache, as an event just decoded is in
//! the collector.
//!
//! The rule sets are the shipped rules plus generated ones (see
//! [`generated_rule`]): ten families over the corpus's own log sources,
//! with values that vary from rule to rule, so a prefilter cannot fold them
//! into one.
//!
//! * `rules/N` draws the values from what the corpus is full of
//!   ([`CORPUS_VOCAB`]): most rules match some events and many match often,
//!   so matches and detections per event grow with the rule count (the
//!   harder case for an engine, whose cost follows the matches).
//! * `site_rules/N` draws them from what a site's own rules watch for and
//!   the corpus mostly lacks ([`SITE_VOCAB`]): the same structure, with
//!   matches per event closer to those of the shipped set, as in large real
//!   rule sets where most rules wait for something rare.
//!
//! Before measuring, the bench prints how many rules of each set matched at
//! least one event, how many rule matches an event has on average and how
//! many detections one pass raises, so the two kinds can be compared and a
//! change of the generator that makes rules dead shows. `SOC_BENCH_DESCRIBE=0`
//! leaves that out, so that a profiler sees only the measured engine.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The allocator `soc-collector` and `socctl` run the engine with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use soc_rules::{
    Decoders, Engine, EngineState, Event, Input, RuleKind, RuleSet, SourceFile,
    builtin_list_sources, builtin_rule_sources,
};

/// A corpus line as an agent would send it.
fn input(line: &str) -> Input<'_> {
    Input {
        raw: line.as_bytes(),
        source_type: "",
        agent: "a",
        source: "s",
        path: "p",
        received_ms: 1_735_646_400_000,
    }
}

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

/// `n` rules: the shipped ones (20 today; so `n = 10` runs exactly the
/// shipped set), then `n - shipped` generated rules built by
/// [`generated_rule`] with the values of `vocab`.
fn rule_set(n: usize, vocab: &Vocab) -> RuleSet {
    let mut files = builtin_rule_sources();
    let shipped = RuleSet::from_sources_with_lists(&files, &builtin_list_sources())
        .expect("shipped rules load")
        .rules()
        .len();
    let mut text = String::from("rules:\n");
    for i in 0..n.saturating_sub(shipped) {
        text.push_str(&format!(
            "  - id: gen-{i}\n    title: Generated {i}\n    severity: low\n{}    summary: g\n",
            generated_rule(i, vocab)
        ));
    }
    files.push(SourceFile::new("generated.yml", text));
    let set = RuleSet::from_sources_with_lists(&files, &builtin_list_sources())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.rules().len(), n.max(shipped));
    set
}

/// Account names as they show up in real rule sets: admin and service
/// accounts, the names scanners try, and site-specific ones that this corpus
/// never has.
const ACCOUNTS: &[&str] = &[
    "root", "admin", "test", "oracle", "user", "ubuntu", "pi", "postgres", "guest", "ftpuser",
    "git", "alice", "bob", "deploy", "ansible", "backup", "nagios", "zabbix", "jenkins",
    "www-data", "mysql", "tomcat", "hadoop", "support", "operator",
];
const HOSTS: &[&str] = &[
    "bastion01",
    "web01",
    "web02",
    "db01",
    "fw01",
    "fw02",
    "ws-alice",
    "mail01",
];
/// Service ports firewall rules watch.
const PORTS: &[u32] = &[
    21, 22, 23, 25, 53, 80, 110, 123, 135, 139, 143, 161, 389, 443, 445, 465, 587, 993, 995, 1433,
    1521, 2049, 2375, 3306, 3389, 5432, 5900, 5985, 6379, 8080, 8443, 9200, 11211, 27017,
];
/// Malware family tokens (the corpus has some of them).
const FAMILIES: &[&str] = &[
    "Trojan",
    "Mirai",
    "Phishing",
    "Eicar",
    "Dropper",
    "Downloader",
    "Nemucod",
    "Agent",
    "Emotet",
    "Qakbot",
    "CobaltStrike",
    "Ransom",
    "Coinminer",
    "Webshell",
    "Backdoor",
    "Exploit",
];
const EXTENSIONS: &[&str] = &[
    ".exe", ".js", ".docm", ".zip", ".scr", ".vbs", ".ps1", ".hta", "/bot",
];

/// The values generated rules name.
struct Vocab {
    accounts: &'static [&'static str],
    hosts: &'static [&'static str],
    ports: &'static [u32],
    families: &'static [&'static str],
    extensions: &'static [&'static str],
}

/// Values drawn from what the corpus is full of: most generated rules
/// match some events, and many match often (the `rules` benchmarks).
const CORPUS_VOCAB: Vocab = Vocab {
    accounts: ACCOUNTS,
    hosts: HOSTS,
    ports: PORTS,
    families: FAMILIES,
    extensions: EXTENSIONS,
};

/// Values of a site's own rules, which this corpus mostly lacks (its
/// accounts, hosts, industrial-control ports, malware it fears): the same
/// ten families, but like most rules of a large real set, most of them
/// wait for something that rarely happens (the `site_rules` benchmarks).
/// The sequences' first step names no value, so it still matches every
/// unknown-account login.
const SITE_VOCAB: Vocab = Vocab {
    accounts: &[
        "svc-backup",
        "sapadm",
        "db2inst1",
        "informix",
        "jboss",
        "weblogic",
        "splunk",
        "kafka",
        "zookeeper",
        "gitlab-runner",
        "helpdesk",
        "scanner",
        "root",
    ],
    hosts: &[
        "dc01", "dc02", "erp01", "hr-app01", "gis01", "vpn01", "proxy01", "web01",
    ],
    ports: &[102, 502, 1883, 2404, 4840, 20000, 44818, 47808, 5060, 3389],
    families: &[
        "Industroyer",
        "Triton",
        "Havex",
        "BlackEnergy",
        "Stuxnet",
        "Pipedream",
        "Eicar",
    ],
    extensions: &[".iso", ".lnk", ".one", ".chm", ".jar", ".exe"],
};

/// Generated rule `i` (the lines after `severity:`), one of ten families
/// (`i % 10`) modelled on what real rule sets hold for the corpus's log
/// sources (sshd, netfilter, ClamAV, generic syslog). Values vary with `i`
/// (`v = i / 10` picks from the vocabularies above, or makes up ports,
/// networks and names), so no two rules are the same; each family matches
/// some events of the corpus and most rules match few, like real rules:
///
/// 0. sshd: failed login for one of two named accounts (single event).
/// 1. sshd: 3-10 failed logins on one host within 1-15 min, grouped by
///    source address, account, or both (threshold).
/// 2. sshd: successful login of a named account with a given method.
/// 3. netfilter: denied connection to a service port or one of two ports
///    out of 1-10,000 (single event).
/// 4. netfilter: per source, denied connections to one service port
///    (count threshold), or, every other rule, distinct destinations on it
///    (host sweep).
/// 5. netfilter: denied traffic from one /8 network to a service port.
/// 6. ClamAV: malware of a family (`contains`, case-insensitive), or a file
///    with a given extension (`ends_with`).
/// 7. ClamAV: 2-5 detections of a family on one host within 10-60 min.
/// 8. Generic syslog (no module): a program's message on one host with a
///    word (`contains`) or, every third rule, a pattern (`regex`).
/// 9. sshd: an unknown account, then a failed password for a given account
///    from the same address within 1-10 min (sequence).
fn generated_rule(i: usize, vocab: &Vocab) -> String {
    let Vocab {
        accounts,
        hosts,
        ports,
        families,
        extensions,
    } = vocab;
    let v = i / 10;
    let account = |k: usize| accounts[k % accounts.len()];
    let host = hosts[v % hosts.len()];
    let port = ports[v % ports.len()];
    let family = families[v % families.len()];
    let ssh_fail = "{ field: event.module, equals: sshd }, { field: event.action, equals: ssh_login }, { field: event.outcome, equals: failure }";
    match i % 10 {
        0 => format!(
            "    match: {{ all: [ {ssh_fail}, {{ field: user.name, in: [{}, {}] }} ] }}\n",
            account(v),
            account(v * 7 + 3)
        ),
        1 => {
            let by = ["[source.ip]", "[user.name]", "[source.ip, user.name]"][v % 3];
            format!(
                "    match: {{ all: [ {ssh_fail}, {{ field: host.name, equals: {host} }} ] }}\n    threshold: {{ count: {}, window: {}m, group_by: {by} }}\n",
                3 + v % 8,
                1 + v % 15
            )
        }
        2 => format!(
            "    match: {{ all: [ {{ field: event.module, equals: sshd }}, {{ field: event.outcome, equals: success }}, {{ field: user.name, equals: {} }}, {{ field: sshd.method, equals: {} }} ] }}\n",
            account(v % 8 + 11),
            ["publickey", "publickey", "password"][v % 3]
        ),
        3 => format!(
            "    match: {{ all: [ {{ field: event.module, equals: iptables }}, {{ field: event.action, equals: deny }}, {{ field: destination.port, in: [{}, {}, {}] }} ] }}\n",
            ports[(v + 7) % ports.len()],
            1 + (v * 7919 + 13) % 10_000,
            1 + (v * 104_729 + 101) % 10_000
        ),
        4 if v.is_multiple_of(2) => format!(
            "    match: {{ all: [ {{ field: event.module, equals: iptables }}, {{ field: event.action, equals: deny }}, {{ field: destination.port, equals: {port} }} ] }}\n    threshold: {{ count: {}, window: {}s, group_by: [source.ip] }}\n",
            3 + v % 10,
            30 + (v * 30) % 600
        ),
        4 => format!(
            "    match: {{ all: [ {{ field: event.category, equals: network }}, {{ field: event.action, equals: deny }}, {{ field: destination.port, equals: {port} }} ] }}\n    threshold: {{ count: {}, distinct: destination.ip, window: {}s, group_by: [source.ip, destination.port] }}\n",
            5 + v % 10,
            60 + (v * 60) % 600
        ),
        5 => format!(
            "    match: {{ all: [ {{ field: event.module, equals: iptables }}, {{ field: event.action, equals: deny }}, {{ field: source.ip, cidr: [{}.0.0.0/8] }}, {{ field: destination.port, in: [{port}, {}] }} ] }}\n",
            1 + (v * 89) % 223,
            ports[(v + 5) % ports.len()]
        ),
        6 if v.is_multiple_of(2) => format!(
            "    match: {{ all: [ {{ field: event.module, equals: clamav }}, {{ field: event.action, equals: malware_detected }}, {{ field: malware.name, contains: [\"{family}\", \"{}-{v}\"], case_insensitive: true }} ] }}\n",
            families[(v + 3) % families.len()]
        ),
        6 => format!(
            "    match: {{ all: [ {{ field: event.module, equals: clamav }}, {{ field: file.path, ends_with: [\"{}\", \"{}\"] }} ] }}\n",
            extensions[v % extensions.len()],
            extensions[(v * 5 + 1) % extensions.len()]
        ),
        7 => format!(
            "    match: {{ all: [ {{ field: event.module, equals: clamav }}, {{ field: event.action, equals: malware_detected }}, {{ field: malware.name, contains: \"{family}\", case_insensitive: true }} ] }}\n    threshold: {{ count: {}, window: {}m, group_by: [host.name] }}\n",
            2 + v % 4,
            10 + (v * 10) % 50
        ),
        8 => {
            let d = v % 10;
            let (program, word, pattern) = match v % 5 {
                0 => (
                    "CRON",
                    "debian-sa1",
                    format!(r"CMD \(.*debian-sa1 [0-9] {d}"),
                ),
                1 => ("systemd", "scope", format!(r"session-[0-9]*{d}\.scope")),
                2 => (
                    "postfix/smtpd",
                    "unknown",
                    format!(r"connect from unknown\[{d}[0-9]*\."),
                ),
                3 => ("systemd", "Session", format!(r"Session [0-9]*{d} of User")),
                _ => (
                    "systemd",
                    "Deactivated",
                    format!(r"[a-z]{{{d},}}\.service: Deactivated"),
                ),
            };
            let test = if v.is_multiple_of(3) {
                format!("regex: '{pattern}'")
            } else {
                format!("contains: \"{word}\"")
            };
            format!(
                "    match: {{ all: [ {{ field: process.name, equals: \"{program}\" }}, {{ field: host.name, equals: {} }}, {{ field: message, {test} }} ] }}\n",
                hosts[(v / 5) % hosts.len()]
            )
        }
        _ => format!(
            "    sequence:\n      by: [source.ip]\n      within: {}m\n      steps:\n        - {{ name: unknown account, match: {{ all: [ {{ field: event.module, equals: sshd }}, {{ field: event.action, equals: ssh_invalid_user }} ] }} }}\n        - {{ name: password tried, match: {{ all: [ {ssh_fail}, {{ field: user.name, equals: {} }} ] }} }}\n",
            1 + v % 10,
            account(v + 1)
        ),
    }
}

/// Prints how much of `set` the corpus exercises: rules whose condition
/// matched at least one event, matches per event, detections of one pass.
fn describe(set: &RuleSet, events: &[Event]) {
    let rules = set.rules();
    // A sequence's own condition is empty (its steps hold the tests), so it
    // counts as matched when it raised a detection.
    let single = |r: &soc_rules::Rule| !matches!(r.kind(), RuleKind::Sequence(_));
    let mut matched: Vec<bool> = vec![false; rules.len()];
    let mut matches = 0usize;
    for e in events {
        for (i, r) in rules.iter().enumerate() {
            if single(r) && r.matches(e) {
                matched[i] = true;
                matches += 1;
            }
        }
    }
    let engine = Engine::new(Arc::new(set.clone()));
    let mut state = EngineState::default();
    let mut detections = 0usize;
    for e in events {
        for d in engine.process(&mut state, e) {
            detections += 1;
            if let Some(i) = rules.iter().position(|r| *r.id == *d.rule_id) {
                matched[i] = true;
            }
        }
    }
    let mut by_family = [(0usize, 0usize); 10];
    for (r, m) in rules.iter().zip(&matched) {
        if let Some(i) =
            r.id.strip_prefix("gen-")
                .and_then(|i| i.parse::<usize>().ok())
        {
            by_family[i % 10].0 += 1;
            by_family[i % 10].1 += usize::from(*m);
        }
    }
    eprintln!(
        "{} rules: {} matched at least one of {} events ((rules, matched) per generated family: {by_family:?}); {:.2} condition matches per event; {detections} detections",
        rules.len(),
        matched.iter().filter(|m| **m).count(),
        events.len(),
        matches as f64 / events.len().max(1) as f64,
    );
}

fn bench(c: &mut Criterion) {
    let decoders = Decoders::builtin();
    let lines = corpus();
    let events: Vec<Event> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut e = decoders.decode(&input(l));
            e.id = i as u64 + 1;
            e
        })
        .collect();
    let mut engines = Vec::new();
    for (name, vocab, n) in [
        ("rules", &CORPUS_VOCAB, 10usize),
        ("rules", &CORPUS_VOCAB, 100),
        ("rules", &CORPUS_VOCAB, 1000),
        ("site_rules", &SITE_VOCAB, 100),
        ("site_rules", &SITE_VOCAB, 1000),
    ] {
        let set = rule_set(n, vocab);
        if std::env::var("SOC_BENCH_DESCRIBE").as_deref() != Ok("0") {
            eprint!("{name}: ");
            describe(&set, &events);
        }
        engines.push((format!("{name}/{n}"), Engine::new(Arc::new(set))));
    }
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    for (id, engine) in &engines {
        g.bench_with_input(BenchmarkId::from_parameter(id), &events, |b, events| {
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
    // The same passes, with each event fresh in the cache, as in the
    // collector and `--replay`, where the engine takes an event just
    // decoded. Above, the events were all decoded before the measurement
    // (tens of MB), so the engine's first read of each event's fields goes
    // to main memory. Here every 64 events are copied just before the
    // engine takes them, and only the engine's time is counted.
    let mut h = c.benchmark_group("engine_fresh");
    h.sample_size(10);
    h.throughput(Throughput::Elements(events.len() as u64));
    for (id, engine) in &engines {
        h.bench_with_input(BenchmarkId::from_parameter(id), &events, |b, events| {
            b.iter_custom(|iters| {
                let spent: f64 = (0..iters).map(|_| pass(engine, events, true)).sum();
                std::time::Duration::from_secs_f64(spent)
            });
        });
    }
    h.finish();
    if std::env::var("SOC_BENCH_PAIRED").as_deref() != Ok("0") {
        paired(&engines, &events);
    }
    let mut d = c.benchmark_group("decode");
    d.sample_size(10);
    d.throughput(Throughput::Elements(lines.len() as u64));
    d.bench_function("builtin_decoders", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| decoders.decode(&input(l)).fields.len())
                .sum::<usize>()
        });
    });
    d.finish();
    // `SOC_BENCH_STATE=0` leaves this group out (its set-up feeds 100,000
    // events through an engine, which a profiler would count with the rest).
    if std::env::var("SOC_BENCH_STATE").as_deref() != Ok("0") {
        state(c);
    }
}

/// The time `engine` takes over `events` from a fresh state, counted
/// batch by batch: with `fresh`, each 64 events are copied before the
/// engine takes them, as in the `engine_fresh` group; without, the events
/// are read where they lie, as in the `engine` group.
fn pass(engine: &Engine, events: &[Event], fresh: bool) -> f64 {
    let mut state = EngineState::default();
    let mut spent = std::time::Duration::ZERO;
    for batch in events.chunks(64) {
        let copy;
        let batch = if fresh {
            copy = batch.to_vec();
            &copy[..]
        } else {
            batch
        };
        let start = std::time::Instant::now();
        let mut fired = 0usize;
        for e in batch {
            fired += engine.process(&mut state, e).len();
        }
        spent += start.elapsed();
        std::hint::black_box(fired);
    }
    spent.as_secs_f64()
}

/// The cost of each rule set against the first (`rules/10`) as a ratio of
/// times measured side by side: each round times one pass of the first set
/// and one of the other, next to each other (in turn first and second), so
/// that the machine changing speed between criterion's groups, which are
/// seconds apart, does not show in the ratio. Prints the median ratio of
/// `SOC_BENCH_ROUNDS` rounds (11 by default) and each round's.
/// `SOC_BENCH_PAIRED=0` leaves this out.
fn paired(engines: &[(String, Engine)], events: &[Event]) {
    let rounds: usize = std::env::var("SOC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
        .max(1);
    let Some(((base_id, base), others)) = engines.split_first() else {
        return;
    };
    for (group, fresh) in [("engine", false), ("engine_fresh", true)] {
        for (id, engine) in others {
            let mut ratios: Vec<f64> = (0..rounds)
                .map(|round| {
                    if round % 2 == 0 {
                        let b = pass(base, events, fresh);
                        pass(engine, events, fresh) / b
                    } else {
                        let t = pass(engine, events, fresh);
                        t / pass(base, events, fresh)
                    }
                })
                .collect();
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            ratios.sort_by(f64::total_cmp);
            eprintln!(
                "paired {group}: {id} / {base_id} = {:.2}x median of {rounds} ({})",
                ratios[rounds / 2],
                each.join(", ")
            );
        }
    }
}

/// The collector encodes the whole state at every commit (up to four a
/// second under load): one rule at its bound of 100,000 groups.
fn state(c: &mut Criterion) {
    let mut st = c.benchmark_group("state");
    st.sample_size(10);
    let engine = Engine::new(Arc::new(
        RuleSet::from_sources(&[SourceFile::new(
            "t.yml",
            "rules:\n  - id: bf\n    title: t\n    severity: low\n    match: { field: outcome, equals: failure }\n    threshold: { count: 5, window: 3600s, group_by: [source.ip] }\n    summary: s\n",
        )])
        .expect("rule loads"),
    ));
    let mut state = EngineState::default();
    for i in 0..100_000u64 {
        let mut fields = soc_rules::Fields::new();
        fields.insert("outcome", "failure".into());
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        fields.insert("source.ip", ip.into());
        let ev = Event {
            id: i + 1,
            timestamp_ms: 1_735_646_400_000 + i as i64,
            fields,
        };
        engine.process(&mut state, &ev);
    }
    assert_eq!(state.group_count(), 100_000);
    st.bench_function("encode_100k_groups", |b| b.iter(|| state.to_bytes().len()));
    let bytes = state.to_bytes();
    st.bench_function("decode_100k_groups", |b| {
        b.iter(|| EngineState::from_bytes(&bytes).map(|s| s.group_count()))
    });
    st.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
