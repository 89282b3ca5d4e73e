//! Any text as the collector's configuration file: it builds, or every
//! mistake is reported, each naming the file (never a panic, and the
//! rounds that leave out refused keys always end).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use soc_collector::config::CollectorConfig;

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.toml");
    if let Err(e) = CollectorConfig::settings(text, path, Path::new("/base"), |_| {}) {
        for line in e.to_string().lines() {
            assert!(line.starts_with("fuzz.toml"), "{line}");
        }
    }
    if let Err(e) = CollectorConfig::parse(path, text) {
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
});
