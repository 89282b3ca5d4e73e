//! Decoders, the rule language and the detection engine of soc.
//!
//! This crate is pure: it reads no files, opens no sockets and never looks at
//! the clock. Time comes from the events, so replaying a journal gives the
//! same detections as the live run, and everything here can be tested with
//! plain strings. The collector reads the operators' decoder and rule folders
//! and hands the text in as [`SourceFile`]s; the content shipped with soc is
//! compiled in (see [`builtin_decoder_sources`], [`builtin_rule_sources`]).
//!
//! The pipeline is
//!
//! ```text
//! raw line ──Decoders::decode──▶ Event ──Engine::process(state)──▶ Vec<Detection>
//! ```
//!
//! * **Decoders** turn a line into fields named after the Elastic Common
//!   Schema (`source.ip`, `destination.port`, `file.path`, ...; the full list
//!   is `rules/FIELDS.md`). They are declarative YAML: an envelope such as
//!   syslog is one decoder, the formats inside it are its children.
//!   Decoding never fails; a line nothing recognises is still an event.
//! * **Rules** are YAML too: a condition on fields, a severity, ATT&CK tags,
//!   a summary sentence and inline test cases. Loading reports every error of
//!   every file at once, each with file, line and field.
//! * The **engine** holds the immutable rules; the per-key state of stateful
//!   rules lives in an [`EngineState`] the caller owns, so it can be committed
//!   together with the journal cursor and snapshotted.
//!
//! # Layout
//!
//! * `event.rs`: [`SourceFile`], [`Input`], [`Event`].
//! * `error.rs`: [`LoadError`], [`LoadErrors`], [`TestFailure`].
//! * `yaml.rs`: reading a file's top-level list item by item, so every broken
//!   item is reported with its line.
//! * `decode/mod.rs`: [`Decoders`] and the walk down the decoder tree.
//!   `decode/config.rs` is the decoder file shape and its compilation,
//!   `decode/syslog.rs` the syslog envelope, `decode/kv.rs` key=value pairs,
//!   `decode/convert.rs` field conversions.
//! * `rule/mod.rs`: [`Rule`], [`RuleSet`], [`Severity`]. `rule/load.rs` is the
//!   rule file shape, `rule/condition.rs` conditions, `rule/template.rs` the
//!   summary sentence.
//! * `engine/mod.rs`: [`Engine`], [`EngineOptions`], [`Detection`]; the
//!   per-kind logic (threshold, sequence, silence, suppression).
//!   `engine/state.rs` is [`EngineState`] and its bounded maps,
//!   `engine/view.rs` the rules' fields resolved to slots and the per-event
//!   view that reads them.
//! * `rule/stateful.rs`: the `threshold:`, `sequence:`, `silence:` and
//!   `suppress:` keys.
//! * `lists.rs`: [`Lists`] for `in_list:`.
//! * `inline_tests.rs`: [`run_inline_tests`].
//! * `../decoders/*.yml`, `../rules/*.yml`: the shipped content.

mod decode;
mod engine;
mod error;
mod event;
mod field_check;
mod inline_tests;
mod lists;
mod rule;
mod yaml;

pub use decode::{Decoders, FailReason, Projection, UNKNOWN_MODULE};
pub use engine::{
    Detection, DistinctSet, ENGINE_STATE_FORMAT, ENGINE_STATE_OLDEST_FORMAT, Engine, EngineOptions,
    EngineState, EngineStats, Evidence, Group, GroupData, GroupKey, Groups, KeyHash, PendingEvent,
    Repeat, RuleState, RuleStates, StateFormatError, Suppression, SuppressionWindow, Usual,
};
pub use error::{LoadError, LoadErrors, TestFailure};
pub use event::{Event, Fields, FieldsIntoIter, FieldsIter, Input, SourceFile};
pub use field_check::{UnsetField, unset_fields};
pub use inline_tests::run_inline_tests;
pub use lists::{DoubtfulEntry, List, Lists, doubtful_entries};
pub use rule::{
    Learn, ParseSeverityError, Rule, RuleKind, RuleSet, Sequence, Severity, Silence, Step,
    Suppress, Threshold,
};

