use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent: Agent,
    #[serde(default)]
    shipping: Shipping,
    #[serde(default)]
    sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Agent {
    name: String,
    max_open_files: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shipping {
    flush_interval: Option<DurationText>,
    max_in_flight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    name: String,
    include: Vec<String>,
    start_at: Option<StartAt>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StartAt {
    Beginning,
    End,
}

/// (line, key, start of the message) of each mistake.
fn found(read: &Read<File>) -> Vec<(usize, Option<&str>, String)> {
    read.mistakes
        .iter()
        .map(|m| {
            let words: String = m
                .message
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            (m.line, m.key.as_deref(), words)
        })
        .collect()
}

#[test]
fn a_good_file_reads_whole_with_no_mistake() {
    let r = read::<File>(
        "[agent]\nname = \"a\"\n\n[[sources]]\nname = \"s\"\ninclude = [\"/x\"]\nstart_at = \"end\"\n",
    );
    assert!(r.mistakes.is_empty(), "{:?}", r.mistakes);
    let f = r.value.expect("read");
    assert_eq!(
        (f.agent.name.as_str(), f.sources[0].name.as_str()),
        ("a", "s")
    );
    assert!(matches!(f.sources[0].start_at, Some(StartAt::End)));
    assert!(f.shipping.flush_interval.is_none() && f.shipping.max_in_flight.is_none());
}

#[test]
fn every_refused_key_is_reported_and_the_rest_is_read() {
    let text = "\
[agent]
name = \"a\"
max_open_files = \"many\"
nmae = \"b\"

[shipping]
flush_intervl = \"1s\"
max_in_flight = -1

[[sources]]
name = \"s\"
include = [\"/x\"]
start_at = \"middle\"
";
    let r = read::<File>(text);
    assert_eq!(
        found(&r),
        vec![
            (3, Some("agent.max_open_files"), "invalid type:".into()),
            (4, Some("agent.nmae"), "unknown field".into()),
            (7, Some("shipping.flush_intervl"), "unknown field".into()),
            (8, Some("shipping.max_in_flight"), "invalid value:".into()),
            (13, Some("sources[0].start_at"), "unknown variant".into()),
        ],
        "{:#?}",
        r.mistakes
    );
    // Every key refused was optional: the rest of the file reads.
    let f = r.value.expect("the file without its refused keys");
    assert_eq!(f.agent.name, "a");
    assert!(f.agent.max_open_files.is_none());
    assert_eq!(f.sources[0].include, ["/x"]);
    assert_eq!(r.mistakes[4].column, 12);
}

#[test]
fn a_refused_required_key_is_not_reported_again_as_missing() {
    let text = "\
[agent]
name = 5

[[sources]]
name = \"s\"
include = [1]

[[sources]]
include = [\"/y\"]
start_at = \"sometime\"
";
    let r = read::<File>(text);
    assert_eq!(
        found(&r),
        vec![
            (2, Some("agent.name"), "invalid type:".into()),
            (6, Some("sources[0].include[0]"), "invalid type:".into()),
            // Truly missing: reported, at the table's header, and its
            // table's other mistakes too.
            (8, Some("sources[1].name"), "missing field".into()),
            (10, Some("sources[1].start_at"), "unknown variant".into()),
        ],
        "{:#?}",
        r.mistakes
    );
    assert!(r.value.is_none(), "a table had to be left out whole");
}

#[test]
fn a_missing_table_and_an_unknown_one_are_both_reported() {
    let r = read::<File>("[settings]\nname = \"a\"\n\n[shipping]\nmax_in_flight = \"x\"\n");
    assert_eq!(
        found(&r),
        vec![
            (1, Some("agent"), "missing field".into()),
            (1, Some("settings"), "unknown field".into()),
            (5, Some("shipping.max_in_flight"), "invalid type:".into()),
        ],
        "{:#?}",
        r.mistakes
    );
    assert!(r.value.is_none());
}

/// A misspelt key or table that its table lacks is read as the key it
/// misspells: its value is checked there, and the key is not also
/// reported missing. Later mistakes under it name it as it is read.
#[test]
fn a_misspelling_is_read_as_the_key_it_misspells() {
    let text = "\
[agnet]
name = \"a\"
max_opne_files = \"many\"

[shipping]
flush_intervl = \"1s\"
max_in_flight = 2
max_in_fligth = 3
";
    let r = read::<File>(text);
    assert_eq!(
        found(&r),
        vec![
            (1, Some("agnet"), "unknown field".into()),
            (3, Some("agent.max_opne_files"), "unknown field".into()),
            (3, Some("agent.max_open_files"), "invalid type:".into()),
            (6, Some("shipping.flush_intervl"), "unknown field".into()),
            // The key it misspells is written already: no guess.
            (8, Some("shipping.max_in_fligth"), "unknown field".into()),
        ],
        "{:#?}",
        r.mistakes
    );
    let said: Vec<bool> = r
        .mistakes
        .iter()
        .map(|m| m.message.contains("; read as `"))
        .collect();
    assert_eq!(said, [true, true, false, true, false], "{:#?}", r.mistakes);
    assert!(r.mistakes[0].message.ends_with("; read as `agent`"));
    let f = r.value.expect("every mistake was in an optional key");
    assert_eq!(f.agent.name, "a");
    assert_eq!(f.shipping.flush_interval.as_deref(), Some("1s"));
    assert_eq!(f.shipping.max_in_flight, Some(2));
    assert!(misspells("windw", "window") && misspells("titel", "title"));
    assert!(misspells("idd", "id") && misspells("idx", "id") && !misspells("name", "id"));
    assert!(!misspells("id", "id") && !misspells("summary", "severity"));
    assert!(misspells("grup_by", "group_by") && !misspells("ab", "cd"));
    assert_eq!(
        meant_key(
            "unknown field `windw`, expected one of `count`, `window`",
            |_| true
        ),
        Some("window")
    );
    assert_eq!(
        meant_key("unknown field `windw`, expected `window`", |k| k
            != "window"),
        None
    );
    assert_eq!(meant_key("invalid type: map", |_| true), None);
}

/// A duration written as a bare number is told to add its unit (a
/// config's durations take none by default), one of another type is told
/// what a duration looks like, and the rest of the file is read.
#[test]
fn a_duration_without_its_unit_is_told_to_add_one() {
    for (value, message) in [
        ("3", "`3` needs a unit: write \"3s\" (or ms, m, h, d)"),
        ("2.5", "`2.5` needs a unit: write \"2.5s\" (or ms, m, h, d)"),
        (
            "true",
            "invalid type: boolean `true`, expected a duration like \"30s\"",
        ),
    ] {
        let text = format!(
            "[agent]\nname = \"a\"\n[shipping]\nflush_interval = {value}\nmax_in_flight = 2\n"
        );
        let r = read::<File>(&text);
        assert_eq!(r.mistakes.len(), 1, "{value}: {:#?}", r.mistakes);
        let m = &r.mistakes[0];
        assert_eq!(
            (m.line, m.key.as_deref(), m.message.as_str()),
            (4, Some("shipping.flush_interval"), message),
            "{value}"
        );
        let f = r.value.expect("the key is optional");
        assert_eq!(f.shipping.max_in_flight, Some(2));
        assert!(f.shipping.flush_interval.is_none());
    }
    let r = read::<File>("[agent]\nname = \"a\"\n[shipping]\nflush_interval = \"250ms\"\n");
    assert!(r.mistakes.is_empty(), "{:#?}", r.mistakes);
    let f = r.value.expect("read");
    assert_eq!(f.shipping.flush_interval.as_deref(), Some("250ms"));
    assert_eq!(
        f.shipping.flush_interval.map(|d| d.to_string()),
        Some("250ms".to_string())
    );
}

/// A value that is not one of its choices is told the choice it likely
/// misspells, whichever way serde lists them; it stays a mistake.
#[test]
fn a_misspelt_choice_is_told_the_choice_it_misspells() {
    let text =
        "[agent]\nname = \"a\"\n[[sources]]\nname = \"s\"\ninclude = []\nstart_at = \"begining\"\n";
    let r = read::<File>(text);
    assert_eq!(r.mistakes.len(), 1, "{:#?}", r.mistakes);
    assert_eq!(r.mistakes[0].line, 6);
    assert!(
        r.mistakes[0]
            .message
            .ends_with("expected `beginning` or `end`; did you mean `beginning`?"),
        "{:#?}",
        r.mistakes
    );
    assert_eq!(
        with_meant_variant("unknown variant `ipp`, expected one of `string`, `ip`, `int`"),
        "unknown variant `ipp`, expected one of `string`, `ip`, `int`; did you mean `ip`?"
    );
    // Nothing close, or not about a choice: as it was.
    for message in [
        "unknown variant `xml`, expected `text` or `json`",
        "unknown field `ipp`, expected `ip`",
        "invalid type: map",
    ] {
        assert_eq!(with_meant_variant(message), message);
    }
}

#[test]
fn rust_type_names_read_as_people_write_values() {
    for (serde, plain) in [
        (
            r#"invalid type: string "abc", expected f64"#,
            r#"invalid type: string "abc", expected a number"#,
        ),
        (
            "invalid value: integer `-1`, expected u32",
            "invalid value: integer `-1`, expected a whole number, 0 or more",
        ),
        (
            "invalid type: floating point `1.5`, expected i64",
            "invalid type: floating point `1.5`, expected a whole number",
        ),
        (
            r#"invalid type: string "x", expected struct RuleConfig"#,
            r#"invalid type: string "x", expected a mapping"#,
        ),
        (
            "expected struct Step, or a list: expected u8",
            "expected a mapping, or a list: expected a whole number, 0 or more",
        ),
        (
            "invalid type: string \"x\", expected a sequence",
            "invalid type: string \"x\", expected a list",
        ),
        // A choice is still named, and other words are left alone.
        (
            "unknown variant `ipp`, expected one of `string`, `ip`",
            "unknown variant `ipp`, expected one of `string`, `ip`; did you mean `ip`?",
        ),
        ("expected u64x or a boolean", "expected u64x or a boolean"),
        ("invalid type: map", "invalid type: map"),
    ] {
        assert_eq!(plain_message(serde), plain, "{serde}");
    }
}

#[test]
fn syntax_errors_alone_are_reported() {
    let r = read::<File>("[agent]\nname = \"a\nmax_open_files = x\n");
    assert!(r.value.is_none());
    assert!(!r.mistakes.is_empty());
    assert_eq!(r.mistakes[0].line, 2, "{:#?}", r.mistakes);
    assert!(
        r.mistakes.iter().all(|m| m.key.is_none()),
        "{:#?}",
        r.mistakes
    );
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_col("ab\ncé=x", 7), (2, 4));
    assert_eq!(line_col("", 0), (1, 1));
}

#[test]
fn a_key_left_out_after_serde_reads_as_its_default_and_has_its_line() {
    let text = "[agent]\nname = \"a\"\nmax_open_files = 5\n\n[shipping]\nmax_in_flight = 3\n";
    let mut doc = Document::parse(text).expect("parses");
    let first: Read<File> = doc.read();
    assert_eq!(first.value.expect("reads").agent.max_open_files, Some(5));
    assert_eq!(doc.leave_out("agent.max_open_files"), Some(3));
    assert_eq!(doc.leave_out("shipping.max_in_flight"), Some(6));
    // Not in the file (any more): nothing to leave out.
    assert_eq!(doc.leave_out("agent.max_open_files"), None);
    assert_eq!(doc.leave_out("shipping.flush_interval"), None);
    assert_eq!(doc.leave_out("nowhere.at_all"), None);
    let again: Read<File> = doc.read();
    assert!(again.mistakes.is_empty(), "{:?}", again.mistakes);
    let f = again.value.expect("reads");
    assert_eq!(
        (f.agent.max_open_files, f.shipping.max_in_flight),
        (None, None)
    );
}
