//! Table-driven tests of every construct, the bounds, reload reconciliation,
//! the state encoding and a property test of the reorder buffer.

use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::SourceFile;

fn rules(yaml: &str) -> Arc<RuleSet> {
    Arc::new(
        RuleSet::from_sources(&[SourceFile::new("t.yml", yaml)]).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// An event at `t` seconds with `id` and `k=v` fields (numbers stay numbers).
fn ev(id: u64, t: i64, kv: &[(&str, &str)]) -> Event {
    Event {
        id,
        timestamp_ms: t * 1000,
        fields: kv
            .iter()
            .map(|(k, v)| {
                let val = v
                    .parse::<i64>()
                    .map_or_else(|_| Value::from(*v), Value::from);
                (k.to_string(), val)
            })
            .collect(),
    }
}

/// Runs `events` through a fresh state (then flushes) and returns
/// (rule id, group key, evidence, suppressed) of each detection.
/// (rule id, group key, evidence, suppressed).
type Got = Vec<(String, String, Vec<u64>, u64)>;

fn run(engine: &Engine, events: &[Event]) -> (Got, EngineState) {
    let mut state = EngineState::default();
    let mut out = Vec::new();
    for e in events {
        out.extend(engine.process(&mut state, e));
    }
    out.extend(engine.flush(&mut state));
    let got = out
        .into_iter()
        .map(|d| {
            (
                d.rule_id.to_string(),
                d.group_key.to_string(),
                d.evidence.to_vec(),
                d.suppressed,
            )
        })
        .collect();
    (got, state)
}

const BRUTE: &str = r#"
rules:
  - id: bf
    title: Brute force
    severity: high
    match: { field: outcome, equals: failure }
    threshold: { count: 3, window: 60s, group_by: [ip] }
    summary: "{threshold.count} failures from {ip}"
"#;

const SCAN: &str = r#"
rules:
  - id: scan
    title: Port scan
    severity: medium
    match: { field: action, equals: deny }
    threshold: { count: 3, distinct: port, window: 10s, group_by: [ip] }
    summary: "{ip} probed {threshold.count} ports"
"#;

const SEQ: &str = r#"
rules:
  - id: seq
    title: Malware then outbound
    severity: critical
    sequence:
      by: [host]
      within: 10m
      steps:
        - { name: malware, match: { field: action, equals: malware } }
        - { name: outbound, match: { field: action, equals: out }, by: [src_host] }
    summary: "{host}{src_host}"
"#;

const SUP: &str = r#"
rules:
  - id: sup
    title: Suppressed
    severity: low
    match: { field: action, equals: malware }
    suppress: { for: 1h, by: [host] }
    summary: x
"#;

const SILENT: &str = r#"
rules:
  - id: silent
    title: Source silent
    severity: medium
    match: { field: src, exists: true }
    silence: { by: [src], after: 10m }
    summary: "{src} silent since {silence.last_seen_ms}"
"#;

#[test]
fn construct_table() {
    type Want = Vec<(&'static str, &'static str, Vec<u64>, u64)>;
    let f = |ip: &'static str| vec![("outcome", "failure"), ("ip", ip)];
    let d =
        |ip: &'static str, port: &'static str| vec![("action", "deny"), ("ip", ip), ("port", port)];
    let table: Vec<(&str, &str, Vec<Event>, Want)> = vec![
        (
            "threshold fires at the count, then starts over",
            BRUTE,
            (1..=7).map(|i| ev(i, i as i64, &f("a"))).collect(),
            vec![
                ("bf", "ip=a", vec![1, 2, 3], 0),
                ("bf", "ip=a", vec![4, 5, 6], 0),
            ],
        ),
        (
            "threshold: events outside the window do not count",
            BRUTE,
            vec![
                ev(1, 0, &f("a")),
                ev(2, 30, &f("a")),
                ev(3, 60, &f("a")),
                ev(4, 70, &f("a")),
            ],
            vec![("bf", "ip=a", vec![2, 3, 4], 0)],
        ),
        (
            "threshold groups by key",
            BRUTE,
            vec![
                ev(1, 1, &f("a")),
                ev(2, 2, &f("b")),
                ev(3, 3, &f("a")),
                ev(4, 4, &f("b")),
            ],
            vec![],
        ),
        (
            "threshold ignores events without the group field or not matching",
            BRUTE,
            vec![
                ev(1, 1, &[("outcome", "failure")]),
                ev(2, 2, &[("outcome", "success"), ("ip", "a")]),
                ev(3, 3, &f("a")),
                ev(4, 4, &f("a")),
            ],
            vec![],
        ),
        (
            "distinct count: repeats of a port do not count",
            SCAN,
            vec![
                ev(1, 1, &d("a", "22")),
                ev(2, 2, &d("a", "22")),
                ev(3, 3, &d("a", "80")),
                ev(4, 4, &d("a", "443")),
            ],
            vec![("scan", "ip=a", vec![2, 3, 4], 0)],
        ),
        (
            "distinct count: ports older than the window drop out",
            SCAN,
            vec![
                ev(1, 0, &d("a", "1")),
                ev(2, 5, &d("a", "2")),
                ev(3, 11, &d("a", "3")),
                ev(4, 12, &d("a", "4")),
            ],
            vec![("scan", "ip=a", vec![2, 3, 4], 0)],
        ),
        (
            "sequence in order within the span, joined by differently named keys",
            SEQ,
            vec![
                ev(1, 0, &[("action", "malware"), ("host", "h1")]),
                ev(2, 10, &[("action", "out"), ("src_host", "h2")]),
                ev(3, 20, &[("action", "out"), ("src_host", "h1")]),
            ],
            vec![("seq", "host=h1", vec![1, 3], 0)],
        ),
        (
            "sequence: wrong order does not fire",
            SEQ,
            vec![
                ev(1, 0, &[("action", "out"), ("src_host", "h1")]),
                ev(2, 10, &[("action", "malware"), ("host", "h1")]),
            ],
            vec![],
        ),
        (
            "sequence: too slow does not fire; a newer first step restarts",
            SEQ,
            vec![
                ev(1, 0, &[("action", "malware"), ("host", "h1")]),
                ev(2, 601, &[("action", "out"), ("src_host", "h1")]),
                ev(3, 700, &[("action", "malware"), ("host", "h1")]),
                ev(4, 900, &[("action", "malware"), ("host", "h1")]),
                ev(5, 1400, &[("action", "out"), ("src_host", "h1")]),
            ],
            vec![("seq", "host=h1", vec![4, 5], 0)],
        ),
        (
            "suppression: one per key per period, count carried to the next",
            SUP,
            vec![
                ev(1, 0, &[("action", "malware"), ("host", "h1")]),
                ev(2, 10, &[("action", "malware"), ("host", "h1")]),
                ev(3, 20, &[("action", "malware"), ("host", "h2")]),
                ev(4, 30, &[("action", "malware"), ("host", "h1")]),
                ev(5, 3600, &[("action", "malware"), ("host", "h1")]),
            ],
            vec![
                ("sup", "", vec![1], 0),
                ("sup", "", vec![3], 0),
                ("sup", "", vec![5], 2),
            ],
        ),
        (
            "silence: a source quiet for longer than `after` while others talk",
            SILENT,
            vec![
                ev(1, 0, &[("src", "a")]),
                ev(2, 0, &[("src", "b")]),
                ev(3, 300, &[("src", "b")]),
                ev(4, 599, &[("src", "b")]),
                ev(5, 601, &[("src", "b")]),
                ev(6, 1300, &[("src", "b")]),
            ],
            vec![
                ("silent", "src=a", vec![1], 0),
                ("silent", "src=b", vec![5], 0),
            ],
        ),
    ];
    for (name, yaml, events, want) in table {
        let engine = Engine::new(rules(yaml));
        let (got, _) = run(&engine, &events);
        let want: Vec<(String, String, Vec<u64>, u64)> = want
            .into_iter()
            .map(|(r, k, e, s)| (r.to_string(), k.to_string(), e, s))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn detection_carries_metadata_summary_and_time() {
    let engine = Engine::new(rules(BRUTE));
    let mut state = EngineState::default();
    let mut got = Vec::new();
    for i in 1..=3 {
        got.extend(engine.process(
            &mut state,
            &ev(
                i,
                100 + i as i64,
                &[("outcome", "failure"), ("ip", "203.0.113.7")],
            ),
        ));
    }
    assert_eq!(
        got,
        vec![Detection {
            rule_id: "bf".into(),
            rule_title: "Brute force".into(),
            rule_version: 1,
            severity: Severity::High,
            tags: Vec::new().into(),
            group_key: "ip=203.0.113.7".into(),
            timestamp_ms: 103_000,
            evidence: vec![1, 2, 3].into(),
            summary: "3 failures from 203.0.113.7".into(),
            suppressed: 0,
            window: None,
        }]
    );
    assert_eq!(state.group_count(), 0, "a fired group is closed");
}

#[test]
fn in_list_matches_entries_and_networks() {
    let set = RuleSet::from_sources_with_lists(
        &[SourceFile::new(
            "t.yml",
            r#"
rules:
  - id: bl
    title: Blocklisted
    severity: high
    match: { any: [ { field: src, in_list: blocklist }, { field: dst, in_list: blocklist } ] }
    summary: x
"#,
        )],
        &[SourceFile::new(
            "lists/blocklist.txt",
            "203.0.113.0/24\nevil.example\n",
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::new(Arc::new(set));
    let events = [
        ev(1, 0, &[("src", "203.0.113.9")]),
        ev(2, 0, &[("dst", "EVIL.example")]),
        ev(3, 0, &[("src", "198.51.100.1"), ("dst", "good.example")]),
    ];
    let (got, _) = run(&engine, &events);
    let ids: Vec<Vec<u64>> = got.into_iter().map(|d| d.2).collect();
    assert_eq!(ids, vec![vec![1], vec![2]]);

    let missing = RuleSet::from_sources_with_lists(
        &[SourceFile::new(
            "r.yml",
            "rules:\n  - id: x\n    title: X\n    severity: low\n    match: { field: a, in_list: nope }\n    summary: x\n",
        )],
        &[],
    );
    let msg = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        msg,
        "r.yml:5: match.in_list: rule `x`: no list named `nope` is loaded (known: [])"
    );
}

#[test]
fn stateful_rule_errors_name_file_line_and_field() {
    let text = r#"rules:
  - id: a
    title: A
    severity: low
    match: { field: x, exists: true }
    threshold: { count: 0, window: 5 minutes }
    summary: x
  - id: b
    title: B
    severity: low
    sequence:
      within: 1h
      steps:
        - match: { field: x, exists: true }
    summary: x
  - id: c
    title: C
    severity: low
    summary: x
  - id: d
    title: D
    severity: low
    match: { field: x, exists: true }
    suppress: { for: soon }
    summary: x
"#;
    let err = RuleSet::from_sources(&[SourceFile::new("s.yml", text)])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "s.yml:6: threshold.window: rule `a`: `5 minutes` has an unknown unit; use ms, s, m, h or d",
            "s.yml:6: threshold.count: rule `a`: must be at least 1",
            "s.yml:13: sequence.steps: rule `b`: a sequence needs at least two steps",
            "s.yml:16: match: rule `c`: a rule needs `match:` (only sequences may leave it out)",
            "s.yml:24: suppress.for: rule `d`: `soon` is not a duration like 30s, 10m, 1h or 1d",
        ]
    );
}

#[test]
fn bounds_evict_the_oldest_group_and_count_it() {
    let opts = EngineOptions {
        max_groups_per_rule: 3,
        max_total_groups: 100,
        ..EngineOptions::default()
    };
    let engine = Engine::with_options(rules(BRUTE), opts);
    let mut state = EngineState::default();
    // Two failures from `a`, then a flood of new sources, then `a` again:
    // its group was evicted, so the third failure does not complete it.
    let mut events = vec![
        ev(1, 1, &[("outcome", "failure"), ("ip", "a")]),
        ev(2, 2, &[("outcome", "failure"), ("ip", "a")]),
    ];
    for i in 0..10u64 {
        let ip = format!("flood{i}");
        events.push(ev(
            10 + i,
            3,
            &[("outcome", "failure"), ("ip", ip.as_str())],
        ));
    }
    events.push(ev(30, 4, &[("outcome", "failure"), ("ip", "a")]));
    let mut out = Vec::new();
    for e in &events {
        out.extend(engine.process(&mut state, e));
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(state.groups_of("bf"), 3);
    assert_eq!(state.group_count(), 3);
    // 12 groups were opened (a, ten floods, a again) and 3 remain.
    assert_eq!(state.stats.evicted.get("bf"), Some(&9));

    let total = Engine::with_options(
        rules(BRUTE),
        EngineOptions {
            max_groups_per_rule: 100,
            max_total_groups: 2,
            ..EngineOptions::default()
        },
    );
    let mut s2 = EngineState::default();
    for e in &events {
        total.process(&mut s2, e);
    }
    assert_eq!(s2.group_count(), 2);
    assert_eq!(s2.stats.evicted.get("bf"), Some(&10));
}

/// Eviction takes the least recently *touched* group: a group touched
/// again is younger than one created after it, per rule and over all rules,
/// and the entries its touches leave behind stay bounded.
#[test]
fn eviction_follows_the_last_touch() {
    let fail = |id: u64, ip: &str| ev(id, id as i64, &[("outcome", "failure"), ("ip", ip)]);
    let open = |s: &EngineState, rule: &str| -> Vec<String> {
        let mut keys: Vec<String> = s
            .rules
            .get(rule)
            .map(|r| r.groups.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    // Per rule: a, b, c; a again; d evicts b, not a.
    let per_rule = Engine::with_options(
        rules(BRUTE),
        EngineOptions {
            max_groups_per_rule: 3,
            ..EngineOptions::default()
        },
    );
    let mut state = EngineState::default();
    for (id, ip) in [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "d")] {
        per_rule.process(&mut state, &fail(id, ip));
    }
    assert_eq!(open(&state, "bf"), ["ip=a", "ip=c", "ip=d"]);
    // A group touched a thousand times (within its window, never reaching
    // its count) leaves a bounded trail.
    let slow = Engine::new(rules(&BRUTE.replace("count: 3", "count: 5000")));
    let mut state = EngineState::default();
    for id in 1..=1000 {
        let ip = if id % 100 == 50 { "b" } else { "a" };
        slow.process(
            &mut state,
            &ev(id, 1, &[("outcome", "failure"), ("ip", ip)]),
        );
    }
    let rs = state.rules.get("bf");
    let trail = rs.map_or(0, |r| r.order.len());
    assert!(trail <= 2 * 2 + 64, "{trail} order entries for 2 groups");
    let live: Vec<String> = rs
        .map(|r| r.order().map(|(_, k)| k.to_string()).collect())
        .unwrap_or_default();
    assert_eq!(live, ["ip=b", "ip=a"], "least recently touched first");

    // Over all rules: `bf` opens a, `other` opens x, `bf` touches a again;
    // the next new group evicts x, the least recently touched.
    let two = format!(
        "{}  - id: other\n    title: O\n    severity: low\n    match: {{ field: outcome, equals: failure }}\n    threshold: {{ count: 9, window: 60s, group_by: [host] }}\n    summary: o\n",
        BRUTE.replace("count: 3", "count: 5000")
    );
    let total = Engine::with_options(
        rules(&two),
        EngineOptions {
            max_total_groups: 2,
            ..EngineOptions::default()
        },
    );
    let mut state = EngineState::default();
    let with_host = |id: u64, ip: &str, host: &str| {
        ev(
            id,
            id as i64,
            &[("outcome", "failure"), ("ip", ip), ("host", host)],
        )
    };
    total.process(&mut state, &fail(1, "a"));
    total.process(&mut state, &with_host(2, "a", "x"));
    total.process(&mut state, &fail(3, "a"));
    total.process(&mut state, &fail(4, "b"));
    assert_eq!(open(&state, "bf"), ["ip=a", "ip=b"]);
    assert!(open(&state, "other").is_empty());
    assert_eq!(state.stats.evicted.get("other"), Some(&1));
}

#[test]
fn reload_keeps_state_of_unchanged_rules_only() {
    let two = |window: &str| {
        format!(
            "{BRUTE}  - id: other\n    title: O\n    severity: low\n    match: {{ field: outcome, equals: failure }}\n    threshold: {{ count: 3, window: {window}, group_by: [ip] }}\n    summary: o\n"
        )
    };
    let old = Engine::new(rules(&two("60s")));
    let mut state = EngineState::default();
    for i in 1..=2 {
        old.process(
            &mut state,
            &ev(i, i as i64, &[("outcome", "failure"), ("ip", "a")]),
        );
    }
    assert_eq!((state.groups_of("bf"), state.groups_of("other")), (1, 1));
    // `other` changes, `bf` does not.
    let new = Engine::new(rules(&two("90s")));
    let got: Vec<String> = new
        .process(
            &mut state,
            &ev(3, 3, &[("outcome", "failure"), ("ip", "a")]),
        )
        .into_iter()
        .map(|d| d.rule_id.to_string())
        .collect();
    assert_eq!(got, ["bf"]);
    assert_eq!(
        state.groups_of("other"),
        1,
        "restarted from the third event"
    );
    // A removed rule's state goes.
    let only_other = Engine::new(rules(&two("90s").replacen("id: bf", "id: bf2", 1)));
    only_other.reconcile(&mut state);
    assert!(!state.rules.contains_key("bf"));
}

#[test]
fn state_round_trips_through_bytes_and_checks_format() {
    let engine = Engine::with_options(
        rules(&format!("{SEQ}{}", SCAN.trim_start_matches("\nrules:\n"))),
        EngineOptions {
            allowed_lateness_ms: 5_000,
            ..EngineOptions::default()
        },
    );
    let mut state = EngineState::default();
    engine.process(
        &mut state,
        &ev(1, 0, &[("action", "malware"), ("host", "h1")]),
    );
    engine.process(
        &mut state,
        &ev(2, 1, &[("action", "deny"), ("ip", "a"), ("port", "22")]),
    );
    engine.process(
        &mut state,
        &ev(3, 9, &[("action", "deny"), ("ip", "a"), ("port", "23")]),
    );
    assert_eq!(
        state.pending.len(),
        1,
        "events within 5 s of the newest are held back"
    );
    let bytes = state.to_bytes();
    let back = EngineState::from_bytes(&bytes).unwrap_or_default();
    assert_eq!(back, state);
    // Saved again (the held-back event's text kept from the first save),
    // and saved from the loaded state: the same bytes.
    assert_eq!(state.to_bytes(), bytes);
    assert_eq!(back.to_bytes(), bytes);
    let mut old = bytes.clone();
    old[0] = 1;
    assert_eq!(
        EngineState::from_bytes(&old),
        Err(StateFormatError::Version { found: 1 })
    );
    assert!(matches!(
        EngineState::from_bytes(&bytes[..bytes.len() / 2]),
        Err(StateFormatError::Decode(_))
    ));
    // The restored state continues exactly like the original.
    let mut a = state;
    let mut b = back;
    let next = ev(4, 20, &[("action", "out"), ("src_host", "h1")]);
    let mut da = engine.process(&mut a, &next);
    da.extend(engine.flush(&mut a));
    let mut db = engine.process(&mut b, &next);
    db.extend(engine.flush(&mut b));
    assert_eq!(da, db);
    assert_eq!(da.len(), 1);
}

/// A snapshot keeps rule states by id; the engine keeps them in rule order.
/// Rules whose ids sort the other way round from their order still find
/// their own state after a round trip, and only their own.
#[test]
fn a_restored_state_finds_each_rule_its_own_groups() {
    let engine = Engine::new(rules(
        r#"
rules:
  - id: zz-three-failures
    title: Z
    severity: low
    match: { field: outcome, equals: failure }
    threshold: { count: 3, window: 60s, group_by: [ip] }
    summary: z
  - id: aa-two-denies
    title: A
    severity: low
    match: { field: action, equals: deny }
    threshold: { count: 2, window: 60s, group_by: [ip] }
    summary: a
"#,
    ));
    let mut state = EngineState::default();
    for (id, kv) in [
        (1, [("outcome", "failure"), ("ip", "x")]),
        (2, [("outcome", "failure"), ("ip", "x")]),
        (3, [("action", "deny"), ("ip", "x")]),
    ] {
        assert!(
            engine
                .process(&mut state, &ev(id, id as i64, &kv))
                .is_empty()
        );
    }
    let back = EngineState::from_bytes(&state.to_bytes()).unwrap_or_default();
    let order: Vec<&str> = back.rules.iter().map(|(id, _)| id).collect();
    assert_eq!(order, ["aa-two-denies", "zz-three-failures"], "id order");
    for mut s in [state, back] {
        let fired = |d: Vec<Detection>| -> Vec<String> {
            d.into_iter().map(|d| d.rule_id.to_string()).collect()
        };
        let deny = ev(4, 4, &[("action", "deny"), ("ip", "x")]);
        assert_eq!(fired(engine.process(&mut s, &deny)), ["aa-two-denies"]);
        let fail = ev(5, 5, &[("outcome", "failure"), ("ip", "x")]);
        assert_eq!(fired(engine.process(&mut s, &fail)), ["zz-three-failures"]);
        assert_eq!(s.group_count(), 0);
    }
}

/// Snapshots written before rule states were kept in rule order, groups in
/// a hash map and keys shared (plain maps of strings, same format number)
/// still load, and the state continues from them.
#[test]
fn snapshots_in_the_earlier_layout_still_load() {
    use std::collections::BTreeMap;
    #[derive(serde::Serialize)]
    struct OldRuleState {
        fingerprint: u64,
        groups: BTreeMap<String, Group>,
        order: BTreeMap<u64, String>,
        suppress: BTreeMap<String, Suppression>,
    }
    #[derive(serde::Serialize)]
    struct OldPendingEvent {
        id: u64,
        timestamp_ms: i64,
        fields_json: String,
    }
    #[derive(serde::Serialize)]
    struct OldEngineState {
        format: u32,
        rules: BTreeMap<String, OldRuleState>,
        watermark_ms: i64,
        pending: Vec<OldPendingEvent>,
        touch: u64,
        total_groups: u64,
        stats: EngineStats,
        rules_fingerprint: u64,
    }
    let engine = Engine::new(rules(BRUTE));
    let fingerprint = engine.rules().rules()[0].fingerprint;
    let group = |id: u64| Group {
        touched: id,
        last_ms: id as i64 * 1000,
        data: GroupData::Count(VecDeque::from([(id as i64 * 1000, id)])),
    };
    let old = OldEngineState {
        format: 4,
        rules: BTreeMap::from([(
            "bf".to_string(),
            OldRuleState {
                fingerprint,
                groups: BTreeMap::from([
                    ("ip=a".to_string(), group(1)),
                    ("ip=b".to_string(), group(2)),
                ]),
                order: BTreeMap::from([(1, "ip=a".to_string()), (2, "ip=b".to_string())]),
                suppress: BTreeMap::new(),
            },
        )]),
        watermark_ms: 2000,
        // A failure from `c` held back (saved with a lateness).
        pending: vec![OldPendingEvent {
            id: 9,
            timestamp_ms: 2500,
            fields_json: r#"{"ip":"c","outcome":"failure"}"#.to_string(),
        }],
        touch: 2,
        total_groups: 2,
        stats: EngineStats::default(),
        rules_fingerprint: 0,
    };
    let bytes = postcard::to_stdvec(&old).unwrap_or_default();
    let mut state = EngineState::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.groups_of("bf"), 2);
    let again = EngineState::from_bytes(&state.to_bytes()).unwrap_or_default();
    assert_eq!(again, state, "saved again, it loads the same");
    // Two more failures from `a` complete its threshold of three.
    let mut fired = Vec::new();
    for (id, t) in [(3, 3), (4, 4)] {
        fired.extend(engine.process(
            &mut state,
            &ev(id, t, &[("outcome", "failure"), ("ip", "a")]),
        ));
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].evidence, [1, 3, 4]);
    assert!(state.pending.is_empty(), "the held-back event was released");
    assert_eq!(state.groups_of("bf"), 2, "b and the held-back c are open");
    // A held-back event whose fields are not a JSON object is refused,
    // not loaded without its fields.
    let mut bad = old;
    bad.pending[0].fields_json = "{not json".to_string();
    let err = EngineState::from_bytes(&postcard::to_stdvec(&bad).unwrap_or_default())
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert!(
        err.as_ref().is_err_and(|e| e.contains("does not decode")),
        "{err:?}"
    );
}

#[test]
fn late_events_are_counted_and_still_processed() {
    let engine = Engine::with_options(
        rules(BRUTE),
        EngineOptions {
            allowed_lateness_ms: 10_000,
            ..EngineOptions::default()
        },
    );
    let f = [("outcome", "failure"), ("ip", "a")];
    let (got, state) = run(&engine, &[ev(1, 100, &f), ev(2, 101, &f), ev(3, 50, &f)]);
    assert_eq!(state.stats.late_events, 1);
    assert_eq!(got.len(), 1);
}

/// A tiny deterministic PRNG (xorshift) so the property test needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Property: the same events, shuffled so that no event arrives more than
/// the allowed lateness behind the newest one, give the same detections.
#[test]
fn shuffles_within_the_lateness_give_the_same_detections() {
    let all = format!(
        "{BRUTE}{}{}{}",
        SCAN.trim_start_matches("\nrules:\n"),
        SEQ.trim_start_matches("\nrules:\n"),
        SUP.trim_start_matches("\nrules:\n")
    );
    let lateness_s = 20;
    let engine = Engine::with_options(
        rules(&all),
        EngineOptions {
            allowed_lateness_ms: lateness_s * 1000,
            ..EngineOptions::default()
        },
    );
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // A random stream in time order.
        let mut t = 0i64;
        let mut events = Vec::new();
        for id in 1..=120u64 {
            t += rng.below(4) as i64;
            let ip = ["a", "b", "c"][rng.below(3) as usize];
            let host = ["h1", "h2"][rng.below(2) as usize];
            let port = (rng.below(6) + 20).to_string();
            let e = match rng.below(4) {
                0 => ev(id, t, &[("outcome", "failure"), ("ip", ip)]),
                1 => ev(
                    id,
                    t,
                    &[("action", "deny"), ("ip", ip), ("port", port.as_str())],
                ),
                2 => ev(id, t, &[("action", "malware"), ("host", host)]),
                _ => ev(id, t, &[("action", "out"), ("src_host", host)]),
            };
            events.push(e);
        }
        let (want, _) = run(&engine, &events);
        // Shuffle: repeatedly swap neighbours when that keeps every event
        // within the lateness of the newest one before it.
        let mut shuffled = events.clone();
        for _ in 0..400 {
            let i = rng.below(shuffled.len() as u64 - 1) as usize;
            shuffled.swap(i, i + 1);
            let mut newest = i64::MIN;
            let ok = shuffled.iter().all(|e| {
                newest = newest.max(e.timestamp_ms);
                e.timestamp_ms >= newest - lateness_s * 1000
            });
            if !ok {
                shuffled.swap(i, i + 1);
            }
        }
        assert_ne!(shuffled, events, "seed {seed}: the shuffle changed nothing");
        let (got, state) = run(&engine, &shuffled);
        assert_eq!(state.stats.late_events, 0, "seed {seed}");
        assert_eq!(got, want, "seed {seed}");
        assert!(
            !want.is_empty(),
            "seed {seed}: the stream should raise something"
        );
    }
}

#[test]
fn a_full_suppression_map_drops_the_windows_that_end_first() {
    let engine = Engine::with_options(
        rules(SUP),
        EngineOptions {
            max_groups_per_rule: 32,
            ..EngineOptions::default()
        },
    );
    let mut state = EngineState::default();
    let mut raised = 0;
    // 100 hosts within one hour: every one raises once and opens a window.
    for i in 0..100u64 {
        let host = format!("h{i:03}");
        let e = ev(
            i + 1,
            1_000 + i as i64,
            &[("action", "malware"), ("host", host.as_str())],
        );
        raised += engine.process(&mut state, &e).len();
    }
    assert_eq!(raised, 100);
    let windows = state.rules.get("sup").map_or(0, |r| r.suppress.len());
    assert!(windows <= 32, "{windows} windows kept with a bound of 32");
    // Every window dropped was counted.
    let evicted = state.stats.evicted.get("sup").copied().unwrap_or(0);
    assert_eq!(evicted + windows as u64, 100);
    // The newest host is still suppressed; the oldest window was dropped,
    // so that host raises again.
    let newest = ev(200, 2_000, &[("action", "malware"), ("host", "h099")]);
    assert!(engine.process(&mut state, &newest).is_empty());
    let oldest = ev(201, 2_001, &[("action", "malware"), ("host", "h000")]);
    assert_eq!(engine.process(&mut state, &oldest).len(), 1);
}

/// Saved state that decodes but contradicts itself is refused, naming what
/// is wrong: the engine tells live eviction entries by their touch, and a
/// group missing from its rule's order could never be evicted. The count of
/// groups, which only sums them up, is counted again.
#[test]
fn inconsistent_saved_state_is_refused() {
    let engine = Engine::new(rules(BRUTE));
    let mut state = EngineState::default();
    for (id, ip) in [(1, "a"), (2, "b"), (3, "a")] {
        engine.process(
            &mut state,
            &ev(id, id as i64, &[("outcome", "failure"), ("ip", ip)]),
        );
    }
    assert_eq!(state.group_count(), 2);
    let good = EngineState::from_bytes(&state.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(good, state);
    let refused = |change: &dyn Fn(&mut EngineState)| {
        let mut s = good.clone();
        change(&mut s);
        match EngineState::from_bytes(&s.to_bytes()) {
            Err(StateFormatError::Inconsistent(why)) => why,
            other => panic!("accepted: {other:?}"),
        }
    };
    let group = |s: &mut EngineState, key: &str| -> u64 {
        let rs = s.rules.at_mut(0).expect("bf has a state");
        let g = rs.groups.iter_mut().find(|(k, _)| k.as_str() == key);
        g.map(|(_, g)| g.touched).expect("the group")
    };
    // Two groups claim the same touch: the saved order keeps one of them.
    let why = refused(&|s| {
        let t = group(s, "ip=b");
        let rs = s.rules.at_mut(0).expect("bf");
        rs.groups.values_mut().for_each(|g| g.touched = t);
    });
    assert!(
        why.contains("rule `bf` has 2 groups but 1 entries"),
        "{why}"
    );
    // A group touched after the clock.
    let why = refused(&|s| s.touch = 1);
    assert!(why.contains("after the clock (1)"), "{why}");
    // A touch shared across rules cannot be told apart either.
    let mut two = good.clone();
    let (id, rs) = two.rules.at(0).cloned().expect("bf");
    let mut entries = two.rules.take();
    entries.push((format!("{id}-copy"), rs));
    two.rules.set_aligned(entries, 0);
    two.total_groups = 4;
    match EngineState::from_bytes(&two.to_bytes()) {
        Err(StateFormatError::Inconsistent(why)) => assert!(why.contains("share touch"), "{why}"),
        other => panic!("accepted: {other:?}"),
    }
    // A wrong count of groups is counted again.
    let mut miscounted = good.clone();
    miscounted.total_groups = 7;
    let back = EngineState::from_bytes(&miscounted.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.group_count(), 2);
    // Found by the `engine_state` fuzz target: two groups, no order.
    let found = [
        0x02, 0x01, 0x00, 0x20, 0x02, 0x05, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x5d, 0x00, 0x06,
    ];
    assert!(matches!(
        EngineState::from_bytes(&found),
        Err(StateFormatError::Inconsistent(_))
    ));
}

/// Property: rules that share field tests (which the engine makes once per
/// event, and reads first to rule candidates out) match exactly the events
/// each matches on its own, whatever the mix of `all`, `any`, `not`, cases
/// and kinds of test.
#[test]
fn rules_sharing_tests_match_as_each_does_alone() {
    // Leaves drawn from a small vocabulary, so that many rules share them.
    const LEAVES: &[&str] = &[
        "{ field: module, equals: sshd }",
        "{ field: module, equals: iptables }",
        "{ field: action, in: [deny, drop] }",
        "{ field: action, equals: allow }",
        "{ field: user, equals: ROOT, case_insensitive: true }",
        "{ field: user, in: [admin, root] }",
        "{ field: user, contains: DM, case_insensitive: true }",
        "{ field: user, starts_with: ad, case_insensitive: true }",
        "{ field: user, ends_with: OT, case_insensitive: true }",
        "{ field: ip, cidr: [10.0.0.0/8] }",
        "{ field: port, gte: 1000 }",
        "{ field: port, equals: 22 }",
        "{ field: host, exists: true }",
        "{ field: host, regex: '^web[0-9]+$' }",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let leaf = |rng: &mut Rng| LEAVES[rng.below(LEAVES.len() as u64) as usize].to_string();
    let mut yaml = String::from("rules:\n");
    for i in 0..60 {
        let parts: Vec<String> = (0..1 + rng.below(4)).map(|_| leaf(&mut rng)).collect();
        let condition = match rng.below(5) {
            0 => parts[0].clone(),
            1 => format!("{{ any: [{}] }}", parts.join(", ")),
            2 => format!("{{ not: {} }}", parts[0]),
            3 => format!(
                "{{ all: [{}, {{ not: {} }}] }}",
                parts.join(", "),
                leaf(&mut rng)
            ),
            _ => format!("{{ all: [{}] }}", parts.join(", ")),
        };
        yaml.push_str(&format!(
            "  - id: r{i}\n    title: t\n    severity: low\n    match: {condition}\n    summary: s\n"
        ));
    }
    let set = rules(&yaml);
    let engine = Engine::new(set.clone());
    let values: &[(&str, &[&str])] = &[
        ("module", &["sshd", "iptables", "clamav"]),
        ("action", &["deny", "drop", "allow", "login"]),
        ("user", &["root", "Root", "admin", "ADMIN", "guest"]),
        ("ip", &["10.1.2.3", "192.0.2.7", "not an ip"]),
        ("port", &["22", "8080", "443"]),
        ("host", &["web01", "db01", "web"]),
    ];
    let mut events = Vec::new();
    for id in 1..=400 {
        let mut kv: Vec<(&str, &str)> = Vec::new();
        for (k, vs) in values {
            if rng.below(5) > 0 {
                kv.push((k, vs[rng.below(vs.len() as u64) as usize]));
            }
        }
        events.push(ev(id, id as i64, &kv));
    }
    let (got, _) = run(&engine, &events);
    let mut want = Vec::new();
    for e in &events {
        for r in set.rules() {
            if r.matches(e) {
                want.push((r.id.clone(), String::new(), vec![e.id], 0));
            }
        }
    }
    assert!(want.len() > 400, "the rules match often: {}", want.len());
    assert_eq!(got, want);
}

const USUAL: &str = r#"
rules:
  - id: usual
    title: Source silent for longer than usual
    severity: medium
    match: { field: src, exists: true }
    silence:
      by: [src]
      after: 2h
      learn: { over: 1h, times: 3, at_least: 2m }
    summary: "{src} silent past {silence.limit_ms} ms ({silence.limit})"
"#;

/// Events of source `src` every `every` seconds from `from` to `to`
/// (inclusive), with ids from `id`; returns them and the next id.
fn every(src: &'static str, from: i64, to: i64, every: i64, id: &mut u64) -> Vec<Event> {
    (0..)
        .map(|i| from + i * every)
        .take_while(|t| *t <= to)
        .map(|t| {
            *id += 1;
            ev(*id, t, &[("src", src)])
        })
        .collect()
}

/// The events sorted by time (then id), as the engine wants them.
fn by_time(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| (e.timestamp_ms, e.id));
    events
}

/// (rule, key, evidence, time in s, summary) of each detection.
type Seen = Vec<(String, String, Vec<u64>, i64, String)>;

/// [`Seen`] of `events` run through a fresh state (then flushed).
fn detections(engine: &Engine, events: &[Event]) -> Seen {
    let mut state = EngineState::default();
    let mut out = Vec::new();
    for e in events {
        out.extend(engine.process(&mut state, e));
    }
    out.extend(engine.flush(&mut state));
    seen(out)
}

fn seen(out: Vec<Detection>) -> Seen {
    out.into_iter()
        .map(|d| {
            (
                d.rule_id.to_string(),
                d.group_key.to_string(),
                d.evidence.to_vec(),
                d.timestamp_ms / 1000,
                d.summary,
            )
        })
        .collect()
}

#[test]
fn a_learning_silence_gives_each_source_its_own_limit() {
    let engine = Engine::new(rules(USUAL));
    let mut id = 0;
    // `fast` talks every minute for over an hour (learnt: 3 × 60 s = 180
    // s), then stops at 3,660 s. `slow` talks every 25 minutes (learnt:
    // 3 × 1,500 s = 75 min, under `after`), then stops at 4,500 s. `new`
    // is seen twice, then never: not learnt, so `after` (2 h) is its
    // limit. `clock` talks every minute until 12,000 s.
    let fast = every("fast", 0, 3_660, 60, &mut id);
    let last_fast = id;
    let slow = every("slow", 0, 4_500, 1_500, &mut id);
    let last_slow = id;
    let new = every("new", 60, 120, 60, &mut id);
    let last_new = id;
    let clock = every("clock", 0, 12_000, 60, &mut id);
    let events = by_time([fast, slow, new, clock].concat());
    let got = detections(&engine, &events);
    assert_eq!(
        got,
        vec![
            (
                "usual".into(),
                "src=fast".into(),
                vec![last_fast],
                3_660 + 180,
                "fast silent past 180000 ms (3m)".into()
            ),
            (
                "usual".into(),
                "src=new".into(),
                vec![last_new],
                120 + 7_200,
                "new silent past 7200000 ms (2h)".into()
            ),
            (
                "usual".into(),
                "src=slow".into(),
                vec![last_slow],
                4_500 + 4_500,
                "slow silent past 4500000 ms (1h15m)".into()
            ),
        ]
    );
}

#[test]
fn a_learnt_limit_is_never_under_at_least_nor_over_after() {
    let engine = Engine::new(rules(USUAL));
    let mut id = 0;
    // Every 10 s: 3 × 10 s is under `at_least` (2 min).
    let busy = every("busy", 0, 3_700, 10, &mut id);
    let last_busy = id;
    // Every 50 min: 3 × 50 min is over `after` (2 h).
    let rare = every("rare", 0, 6_000, 3_000, &mut id);
    let last_rare = id;
    let clock = every("clock", 0, 20_000, 60, &mut id);
    let got = detections(&engine, &by_time([busy, rare, clock].concat()));
    let when: Vec<(String, Vec<u64>, i64)> = got.into_iter().map(|d| (d.1, d.2, d.3)).collect();
    assert_eq!(
        when,
        vec![
            ("src=busy".into(), vec![last_busy], 3_700 + 120),
            ("src=rare".into(), vec![last_rare], 6_000 + 7_200),
        ]
    );
}

#[test]
fn a_source_that_shows_its_own_gap_is_reported_and_the_gap_not_learnt() {
    let engine = Engine::new(rules(USUAL));
    let mut id = 0;
    // Only this source talks: every minute for over an hour (limit 180
    // s), then a gap of 300 s (reported when it talks again), then one of
    // 200 s: still reported, since the 300 s gap was not learnt.
    let mut events = every("only", 0, 3_660, 60, &mut id);
    let before_gap = id;
    events.push(ev(id + 1, 3_960, &[("src", "only")]));
    events.push(ev(id + 2, 4_160, &[("src", "only")]));
    let got = detections(&engine, &events);
    let when: Vec<(Vec<u64>, i64)> = got.into_iter().map(|d| (d.2, d.3)).collect();
    assert_eq!(
        when,
        vec![(vec![before_gap], 3_660 + 180), (vec![id + 1], 3_960 + 180)]
    );
}

#[test]
fn a_learning_silence_continues_the_same_from_a_saved_state() {
    let engine = Engine::new(rules(USUAL));
    let mut id = 0;
    let events = by_time(
        [
            every("a", 0, 5_000, 60, &mut id),
            every("b", 0, 9_000, 600, &mut id),
            every("c", 30, 12_000, 90, &mut id),
        ]
        .concat(),
    );
    let whole = detections(&engine, &events);
    assert_eq!(whole.len(), 2, "{whole:?}");
    // Saved and loaded at every point where a learning period turns, or
    // a source is half-way through its silence.
    for cut in [1, 60, 61, 62, 100, 150, 200, 250] {
        let cut = cut.min(events.len());
        let mut state = EngineState::default();
        let mut out = Vec::new();
        for e in &events[..cut] {
            out.extend(engine.process(&mut state, e));
        }
        let mut state = EngineState::from_bytes(&state.to_bytes()).expect("loads");
        for e in &events[cut..] {
            out.extend(engine.process(&mut state, e));
        }
        out.extend(engine.flush(&mut state));
        assert_eq!(seen(out), whole, "saved after {cut} events");
    }
}

#[test]
fn learning_settings_are_checked() {
    let text = r#"rules:
  - id: a
    title: A
    severity: low
    match: { field: x, exists: true }
    silence:
      by: [x]
      after: 1h
      learn: { over: 1d, times: 0, at_least: 2h }
    summary: x
  - id: b
    title: B
    severity: low
    match: { field: x, exists: true }
    silence:
      by: [x]
      after: 1h
      learn:
        over: a day
        times: 3
        at_least: 5m
    summary: x
"#;
    let err = RuleSet::from_sources(&[SourceFile::new("s.yml", text)])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "s.yml:9: silence.learn.times: rule `a`: must be a number above 0, not 0",
            "s.yml:9: silence.learn.at_least: rule `a`: `2h` is longer than `after` (`1h`)",
            "s.yml:19: silence.learn.over: rule `b`: `a day` is not a duration like 30s, 10m, 1h or 1d",
        ]
    );
}

#[test]
fn a_snapshot_of_format_2_still_loads() {
    let engine = Engine::new(rules(SILENT));
    let mut state = EngineState::default();
    engine.process(&mut state, &ev(1, 0, &[("src", "a")]));
    // Format 2 is format 4 without the tags of suppression windows (this
    // rule has none) and format 5 without shared first steps.
    state.format = 4;
    let mut bytes = state.to_bytes();
    state.format = ENGINE_STATE_FORMAT;
    assert_eq!(bytes[0], 4);
    bytes[0] = 2;
    let back = EngineState::from_bytes(&bytes).expect("format 2 loads");
    assert_eq!(back.format, ENGINE_STATE_FORMAT);
    assert_eq!(back, state);
}

/// The learning silence of [`USUAL`] worked out plainly, source by
/// source, for every event: (key, evidence, time in s) of each report.
fn usual_by_hand(events: &[Event]) -> Vec<(String, Vec<u64>, i64)> {
    const OVER: i64 = 3_600_000;
    const AFTER: i64 = 7_200_000;
    struct Source {
        first: i64,
        last: i64,
        last_id: u64,
        period: i64,
        longest: i64,
        before: i64,
    }
    let limit = |s: &Source| {
        if s.last - s.first >= OVER {
            (3 * s.longest.max(s.before)).clamp(120_000, AFTER)
        } else {
            AFTER
        }
    };
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    let mut got = Vec::new();
    for e in events {
        let (t, name) = (e.timestamp_ms, e.get_str("src").unwrap_or_default());
        let key = format!("src={name}");
        match sources.get_mut(&key) {
            Some(s) => {
                let old_limit = limit(s);
                if t >= s.last {
                    let p = t.div_euclid(OVER);
                    if p > s.period {
                        s.before = if p == s.period + 1 { s.longest } else { 0 };
                        s.longest = 0;
                        s.period = p;
                    }
                    if t - s.last > old_limit {
                        got.push((key.clone(), vec![s.last_id], (s.last + old_limit) / 1000));
                    } else {
                        s.longest = s.longest.max(t - s.last);
                    }
                    s.last = t;
                    s.last_id = e.id;
                }
            }
            None => {
                sources.insert(
                    key,
                    Source {
                        first: t,
                        last: t,
                        last_id: e.id,
                        period: t.div_euclid(OVER),
                        longest: 0,
                        before: 0,
                    },
                );
            }
        }
        let silent: Vec<String> = sources
            .iter()
            .filter(|(_, s)| s.last + limit(s) < t)
            .map(|(k, _)| k.clone())
            .collect();
        for k in silent {
            if let Some(s) = sources.remove(&k) {
                got.push((k, vec![s.last_id], (s.last + limit(&s)) / 1000));
            }
        }
    }
    got
}

#[test]
fn a_learning_silence_reports_what_the_plain_reckoning_does() {
    let engine = Engine::new(rules(USUAL));
    let mut next = crate::decode::tests::xorshift(0x9e37_79b9_7f4a_7c15);
    let mut reports = 0;
    for round in 0..40 {
        // Five sources of different paces, some pausing for long.
        let mut events = Vec::new();
        let mut t = 0;
        for id in 1..=600u64 {
            let src = ["a", "b", "c", "d", "e"][(next() % 5) as usize];
            t += match next() % 100 {
                0..=79 => next() % 30,
                80..=97 => next() % 600,
                _ => next() % 9_000,
            } as i64;
            events.push(ev(id, t, &[("src", src)]));
        }
        let mut want = usual_by_hand(&events);
        let mut got: Vec<(String, Vec<u64>, i64)> = detections(&engine, &events)
            .into_iter()
            .map(|d| (d.1, d.2, d.3))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "round {round}");
        reports += got.len();
    }
    assert!(reports > 40, "the rounds report silences ({reports})");
}

#[test]
fn durations_are_written_as_rules_write_them() {
    for (ms, text) in [
        (0, "0ms"),
        (500, "500ms"),
        (1_000, "1s"),
        (61_000, "1m1s"),
        (900_000, "15m"),
        (5_400_000, "1h30m"),
        (7_200_000, "2h"),
        (93_600_000, "1d2h"),
        (90_061_500, "1d1h1m1s"),
    ] {
        assert_eq!(duration_text(ms), text, "{ms} ms");
    }
}

/// A window tagged by the caller reports its repeats as they come, as a
/// whole count (applying one twice changes nothing), and the next detection
/// for its key does not count them again; an untagged window still carries
/// its count to the next detection. The tag is saved with the state.
#[test]
fn tagged_suppression_windows_report_their_repeats_as_they_come() {
    let engine = Engine::new(rules(SUP));
    let mut state = EngineState::default();
    let malware = |id: u64, t: i64, host: &str| ev(id, t, &[("action", "malware"), ("host", host)]);
    let first = engine.process(&mut state, &malware(1, 0, "h1"));
    assert_eq!(first.len(), 1);
    let window = first[0]
        .window
        .clone()
        .expect("a suppress: rule opens a window");
    assert!(engine.tag_window(&mut state, &window, 41));
    assert!(!engine.tag_window(&mut state, &window, 0), "0 is no tag");
    // h2's window stays untagged.
    assert_eq!(engine.process(&mut state, &malware(2, 5, "h2")).len(), 1);
    assert!(engine.process(&mut state, &malware(3, 10, "h1")).is_empty());
    assert!(engine.process(&mut state, &malware(4, 20, "h2")).is_empty());
    assert_eq!(
        state.take_repeats(),
        [Repeat {
            tag: 41,
            count: 1,
            last_ms: 10_000
        }]
    );
    assert!(state.take_repeats().is_empty(), "taken once");
    // Saved and loaded, the window keeps its tag and its count.
    let mut state = EngineState::from_bytes(&state.to_bytes()).expect("loads");
    assert!(engine.process(&mut state, &malware(5, 30, "h1")).is_empty());
    assert!(engine.process(&mut state, &malware(6, 40, "h1")).is_empty());
    assert_eq!(
        state.take_repeats(),
        [Repeat {
            tag: 41,
            count: 3,
            last_ms: 40_000
        }]
    );
    // After the period: a new detection, which does not count h1's repeats
    // (reported already) but does count h2's (untagged).
    let next = engine.process(&mut state, &malware(7, 3_600, "h1"));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].suppressed, 0);
    let next = engine.process(&mut state, &malware(8, 3_605, "h2"));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].suppressed, 1);
    // The new h1 window is untagged until tagged again.
    assert!(
        engine
            .process(&mut state, &malware(9, 3_700, "h1"))
            .is_empty()
    );
    assert!(state.take_repeats().is_empty());
}

