//! Any bytes as the body of an agent's batch: decoded within the limits or
//! refused, never a panic. The same bytes compressed, so that the fuzzer
//! reaches the JSON and the checks behind the decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soc_protocol::{Limits, decode_batch};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::V1;
    let _ = decode_batch(data, &limits);
    if let Ok(body) = zstd::bulk::compress(data, 1) {
        let _ = decode_batch(&body, &limits);
    }
});
