//! Any text as the collector's configuration file: it builds, or every
//! mistake is reported, each naming the file (never a panic, and the
//! rounds that leave out refused keys always end). Read again with a
//! refused `--listen` on the command line: that mistake comes first, by
//! its flag, and the file's follow it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use soc_collector::config::{CollectorConfig, CommandLine};

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.toml");
    if let Err(e) =
        CollectorConfig::settings(text, path, Path::new("/base"), &CommandLine::default())
    {
        for line in e.to_string().lines() {
            assert!(line.starts_with("fuzz.toml"), "{line}");
        }
    }
    let bad_flag = CommandLine {
        listen: Some("nowhere".into()),
        ..CommandLine::default()
    };
    match CollectorConfig::settings(text, path, Path::new("/base"), &bad_flag) {
        Ok(_) => panic!("`--listen nowhere` was taken"),
        Err(e) => {
            let message = e.to_string();
            let mut lines = message.lines();
            let first = lines.next().unwrap_or_default();
            // A syntax error ends the check before the command line is read.
            assert!(
                first.starts_with("command line: --listen") || first.starts_with("fuzz.toml"),
                "{first}"
            );
            for line in lines {
                assert!(line.starts_with("fuzz.toml"), "{line}");
            }
        }
    }
    if let Err(e) = CollectorConfig::parse(path, text) {
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
});