/// A snapshot of format 3 (suppression windows without a tag) still loads:
/// its windows are untagged and keep their counts.
#[test]
fn a_snapshot_of_format_3_still_loads() {
    let engine = Engine::new(rules(SUP));
    let mut state = EngineState::default();
    let malware = |id: u64, t: i64| ev(id, t, &[("action", "malware"), ("host", "h1")]);
    let first = engine.process(&mut state, &malware(1, 0));
    assert!(engine.process(&mut state, &malware(2, 10)).is_empty());
    state.format = 3;
    let old = state.to_bytes();
    assert_eq!(old[0], 3);
    state.format = ENGINE_STATE_FORMAT;
    assert!(old.len() < state.to_bytes().len(), "format 3 has no tags");
    let mut back = EngineState::from_bytes(&old).expect("format 3 loads");
    assert_eq!(back.format, ENGINE_STATE_FORMAT);
    assert_eq!(back, state);
    // Tagged after loading, the window reports from its loaded count.
    let window = first[0].window.clone().expect("window");
    assert!(engine.tag_window(&mut back, &window, 7));
    assert!(engine.process(&mut back, &malware(3, 20)).is_empty());
    assert_eq!(
        back.take_repeats(),
        [Repeat {
            tag: 7,
            count: 2,
            last_ms: 20_000
        }]
    );
}

