//! Any text as a rule file, a decoder file and a list file: each loads or
//! is refused with errors naming the file (never a panic). A rule file that
//! loads runs its inline tests (over no decoders: the raw lines).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use soc_rules::{Decoders, Lists, RuleSet, SourceFile, builtin_list_sources};

static NO_DECODERS: LazyLock<Decoders> =
    LazyLock::new(|| Decoders::from_sources(&[]).expect("no decoders load"));

fuzz_target!(|text: &str| {
    let file = [SourceFile::new("fuzz.yml", text)];
    match RuleSet::from_sources_with_lists(&file, &builtin_list_sources()) {
        Ok(rules) => {
            let _ = soc_rules::run_inline_tests(&NO_DECODERS, &rules);
        }
        Err(errors) => assert!(errors.to_string().contains("fuzz.yml")),
    }
    if let Err(errors) = Decoders::from_sources(&file) {
        assert!(errors.to_string().contains("fuzz.yml"));
    }
    let _ = Lists::from_sources(&[SourceFile::new("fuzz.txt", text)]);
});
