//! Any bytes, as lines from any kind of source, through the shipped
//! decoders and then the shipped rules: every line decodes to an event
//! (never a panic), and the engine takes every event.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use soc_rules::{
    Decoders, Engine, EngineState, Input, RuleSet, builtin_list_sources, builtin_rule_sources,
};

static DECODERS: LazyLock<Decoders> = LazyLock::new(Decoders::builtin);
static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let rules = RuleSet::from_sources_with_lists(&builtin_rule_sources(), &builtin_list_sources())
        .expect("the shipped rules load");
    Engine::new(Arc::new(rules))
});

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
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let mut event = DECODERS.decode(&Input {
            raw,
            source_type,
            agent: "fuzz-agent",
            source: "fuzz",
            path: "/var/log/fuzz.log",
            received_ms: 1_780_000_000_000 + i as i64 * 1_000,
        });
        event.id = i as u64 + 1;
        let _ = ENGINE.process(&mut state, &event);
    }
    let _ = ENGINE.flush(&mut state);
    // What the engine keeps must save and load back.
    let saved = state.to_bytes();
    assert!(EngineState::from_bytes(&saved).is_ok());
});