/// A distinct set holds what a map of value to (time, id) would, across the
/// step from its vector to its tree and back after a reload, and is saved
/// byte for byte as that map was.
#[test]
fn a_distinct_set_behaves_and_is_saved_as_a_map() {
    use std::collections::BTreeMap;
    let mut next = crate::decode::tests::xorshift(0x2545_f491_4f6c_dd1d);
    for round in 0..200 {
        let mut set = DistinctSet::default();
        let mut model: BTreeMap<String, (i64, u64)> = BTreeMap::new();
        // Up to three times the vector's size, from a pool small enough
        // that values come again.
        let steps = (next() % (3 * DistinctSet::FEW as u64 + 1)) as usize;
        let mut peak = 0;
        for step in 0..steps {
            let value = format!("v{}", next() % 40);
            let seen = (step as i64, round * 1000 + step as u64);
            set.see(value.as_str().into(), seen);
            model.insert(value, seen);
            peak = peak.max(model.len());
            if next().is_multiple_of(7) {
                let since = step as i64 - (next() % 10) as i64;
                set.retain(|(ts, _)| *ts > since);
                model.retain(|_, (ts, _)| *ts > since);
            }
            assert_eq!(set.len(), model.len());
            assert!(set.iter().eq(model.iter().map(|(k, v)| (k.as_str(), v))));
        }
        // A tree once it outgrew the vector, and only then.
        assert_eq!(matches!(set, DistinctSet::Many(_)), peak > DistinctSet::FEW);
        let bytes = postcard::to_stdvec(&set).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&model).expect("encode the map"));
        let back: DistinctSet = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, set);
        assert_eq!(
            matches!(back, DistinctSet::Few(_)),
            model.len() <= DistinctSet::FEW,
            "a set read back is a vector when it is small"
        );
    }
}