/// The shipped decoder files, in load order (envelopes first).
pub fn builtin_decoder_sources() -> Vec<SourceFile> {
    vec![
        SourceFile::new(
            "decoders/windows_defender_mplog.yml",
            include_str!("../decoders/windows_defender_mplog.yml"),
        ),
        SourceFile::new(
            "decoders/juniper.yml",
            include_str!("../decoders/juniper.yml"),
        ),
        SourceFile::new(
            "decoders/syslog.yml",
            include_str!("../decoders/syslog.yml"),
        ),
        SourceFile::new(
            "decoders/iptables.yml",
            include_str!("../decoders/iptables.yml"),
        ),
        SourceFile::new(
            "decoders/clamav.yml",
            include_str!("../decoders/clamav.yml"),
        ),
        SourceFile::new(
            "decoders/fortigate.yml",
            include_str!("../decoders/fortigate.yml"),
        ),
        SourceFile::new(
            "decoders/pfsense.yml",
            include_str!("../decoders/pfsense.yml"),
        ),
        SourceFile::new(
            "decoders/cisco_asa.yml",
            include_str!("../decoders/cisco_asa.yml"),
        ),
        SourceFile::new(
            "decoders/paloalto.yml",
            include_str!("../decoders/paloalto.yml"),
        ),
        SourceFile::new(
            "decoders/sophos_xg.yml",
            include_str!("../decoders/sophos_xg.yml"),
        ),
        SourceFile::new(
            "decoders/checkpoint.yml",
            include_str!("../decoders/checkpoint.yml"),
        ),
        SourceFile::new(
            "decoders/mikrotik.yml",
            include_str!("../decoders/mikrotik.yml"),
        ),
        SourceFile::new(
            "decoders/windows_firewall.yml",
            include_str!("../decoders/windows_firewall.yml"),
        ),
        SourceFile::new(
            "decoders/huawei_usg.yml",
            include_str!("../decoders/huawei_usg.yml"),
        ),
        SourceFile::new(
            "decoders/sonicwall.yml",
            include_str!("../decoders/sonicwall.yml"),
        ),
        SourceFile::new(
            "decoders/macos_appfirewall.yml",
            include_str!("../decoders/macos_appfirewall.yml"),
        ),
        SourceFile::new(
            "decoders/firewalld.yml",
            include_str!("../decoders/firewalld.yml"),
        ),
        SourceFile::new(
            "decoders/windows_defender.yml",
            include_str!("../decoders/windows_defender.yml"),
        ),
        SourceFile::new(
            "decoders/sophos_av.yml",
            include_str!("../decoders/sophos_av.yml"),
        ),
        SourceFile::new(
            "decoders/symantec.yml",
            include_str!("../decoders/symantec.yml"),
        ),
        SourceFile::new(
            "decoders/mcafee.yml",
            include_str!("../decoders/mcafee.yml"),
        ),
        SourceFile::new("decoders/eset.yml", include_str!("../decoders/eset.yml")),
        SourceFile::new(
            "decoders/trendmicro.yml",
            include_str!("../decoders/trendmicro.yml"),
        ),
        SourceFile::new(
            "decoders/sentinelone.yml",
            include_str!("../decoders/sentinelone.yml"),
        ),
        SourceFile::new("decoders/panda.yml", include_str!("../decoders/panda.yml")),
        SourceFile::new("decoders/sshd.yml", include_str!("../decoders/sshd.yml")),
        SourceFile::new(
            "decoders/windows_security.yml",
            include_str!("../decoders/windows_security.yml"),
        ),
        SourceFile::new(
            "decoders/web_access.yml",
            include_str!("../decoders/web_access.yml"),
        ),
    ]
}

/// The shipped rule files.
pub fn builtin_rule_sources() -> Vec<SourceFile> {
    vec![
        SourceFile::new("rules/firewall.yml", include_str!("../rules/firewall.yml")),
        SourceFile::new("rules/clamav.yml", include_str!("../rules/clamav.yml")),
        SourceFile::new("rules/sshd.yml", include_str!("../rules/sshd.yml")),
        SourceFile::new("rules/network.yml", include_str!("../rules/network.yml")),
        SourceFile::new("rules/malware.yml", include_str!("../rules/malware.yml")),
        SourceFile::new("rules/sources.yml", include_str!("../rules/sources.yml")),
        SourceFile::new(
            "rules/antivirus.yml",
            include_str!("../rules/antivirus.yml"),
        ),
        SourceFile::new("rules/logins.yml", include_str!("../rules/logins.yml")),
        SourceFile::new(
            "rules/firewall_admin.yml",
            include_str!("../rules/firewall_admin.yml"),
        ),
    ]
}

