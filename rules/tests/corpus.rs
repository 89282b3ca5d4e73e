//! Decoding the shared corpus of real, public log samples
//! (`<workspace>/../shared/corpus`, see its MANIFEST.md).
//!
//! The expected values come from the samples' own projects where they ship
//! some (crowdsec `parser.assert`), else from the structure of the lines
//! themselves (every ClamAV `FOUND` line names a file and a signature).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use soc_rules::{Decoders, Engine, EngineState, Event, Input, RuleSet, UNKNOWN_MODULE};

/// 2024-12-31T12:00:00Z: gives RFC 3164 lines a stable year.
const RECEIVED_MS: i64 = 1_735_646_400_000;

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "the shared corpus is missing at {} (CI always has it; check out ../shared next to the workspace)",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> String {
    let path = corpus().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn lines(rel: &str) -> Vec<String> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn decode(d: &Decoders, line: &str, source_type: &str) -> Event {
    d.decode(&Input {
        raw: line.as_bytes(),
        source_type,
        agent: "test",
        source: "corpus",
        path: "",
        received_ms: RECEIVED_MS,
    })
}

/// The field of ours that holds what crowdsec calls `name`, and how to
/// compare (crowdsec keeps everything as text).
fn ours(crowdsec: &str) -> Option<&'static str> {
    Some(match crowdsec {
        "src_ip" | "source_ip" => "source.ip",
        "dst_ip" => "destination.ip",
        "src_port" => "source.port",
        "dst_port" => "destination.port",
        "proto" | "service" => "network.transport",
        "int_eth" => "observer.ingress.interface.name",
        "length" => "iptables.length",
        "program" => "process.name",
        "machine" => "host.name",
        "timestamp" => "@timestamp",
        _ => return None,
    })
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `Jun  8 14:34:33` (crowdsec's syslog timestamp) as our `@timestamp`.
fn syslog_time_matches(ours: &str, theirs: &str) -> bool {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ours) else {
        return false;
    };
    t.format("%b %e %H:%M:%S").to_string() == theirs
}

#[test]
fn crowdsec_iptables_parser_assertions_hold() {
    let d = Decoders::builtin();
    let log = lines("iptables/crowdsec-iptables-logs/iptables-logs.log");
    let assert_text = read("iptables/crowdsec-iptables-logs/parser.assert");
    let field_re = Regex::new(
        r#"^results\["(s00-raw|s01-parse)"\]\["[^"]+"\]\[(\d+)\]\.Evt\.(?:Parsed|Meta)\["([^"]+)"\] == "(.*)"$"#,
    )
    .expect("valid");
    let success_re =
        Regex::new(r#"^results\["s01-parse"\]\["[^"]+"\]\[(\d+)\]\.Success == (true|false)$"#)
            .expect("valid");
    let events: Vec<Event> = log.iter().map(|l| decode(&d, l, "")).collect();

    let mut checked = 0;
    let mut success_checked = 0;
    for line in assert_text.lines() {
        if let Some(c) = success_re.captures(line) {
            let i: usize = c[1].parse().expect("index");
            let is_iptables = events[i].get_str("event.module") == Some("iptables");
            assert_eq!(
                is_iptables,
                &c[2] == "true",
                "line {i}: {}\n{:#?}",
                log[i],
                events[i].fields
            );
            success_checked += 1;
            continue;
        }
        let Some(c) = field_re.captures(line) else {
            continue;
        };
        let (i, name, want) = (c[2].parse::<usize>().expect("index"), &c[3], &c[4]);
        let Some(field) = ours(name) else { continue };
        let ev = &events[i];
        let got = ev.fields.get(field).map(as_text);
        let ok = match (field, &got) {
            ("@timestamp", Some(g)) => syslog_time_matches(g, want),
            ("network.transport", Some(g)) => g.eq_ignore_ascii_case(want),
            (_, Some(g)) => g == want,
            (_, None) => false,
        };
        assert!(
            ok,
            "line {i} `{name}`: crowdsec expects {want:?}, {field} is {got:?}\n{}",
            log[i]
        );
        checked += 1;
    }
    assert_eq!(success_checked, 4, "parser.assert has one Success per line");
    assert!(
        checked >= 40,
        "only {checked} field assertions were checked"
    );
}

#[test]
fn crowdsec_scan_lines_all_decode_with_the_asserted_source() {
    let d = Decoders::builtin();
    let log = lines("iptables/crowdsec-iptables-scan-multi-port/iptables-scan-multi-port.log");
    let asserts = read("iptables/crowdsec-iptables-scan-multi-port/scenario.assert");
    let meta_re =
        Regex::new(r#"GetMeta\("(source_ip|machine|service)"\) == "([^"]+)""#).expect("valid");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in meta_re.captures_iter(&asserts) {
        expected
            .entry(c[1].to_string())
            .or_default()
            .insert(c[2].to_string());
    }
    assert!(!expected.is_empty(), "no GetMeta assertions found");
    let mut ports = BTreeSet::new();
    for line in &log {
        let ev = decode(&d, line, "");
        assert_eq!(ev.get_str("event.module"), Some("iptables"), "{line}");
        if line.contains("[UFW AUDIT]") {
            // crowdsec only counts dropped packets; an audit line is no verdict.
            assert_eq!(ev.get_str("event.action"), None, "{line}");
            continue;
        }
        for (meta, values) in &expected {
            let field = ours(meta).expect("mapped");
            let got = ev.fields.get(field).map(as_text).unwrap_or_default();
            assert!(
                values.contains(&got),
                "{line}: {field}={got:?} not in {values:?}"
            );
        }
        ports.insert(ev.get_i64("destination.port").expect("destination.port"));
    }
    assert!(
        ports.len() >= 20,
        "a multi-port scan: {} distinct ports",
        ports.len()
    );
}

#[test]
fn wazuh_iptables_samples_decode() {
    let d = Decoders::builtin();
    let text = read("iptables/wazuh/iptables.ini");
    let mut n = 0;
    for raw in text.lines() {
        let line = match raw.split_once(" pass = ") {
            Some((_, l)) => l,
            None if raw.contains(" kernel: ") => raw,
            None => continue,
        };
        let ev = decode(&d, line, "");
        assert_eq!(
            ev.get_str("event.module"),
            Some("iptables"),
            "{line}\n{:#?}",
            ev.fields
        );
        assert!(
            ev.get_str("source.ip").is_some() && ev.get_str("destination.ip").is_some(),
            "{line}"
        );
        assert!(
            !ev.fields.contains_key("decode.error"),
            "{line}: {:?}",
            ev.get_str("decode.error")
        );
        if line.contains("[UFW BLOCK]") || line.contains(" DROP") {
            assert_eq!(ev.get_str("event.action"), Some("deny"), "{line}");
        }
        n += 1;
    }
    assert!(n >= 40, "only {n} wazuh lines");
}

/// Counts per `event.action` (and `unknown`).
fn actions(events: &[Event]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for ev in events {
        let key = if ev.get_str("event.module") == Some(UNKNOWN_MODULE) {
            "unknown".to_string()
        } else {
            ev.get_str("event.action").unwrap_or("(none)").to_string()
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[test]
fn clamav_found_lines_yield_path_and_signature() {
    let d = Decoders::builtin();
    for (file, source_type) in [
        ("clamav/generated/clamd.log", "clamav"),
        ("clamav/generated/clamscan.log", "clamscan"),
        ("clamav/generated/freshclam.log", "clamav"),
        ("clamav/netint/clamscan.log", ""),
    ] {
        for line in lines(file) {
            let ev = decode(&d, &line, source_type);
            if line.ends_with(" FOUND") {
                assert_eq!(
                    ev.get_str("event.action"),
                    Some("malware_detected"),
                    "{file}: {line}"
                );
                let path = ev.get_str("file.path").unwrap_or_default();
                let name = ev.get_str("malware.name").unwrap_or_default();
                assert!(!path.is_empty() && !name.is_empty(), "{file}: {line}");
                assert!(
                    line.contains(&format!("{path}: {name}")),
                    "{file}: {line} -> {path} / {name}"
                );
                assert!(
                    !name.contains('('),
                    "hash info must not end up in the name: {name}"
                );
            }
            assert!(
                !ev.fields.contains_key("decode.error"),
                "{file}: {line}: {:?}",
                ev.get_str("decode.error")
            );
        }
    }
}

#[test]
fn clamav_files_decode_to_the_expected_actions() {
    let d = Decoders::builtin();
    let run = |file: &str, st: &str| -> Vec<Event> {
        lines(file).iter().map(|l| decode(&d, l, st)).collect()
    };

    let clamd = run("clamav/generated/clamd.log", "clamav");
    let a = actions(&clamd);
    assert_eq!(a.get("malware_detected"), Some(&4), "{a:?}");
    assert_eq!(a.get("file_clean"), Some(&2), "{a:?}");
    assert_eq!(a.get("daemon_stopped"), Some(&1), "{a:?}");
    assert!(
        clamd.iter().all(|e| e.timestamp_ms > RECEIVED_MS),
        "clamd.log times come from the lines (2026)"
    );
    let hashed: Vec<&str> = clamd
        .iter()
        .filter_map(|e| e.get_str("file.hash.md5"))
        .collect();
    assert_eq!(hashed.len(), 4);
    assert!(hashed.contains(&"44d88612fea8a8f36de82e1278abb02f"));

    let scan = run("clamav/generated/clamscan.log", "clamscan");
    let a = actions(&scan);
    assert_eq!(a.get("malware_detected"), Some(&3), "{a:?}");
    assert_eq!(a.get("scan_summary"), Some(&11), "{a:?}");
    let infected = scan
        .iter()
        .find(|e| e.get_str("clamav.summary.name") == Some("infected files"));
    assert_eq!(
        infected.and_then(|e| e.get_str("clamav.summary.value")),
        Some("3")
    );

    let fresh = run("clamav/generated/freshclam.log", "clamav");
    let failed: Vec<&Event> = fresh
        .iter()
        .filter(|e| {
            e.get_str("event.action") == Some("signature_update")
                && e.get_str("event.outcome") == Some("failure")
        })
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", actions(&fresh));
    assert_eq!(failed[0].get_str("event.reason"), Some("HTTP GET failed"));
    assert_eq!(actions(&fresh).get("signature_update_started"), Some(&1));

    let netint = run("clamav/netint/clamscan.log", "");
    let a = actions(&netint);
    let ok_lines = lines("clamav/netint/clamscan.log")
        .iter()
        .filter(|l| l.ends_with(": OK"))
        .count();
    assert!(ok_lines > 100);
    assert_eq!(a.get("file_clean"), Some(&ok_lines), "{a:?}");
    let decoded: usize = a
        .iter()
        .filter(|(k, _)| k.as_str() != "unknown")
        .map(|(_, n)| n)
        .sum();
    assert!(
        decoded * 100 >= netint.len() * 95,
        "{decoded} of {} decoded: {a:?}",
        netint.len()
    );
}

#[test]
fn sample_logs_raise_the_shipped_alerts() {
    let d = Decoders::builtin();
    let engine = Engine::new(Arc::new(RuleSet::builtin()));
    let mut state = EngineState::default();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut id = 0;
    for (file, st) in [
        ("clamav/generated/clamd.log", "clamav"),
        ("clamav/generated/clamscan.log", "clamscan"),
        ("clamav/generated/freshclam.log", "clamav"),
        ("iptables/wazuh/iptables.ini", ""),
    ] {
        for line in lines(file) {
            let line = line
                .split_once(" pass = ")
                .map_or(line.as_str(), |(_, l)| l);
            let mut ev = decode(&d, line, st);
            id += 1;
            ev.id = id;
            for det in engine.process(&mut state, &ev) {
                if det.group_key.is_empty() {
                    assert_eq!(det.evidence, vec![id]);
                } else {
                    // Stateful rules cite earlier events too, never later ones.
                    assert!(!det.evidence.is_empty() && det.evidence.iter().all(|e| *e <= id));
                }
                assert!(!det.summary.contains("{"), "{}", det.summary);
                *fired.entry(det.rule_id.to_string()).or_insert(0) += 1;
            }
        }
    }
    // clamd.log finds four (three files and a stream); clamscan.log finds
    // the same three files again with the same signatures: suppressed for
    // the hour (one alert per host, malware and file).
    assert_eq!(fired.get("clamav-malware-detected"), Some(&4), "{fired:?}");
    assert_eq!(
        fired.get("clamav-signature-update-failed"),
        Some(&1),
        "{fired:?}"
    );
    // wazuh: the ufw block on port 22 from 254.253.252.251, and the OpenWRT DROP to port 23
    // from 205.205.205.205 (18 times: one alert, the repeats suppressed for the hour).
    assert_eq!(
        fired.get("fw-inbound-admin-port-blocked"),
        Some(&2),
        "{fired:?}"
    );
    assert_eq!(
        state.stats.suppressed.get("fw-inbound-admin-port-blocked"),
        Some(&17),
        "the repeats are counted, not lost"
    );
    assert_eq!(
        state.stats.suppressed.get("clamav-malware-detected"),
        Some(&3)
    );
}

/// Lines in the format `shared/bench/gen_corpus.py` writes.
#[test]
fn benchmark_generator_lines_decode_and_alert() {
    let d = Decoders::builtin();
    let engine = Engine::new(Arc::new(RuleSet::builtin()));
    let ufw = "Mar  1 03:25:41 fw02 kernel: [112341.004211] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:1f:a0:33:00:1b:21:8c:02:ee:08:00 SRC=91.200.12.7 DST=198.51.100.14 LEN=60 TOS=0x00 PREC=0x00 TTL=47 ID=50321 DF PROTO=TCP SPT=48211 DPT=3389 WINDOW=64240 RES=0x00 SYN URGP=0";
    let found =
        "Mar  1 03:25:42 fs01 clamd[812]: /tmp/.x4711/bot: Unix.Malware.Mirai-9938291-0 FOUND";
    let selfcheck = "Mar  1 03:25:43 mail01 clamd[812]: SelfCheck: Database status OK.";
    let noise = "Mar  1 03:25:44 web01 CRON[31337]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)";

    let ev = decode(&d, ufw, "");
    assert_eq!(ev.get_str("source.ip"), Some("91.200.12.7"));
    assert_eq!(ev.get_i64("destination.port"), Some(3389));
    assert_eq!(ev.get_str("event.action"), Some("deny"));
    assert_eq!(ev.get_str("host.name"), Some("fw02"));
    let det = engine.process(&mut EngineState::default(), &ev);
    assert_eq!(det.len(), 1);
    assert_eq!(
        det[0].summary,
        "Blocked inbound tcp from 91.200.12.7 to port 3389 on fw02 (UFW BLOCK)"
    );

    let ev = decode(&d, found, "");
    assert_eq!(ev.get_str("file.path"), Some("/tmp/.x4711/bot"));
    assert_eq!(
        ev.get_str("malware.name"),
        Some("Unix.Malware.Mirai-9938291-0")
    );
    let det = engine.process(&mut EngineState::default(), &ev);
    assert_eq!(
        det.iter().map(|d| &*d.rule_id).collect::<Vec<_>>(),
        ["clamav-malware-detected"]
    );
    assert_eq!(
        det[0].summary,
        "ClamAV found Unix.Malware.Mirai-9938291-0 in /tmp/.x4711/bot on fs01"
    );

    assert_eq!(
        decode(&d, selfcheck, "").get_str("event.action"),
        Some("self_check")
    );
    let ev = decode(&d, noise, "");
    assert_eq!(ev.get_str("event.module"), Some(UNKNOWN_MODULE));
    assert_eq!(ev.get_str("process.name"), Some("CRON"));
}

/// Every line of every text file in the corpus, in every format, decodes
/// without panicking; counts what was recognised.
#[test]
fn no_corpus_line_panics() {
    let d = Decoders::builtin();
    let (mut total, mut known) = (0usize, 0usize);
    for raw in every_corpus_line() {
        let ev = d.decode(&Input {
            raw: &raw,
            source_type: "",
            agent: "",
            source: "",
            path: "",
            received_ms: RECEIVED_MS,
        });
        assert!(ev.fields.contains_key("message") && ev.fields.contains_key("event.module"));
        total += 1;
        if ev.get_str("event.module") != Some(UNKNOWN_MODULE) {
            known += 1;
        }
    }
    assert!(total > 5_000, "only {total} lines in the corpus?");
    // iptables (~140 lines incl. the assert files' raw copies) and ClamAV (~220).
    assert!(known >= 300, "only {known} of {total} lines decoded");
}

/// Every line of every file in the corpus (empty ones too), in a stable
/// order.
fn every_corpus_line() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut stack = vec![corpus()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        out.extend(bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    out
}

/// Decoding with the projection of the fields the shipped rules read
/// keeps exactly those fields of every event (and `process.name`), gives
/// every event the same time, and the engine raises the same detections
/// over the projected events as over the whole ones.
#[test]
fn a_projection_keeps_what_the_rules_read_and_their_detections() {
    let d = Decoders::builtin();
    let engine = Engine::new(Arc::new(RuleSet::builtin()));
    let read = engine.fields_read();
    for name in ["source.ip", "destination.port", "event.action", "user.name"] {
        assert!(read.contains(name), "{name} not in {read:?}");
    }
    assert!(!read.contains("message") && !read.contains("iptables.ttl"));
    let projection = d.projection(read.iter().copied());
    assert!(!projection.keeps_all());

    // The benchmark generator's lines too, and a conversion error.
    let extra = [
        "Mar  1 03:25:41 fw02 kernel: [112341.004211] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:1f:a0:33:00:1b:21:8c:02:ee:08:00 SRC=91.200.12.7 DST=198.51.100.14 LEN=60 TOS=0x00 PREC=0x00 TTL=47 ID=50321 DF PROTO=TCP SPT=48211 DPT=3389 WINDOW=64240 RES=0x00 SYN URGP=0",
        "Mar  1 03:25:42 fs01 clamd[812]: /tmp/.x4711/bot: Unix.Malware.Mirai-9938291-0 FOUND",
        "Mar  1 03:25:43 fw02 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=300.1.1.1 DST=198.51.100.14 PROTO=TCP SPT=1 DPT=22",
    ];
    // And thresholds: an SSH brute force, a port scan and a host sweep.
    let attacks = (0..40).flat_map(|i| {
        let t = format!("Mar  1 04:00:{i:02}");
        [
            format!("{t} bastion01 sshd[4242]: Failed password for root from 203.0.113.9 port {} ssh2", 40000 + i),
            format!("{t} fw01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.77 DST=192.0.2.10 PROTO=TCP SPT=5{i:04} DPT={} SYN", 1000 + i),
            format!("{t} fw01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.78 DST=192.0.2.{} PROTO=TCP SPT=5{i:04} DPT=445 SYN", 10 + i),
        ]
    });
    let lines: Vec<Vec<u8>> = every_corpus_line()
        .into_iter()
        .chain(extra.iter().map(|l| l.as_bytes().to_vec()))
        .chain(attacks.map(String::into_bytes))
        .collect();
    let (mut whole_state, mut projected_state) = (EngineState::default(), EngineState::default());
    let (mut whole_alerts, mut projected_alerts) = (Vec::new(), Vec::new());
    let mut dropped = 0usize;
    for (i, raw) in lines.iter().enumerate() {
        let input = Input {
            raw,
            source_type: "",
            agent: "test",
            source: "corpus",
            path: "/var/log/x",
            received_ms: RECEIVED_MS,
        };
        let mut whole = d.decode(&input);
        let mut projected = d.decode_projected(&input, &projection);
        assert_eq!(projected.timestamp_ms, whole.timestamp_ms, "line {i}");
        let kept: BTreeMap<&str, &serde_json::Value> = whole
            .fields
            .iter()
            .filter(|(k, _)| read.contains(k) || *k == "process.name")
            .collect();
        let got: BTreeMap<&str, &serde_json::Value> = projected.fields.iter().collect();
        assert_eq!(got, kept, "line {i}: {}", String::from_utf8_lossy(raw));
        dropped += whole.fields.len() - projected.fields.len();
        // Times out of order make the engine count late events: both alike.
        whole.id = i as u64 + 1;
        projected.id = i as u64 + 1;
        whole_alerts.extend(engine.process(&mut whole_state, &whole));
        projected_alerts.extend(engine.process(&mut projected_state, &projected));
    }
    assert!(lines.len() > 5_000);
    assert!(
        dropped > 50_000,
        "the projection dropped only {dropped} fields"
    );
    let fired: BTreeSet<&str> = whole_alerts.iter().map(|a| &*a.rule_id).collect();
    for rule in [
        "ssh-brute-force-by-source",
        "net-port-scan",
        "net-host-sweep",
        "clamav-malware-detected",
    ] {
        assert!(fired.contains(rule), "{rule} did not fire: {fired:?}");
    }
    assert_eq!(projected_alerts, whole_alerts);
    assert_eq!(projected_state.stats, whole_state.stats);
}

/// A projection naming a `decode.*` field keeps every field (they depend
/// on every field's conversion), and so does a projection made by another
/// decoder set.
#[test]
fn some_projections_keep_every_field() {
    let d = Decoders::builtin();
    let other = Decoders::builtin();
    let line = "Mar  1 03:25:43 fw02 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=300.1.1.1 DST=198.51.100.14 PROTO=TCP SPT=1 DPT=22";
    let input = Input {
        raw: line.as_bytes(),
        source_type: "",
        agent: "",
        source: "",
        path: "",
        received_ms: RECEIVED_MS,
    };
    let whole = d.decode(&input);
    assert_eq!(whole.get_str("decode.reason"), Some("conversion"));
    for name in ["decode.error", "decode.reason", "decoder.name"] {
        let p = d.projection(["source.port", name]);
        assert!(p.keeps_all(), "{name}");
        assert_eq!(d.decode_projected(&input, &p), whole, "{name}");
    }
    let p = other.projection(["source.port"]);
    assert!(!p.keeps_all());
    assert_eq!(d.decode_projected(&input, &p), whole);
    let mine = d.decode_projected(&input, &d.projection(["source.port"]));
    let names: Vec<&str> = mine.fields.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["process.name", "source.port"]);
}