/// Evidence of one event or of several is written (and shown) as the list
/// of ids a `Vec<u64>` gives, and read back the same, whatever its length.
#[test]
fn evidence_is_written_and_read_as_a_list() {
    for ids in [vec![], vec![7], vec![1, 2, 3]] {
        let e = Evidence::from(ids.clone());
        assert_eq!(e, ids);
        let json = serde_json::to_string(&e).expect("written");
        assert_eq!(json, serde_json::to_string(&ids).expect("written"));
        let back: Evidence = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, e);
        assert_eq!(back.to_vec(), ids);
        // Shown as the list too (a replay prints it for people).
        assert_eq!(format!("{e:?}"), format!("{ids:?}"));
    }
    assert_eq!(format!("{:?}", Evidence::one(7)), "[7]");
    assert_eq!(Evidence::one(7), Evidence::from(vec![7]));
    let mut e = Evidence::from(vec![1, 2, 3, 4]);
    e.keep_last(2);
    assert_eq!(e, [3, 4]);
    let mut one = Evidence::one(5);
    one.keep_last(1);
    assert_eq!(one, [5]);
    // Equal by their ids, however each keeps them.
    let mut kept = Evidence::from(vec![4, 5]);
    kept.keep_last(1);
    assert_eq!(kept, one);
}

