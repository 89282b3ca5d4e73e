//! Any bytes, as lines from any kind of source, through the shipped
//! decoders and then the shipped rules: every line decodes to an event
//! (never a panic), and the engine takes every event. Decoded into only the
//! fields the rules read (`socctl rules test --replay`), every event holds
//! exactly those of the whole event, at the same time, and the engine
//! raises the same detections.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use soc_rules::{
    Decoders, Engine, EngineState, Input, Projection, RuleSet, builtin_list_sources,
    builtin_rule_sources,
};

static DECODERS: LazyLock<Decoders> = LazyLock::new(Decoders::builtin);
static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let rules = RuleSet::from_sources_with_lists(&builtin_rule_sources(), &builtin_list_sources())
        .expect("the shipped rules load");
    Engine::new(Arc::new(rules))
});
static PROJECTION: LazyLock<Projection> =
    LazyLock::new(|| DECODERS.projection(ENGINE.fields_read().iter().copied()));

/// The source types the shipped decoders tell apart, and none.
const SOURCE_TYPES: &[&str] = &[
    "",
    "syslog",
    "firewall",
    "iptables",
    "kernel",
    "ufw",
    "filterlog",
    "pfsense",
    "opnsense",
    "cisco-asa",
    "fortigate",
    "paloalto",
    "checkpoint",
    "sophos",
    "sophos_av",
    "sfos",
    "windows-firewall",
    "pfirewall",
    "clamav",
    "clamd",
    "clamscan",
    "freshclam",
    "antivirus",
    "sentinelone",
    "file",
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let source_type = SOURCE_TYPES[usize::from(kind) % SOURCE_TYPES.len()];
    let mut state = EngineState::default();
    let mut projected_state = EngineState::default();
    let read = ENGINE.fields_read();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let input = Input {
            raw,
            source_type,
            agent: "fuzz-agent",
            source: "fuzz",
            path: "/var/log/fuzz.log",
            received_ms: 1_780_000_000_000 + i as i64 * 1_000,
        };
        let mut event = DECODERS.decode(&input);
        let mut projected = DECODERS.decode_projected(&input, &PROJECTION);
        assert_eq!(projected.timestamp_ms, event.timestamp_ms);
        let kept: Vec<_> = event
            .fields
            .iter()
            .filter(|(k, _)| read.contains(k) || *k == "process.name")
            .collect();
        assert_eq!(projected.fields.iter().collect::<Vec<_>>(), kept);
        event.id = i as u64 + 1;
        projected.id = event.id;
        assert_eq!(
            ENGINE.process(&mut projected_state, &projected),
            ENGINE.process(&mut state, &event)
        );
    }
    assert_eq!(ENGINE.flush(&mut projected_state), ENGINE.flush(&mut state));
    // What the engine keeps must save and load back.
    let saved = state.to_bytes();
    assert!(EngineState::from_bytes(&saved).is_ok());
});