/// The shipped list files (`in_list:`), e.g. `lists/blocklist-ip.txt`.
pub fn builtin_list_sources() -> Vec<SourceFile> {
    vec![SourceFile::new(
        "lists/blocklist-ip.txt",
        include_str!("../lists/blocklist-ip.txt"),
    )]
}

/// Every text of at most `max_len` pieces of `alphabet`, the empty one
/// first: inputs for tests that hold a fast parser to a plain one.
#[cfg(test)]
pub(crate) fn every_text(alphabet: &[&str], max_len: usize) -> Vec<String> {
    let mut texts = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..max_len {
        let next: Vec<String> = last
            .iter()
            .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
            .collect();
        texts.extend(next.iter().cloned());
        last = next;
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `builtin()` uses `expect`; this proves it cannot panic.
    #[test]
    fn builtin_content_loads() {
        let d = Decoders::from_sources(&builtin_decoder_sources());
        assert!(
            d.is_ok(),
            "{}",
            d.err().map(|e| e.to_string()).unwrap_or_default()
        );
        let r = RuleSet::from_sources_with_lists(&builtin_rule_sources(), &builtin_list_sources());
        assert!(
            r.is_ok(),
            "{}",
            r.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }

    /// The examples in README.md load and their tests pass.
    #[test]
    fn readme_examples_work() {
        let readme = include_str!("../README.md");
        let blocks: Vec<&str> = readme
            .split("```yaml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert_eq!(blocks.len(), 4, "one decoder and three rule examples");
        let mut dec: Vec<SourceFile> = builtin_decoder_sources()
            .into_iter()
            .filter(|f| f.name == "decoders/syslog.yml")
            .collect();
        dec.push(SourceFile::new("README.md decoder", blocks[0]));
        let decoders = Decoders::from_sources(&dec).unwrap_or_else(|e| panic!("{e}"));
        let rules = RuleSet::from_sources(&[SourceFile::new("README.md rule", blocks[1])])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut failures: Vec<String> = run_inline_tests(&decoders, &rules)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(rules.rules()[0].tests.len(), 2);
        // The stateful examples run on the shipped decoders.
        let stateful = RuleSet::from_sources(&[SourceFile::new("README.md stateful", blocks[2])])
            .unwrap_or_else(|e| panic!("{e}"));
        // The learning silence, indented in a list item.
        let indented: String = blocks[3]
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let silence = RuleSet::from_sources(&[SourceFile::new("README.md silence", indented)])
            .unwrap_or_else(|e| panic!("{e}"));
        for set in [&stateful, &silence] {
            failures.extend(
                run_inline_tests(&Decoders::builtin(), set)
                    .iter()
                    .map(ToString::to_string),
            );
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(stateful.rules().len(), 2);
        assert!(matches!(
            &silence.rules()[0].kind,
            RuleKind::Silence(s) if s.learn.is_some()
        ));
    }

    /// Every shipped decoder has a test of a line it must refuse or flag: a
    /// broken or cut-short line (`matches: false`, or an expected
    /// `decode.reason`), so that what a decoder does with bad input is
    /// written down and checked.
    #[test]
    fn every_builtin_decoder_has_a_broken_line_test() {
        let decoders = Decoders::builtin();
        let missing: Vec<&str> = decoders
            .decoders
            .iter()
            .filter(|d| {
                !d.tests.iter().any(|t| {
                    !t.matches
                        || t.expect
                            .iter()
                            .any(|(k, _)| k == "decode.reason" || k == "decode.error")
                })
            })
            .map(|d| d.name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "decoders without a test of a line they must refuse or flag: {missing:?}"
        );
    }

    #[test]
    fn builtin_inline_tests_pass() {
        let failures = run_inline_tests(&Decoders::builtin(), &RuleSet::builtin());
        let text: Vec<String> = failures.iter().map(ToString::to_string).collect();
        assert!(
            failures.is_empty(),
            "{} inline test failure(s):\n{}",
            failures.len(),
            text.join("\n")
        );
    }
}