/// A two-step sequence (`within` seconds) with the first step `start`
/// (an `action` of `start` or `both`) and a second of `action` `fail` or
/// `both`, by `ip`, and the `user` when one is given.
fn pair_rule(id: &str, within: i64, user: Option<&str>) -> String {
    let second = match user {
        Some(u) => format!(
            "{{ all: [ {{ field: action, in: [fail, both] }}, {{ field: user, equals: {u} }} ] }}"
        ),
        None => "{ field: action, in: [fail, both] }".to_string(),
    };
    format!(
        "  - id: {id}\n    title: {id}\n    severity: high\n    sequence:\n      by: [ip]\n      within: {within}s\n      steps:\n        - {{ match: {{ field: action, in: [start, both] }} }}\n        - {{ match: {second} }}\n    summary: x\n"
    )
}

/// What the sequences of [`pair_rule`] raise, worked out plainly: each
/// keeps its own first step by address, as if it were alone.
fn pairs_by_hand(rules: &[(&str, i64, Option<&str>)], events: &[Event]) -> Vec<(String, Vec<u64>)> {
    let mut open: Vec<HashMap<String, (i64, u64)>> = vec![HashMap::new(); rules.len()];
    let mut out = Vec::new();
    let text = |e: &Event, f: &str| e.fields.get(f).and_then(Value::as_str).map(str::to_string);
    for e in events {
        let (Some(action), Some(ip)) = (text(e, "action"), text(e, "ip")) else {
            continue;
        };
        for ((id, within, user), open) in rules.iter().zip(&mut open) {
            let second = ["fail", "both"].contains(&action.as_str())
                && user.is_none_or(|u| text(e, "user").as_deref() == Some(u));
            // Too old, the first step goes all the same.
            if second
                && let Some((start, first)) = open.remove(&ip)
                && e.timestamp_ms - start <= within * 1000
            {
                out.push((id.to_string(), vec![first, e.id]));
                continue;
            }
            if ["start", "both"].contains(&action.as_str()) {
                open.insert(ip.clone(), (e.timestamp_ms, e.id));
            }
        }
    }
    out
}

