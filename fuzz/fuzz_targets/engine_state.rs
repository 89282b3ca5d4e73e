//! Any bytes as saved rule state (what the collector commits with its
//! journal cursor and puts in backups): decoded or refused, never a panic;
//! what decodes saves back to bytes that decode to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soc_rules::EngineState;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = EngineState::from_bytes(data) {
        let again = EngineState::from_bytes(&state.to_bytes()).expect("saved state loads");
        assert!(again == state);
    }
});
