//! Any bytes as the records of a backup file: read and checked, or refused
//! with a message naming the file, never a panic. The input is wrapped as a
//! backup is (magic, format, compressed records, checksum), so that the
//! fuzzer reaches the record parser behind the checksum; the bare input is
//! tried too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use soc_collector::backup::{FORMAT, MAGIC, verify_bytes};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = verify_bytes("fuzz.socbak", data) {
        assert!(e.to_string().contains("fuzz.socbak"), "{e}");
    }
    let Ok(records) = zstd::bulk::compress(data, 1) else {
        return;
    };
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&FORMAT.to_le_bytes());
    file.extend_from_slice(&records);
    let sum = Sha256::digest(&file);
    file.extend_from_slice(&sum);
    if let Err(e) = verify_bytes("fuzz.socbak", &file) {
        assert!(e.to_string().contains("fuzz.socbak"), "{e}");
    }
});