/// Random events for [`pair_rule`] sequences.
fn pair_events(rng: &mut Rng, n: u64) -> Vec<Event> {
    let mut t = 0i64;
    (1..=n)
        .map(|id| {
            t += rng.below(6) as i64;
            let action = ["start", "fail", "both", "other"][rng.below(4) as usize];
            let ip = ["a", "b", "c"][rng.below(3) as usize];
            let user = ["u1", "u2", "u3"][rng.below(3) as usize];
            ev(id, t, &[("action", action), ("ip", ip), ("user", user)])
        })
        .collect()
}

/// Property: two-step sequences that start alike share their first step's
/// groups, and each still raises what it would alone.
#[test]
fn sequences_sharing_a_first_step_raise_what_each_would_alone() {
    let set: [(&str, i64, Option<&str>); 4] = [
        ("p1", 10, Some("u1")),
        ("p2", 30, Some("u2")),
        ("p3", 20, None),
        ("p4", 5, None),
    ];
    let yaml = format!(
        "rules:\n{}",
        set.iter()
            .map(|(id, w, u)| pair_rule(id, *w, *u))
            .collect::<String>()
    );
    let engine = Engine::new(rules(&yaml));
    assert_eq!(engine.families.len(), 1);
    assert_eq!(engine.families[0].members, [0, 1, 2, 3]);
    for seed in 1..=100u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let events = pair_events(&mut rng, 200);
        let want = pairs_by_hand(&set, &events);
        let (got, state) = run(&engine, &events);
        let got: Vec<(String, Vec<u64>)> = got.into_iter().map(|(id, _, ev, _)| (id, ev)).collect();
        assert_eq!(got, want, "seed {seed}");
        assert!(want.len() > 10, "seed {seed}: {} detections", want.len());
        // One group per address at most, for all four.
        assert!(state.group_count() <= 3, "seed {seed}");
        // Saved and loaded half-way, the rest raises the same.
        let (head, tail) = events.split_at(100);
        let mut state = EngineState::default();
        let mut got = Vec::new();
        for e in head {
            got.extend(engine.process(&mut state, e));
        }
        let mut state =
            EngineState::from_bytes(&state.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
        for e in tail {
            got.extend(engine.process(&mut state, e));
        }
        let got: Vec<(String, Vec<u64>)> = got
            .into_iter()
            .map(|d| (d.rule_id.to_string(), d.evidence.to_vec()))
            .collect();
        assert_eq!(got, want, "seed {seed}, saved half-way");
    }
}

/// Ids of what `events` raise, fed to `engine` with `state`.
fn raised(engine: &Engine, state: &mut EngineState, events: &[Event]) -> Vec<(String, Vec<u64>)> {
    events
        .iter()
        .flat_map(|e| engine.process(state, e))
        .map(|d| (d.rule_id.to_string(), d.evidence.to_vec()))
        .collect()
}

#[test]
fn a_reload_keeps_the_shared_first_steps_of_unchanged_sequences_only() {
    let start = |id: u64, t: i64| ev(id, t, &[("action", "start"), ("ip", "a")]);
    let fail = |id: u64, t: i64| ev(id, t, &[("action", "fail"), ("ip", "a"), ("user", "u1")]);
    let set = |members: &[(&str, i64)]| {
        let yaml: String = members
            .iter()
            .map(|(id, w)| pair_rule(id, *w, None))
            .collect();
        Engine::new(rules(&format!("rules:\n{yaml}")))
    };
    let mut state = EngineState::default();
    let old = set(&[("p1", 60), ("p2", 60), ("p3", 60)]);
    assert!(raised(&old, &mut state, &[start(1, 0)]).is_empty());
    // p1, which named the shared state, goes; p3 changes; p4 comes.
    let new = set(&[("p2", 60), ("p3", 90), ("p4", 60)]);
    assert_eq!(
        raised(&new, &mut state, &[fail(2, 10)]),
        [("p2".to_string(), vec![1, 2])],
        "only p2 saw the first step"
    );
    assert_eq!(
        state.group_count(),
        0,
        "p3 and p4 came after it, p2 is done with it"
    );
    // From a first step after the reload, all three complete.
    assert_eq!(
        raised(&new, &mut state, &[start(3, 20), fail(4, 30)]),
        [
            ("p2".to_string(), vec![3, 4]),
            ("p3".to_string(), vec![3, 4]),
            ("p4".to_string(), vec![3, 4]),
        ]
    );
    assert_eq!(state.group_count(), 0, "all three are done with it");
    // A sequence that stops sharing (its first step changes) starts anew;
    // the one left keeps its own first step.
    assert!(raised(&new, &mut state, &[start(5, 40)]).is_empty());
    let open = ["p2", "p3", "p4"].map(|id| state.groups_of(id));
    assert_eq!((open, state.group_count()), ([1, 1, 1], 1));
    let changed = pair_rule("p3", 60, None).replace("in: [start, both]", "equals: start");
    let apart = Engine::new(rules(&format!(
        "rules:\n{}{changed}",
        pair_rule("p2", 60, None)
    )));
    assert_eq!(apart.families.len(), 2);
    assert_eq!(
        raised(&apart, &mut state, &[fail(6, 50)]),
        [("p2".to_string(), vec![5, 6])]
    );
}

/// A state of format 4 kept each sequence's first step in its own groups:
/// loaded, the sequences share them and carry on from them.
#[test]
fn first_steps_saved_by_each_sequence_are_shared_when_loaded() {
    let yaml = format!(
        "rules:\n{}{}",
        pair_rule("p1", 60, None),
        pair_rule("p2", 60, None)
    );
    let engine = Engine::new(rules(&yaml));
    let fingerprint = |i: usize| engine.rules().rules()[i].fingerprint;
    let open = |touched: u64, start: i64, first: u64| Group {
        touched,
        last_ms: start,
        data: GroupData::Sequence {
            next: 1,
            start_ms: start,
            evidence: Evidence::one(first),
        },
    };
    let own = |groups: Vec<(&str, Group)>, fingerprint: u64| {
        let mut rs = RuleState {
            fingerprint,
            ..RuleState::default()
        };
        for (k, g) in groups {
            let key = GroupKey::new(Arc::from(k));
            rs.order.push_back((g.touched, key.clone()));
            rs.groups.insert(key, g);
        }
        rs
    };
    let mut old = EngineState {
        format: 4,
        touch: 3,
        total_groups: 3,
        ..EngineState::default()
    };
    // p1 and p2 started from event 1 at `a`; only p1 from event 2 at `b`
    // (p2 completed from it, say); p2's start at `c` is newer than p1's.
    old.rules.set_aligned(
        vec![
            (
                "p1".to_string(),
                own(
                    vec![("ip=a", open(1, 1000, 1)), ("ip=b", open(2, 2000, 2))],
                    fingerprint(0),
                ),
            ),
            (
                "p2".to_string(),
                own(vec![("ip=a", open(3, 1000, 1))], fingerprint(1)),
            ),
        ],
        0,
    );
    let mut state = EngineState::from_bytes(&old.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let fail = |id: u64, ip: &str| ev(id, 30, &[("action", "fail"), ("ip", ip)]);
    assert_eq!(
        raised(&engine, &mut state, &[fail(10, "a"), fail(11, "b")]),
        [
            ("p1".to_string(), vec![1, 10]),
            ("p2".to_string(), vec![1, 10]),
            ("p1".to_string(), vec![2, 11]),
        ]
    );
    assert_eq!((state.groups_of("p1"), state.groups_of("p2")), (0, 0));
    assert_eq!(state.group_count(), 0);
}

/// A shared first step evicted at a bound is a group lost by each
/// sequence that was waiting on it.
#[test]
fn an_evicted_shared_first_step_counts_for_each_sequence_waiting() {
    let yaml = format!(
        "rules:\n{}{}",
        pair_rule("p1", 60, Some("u1")),
        pair_rule("p2", 60, Some("u2"))
    );
    let engine = Engine::with_options(
        rules(&yaml),
        EngineOptions {
            max_groups_per_rule: 1,
            ..EngineOptions::default()
        },
    );
    let mut state = EngineState::default();
    let events = [
        ev(1, 0, &[("action", "start"), ("ip", "a")]),
        ev(2, 1, &[("action", "fail"), ("ip", "a"), ("user", "u1")]),
        ev(3, 2, &[("action", "start"), ("ip", "b")]),
    ];
    assert_eq!(
        raised(&engine, &mut state, &events),
        [("p1".to_string(), vec![1, 2])]
    );
    assert_eq!(state.group_count(), 1);
    assert_eq!(
        state.stats.evicted,
        BTreeMap::from([("p2".to_string(), 1)]),
        "p1 was done with `a`"
    );
    assert_eq!((state.groups_of("p1"), state.groups_of("p2")), (1, 1));
}
