//! Tests of the decoder loader and the decoder tree walk, with small
//! decoder files written for the purpose.

use super::*;

fn load(text: &str) -> Result<Decoders, LoadErrors> {
    Decoders::from_sources(&[SourceFile::new("d.yml", text)])
}

/// The errors of loading `text` (none when it loads).
fn load_errors(text: &str) -> Vec<crate::error::LoadError> {
    load(text).err().map(|e| e.0).unwrap_or_default()
}

/// Where each error points: (line, field).
fn places(errors: &[crate::error::LoadError]) -> Vec<(Option<usize>, Option<&str>)> {
    errors
        .iter()
        .map(|e| (e.line, e.field.as_deref()))
        .collect()
}

/// A small deterministic generator (xorshift) of test inputs, for the
/// generated-input tests (decoders, field lookups).
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn input(line: &str) -> Input<'_> {
    Input {
        raw: line.as_bytes(),
        source_type: "",
        agent: "agent-1",
        source: "syslog",
        path: "/var/log/syslog",
        received_ms: config::TEST_RECEIVED_MS,
    }
}

const TREE: &str = r#"
decoders:
  - name: env
    parse:
      - regex: { pattern: '^(?P<host>\S+) (?P<body>.*)$' }
    fields:
      host.name: { from: host }
  - name: child_a
    after: env
    when: { starts_with: "a " }
    parse:
      - regex: { pattern: '^a (?P<n>\S+)$' }
    fields:
      n: { from: n, convert: int }
    set: { event.module: a }
  - name: child_b
    after: env
    when: { starts_with: "a " }
    parse:
      - regex: { pattern: '^a (?P<word>[a-z]+)$' }
    fields:
      word: { from: word }
    set: { event.module: b }
"#;

#[test]
fn tree_walk_first_applicable_child_wins() {
    let d = load(TREE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.names(), ["env", "child_a", "child_b"]);
    let ev = d.decode(&input("h1 a 42"));
    assert_eq!(ev.get_str("host.name"), Some("h1"));
    assert_eq!(ev.get_i64("n"), Some(42));
    assert_eq!(ev.get_str("event.module"), Some("a"));
    assert_eq!(ev.get_str("decoder.name"), Some("child_a"));
    assert_eq!(ev.get_str("agent.name"), Some("agent-1"));
    assert_eq!(ev.get_str("log.file.path"), Some("/var/log/syslog"));
    assert_eq!(ev.get_str("log.source"), Some("syslog"));
    assert_eq!(ev.timestamp_ms, config::TEST_RECEIVED_MS);
    assert!(!ev.fields.contains_key("decode.error"));
}

#[test]
fn conversion_failure_is_a_decode_error_and_keeps_the_rest() {
    let d = load(TREE).unwrap_or_else(|e| panic!("{e}"));
    // child_a applies (its regex matches) but `n` is not an int.
    let ev = d.decode(&input("h1 a xyz"));
    assert_eq!(ev.get_str("event.module"), Some("a"));
    assert_eq!(
        ev.get_str("decode.error"),
        Some("child_a: field n: `xyz` is not an integer")
    );
    assert!(
        !ev.fields.contains_key("word"),
        "child_b must not run once child_a applied"
    );
}

#[test]
fn unknown_lines_and_invalid_utf8_still_make_events() {
    let d = load(TREE).unwrap_or_else(|e| panic!("{e}"));
    let ev = d.decode(&input("single"));
    assert_eq!(ev.get_str("event.module"), Some(UNKNOWN_MODULE));
    assert_eq!(ev.get_str("message"), Some("single"));
    assert!(!ev.fields.contains_key("decoder.name"));
    let raw = b"h\xff a 7\r\n";
    let ev = d.decode(&Input { raw, ..input("") });
    assert_eq!(ev.get_str("message"), Some("h\u{fffd} a 7\r\n"));
    assert_eq!(ev.get_str("host.name"), Some("h\u{fffd}"));
    assert_eq!(ev.get_i64("n"), Some(7));
}

#[test]
fn later_step_failure_is_reported_with_the_decoder_name() {
    let text = r#"
decoders:
  - name: two_steps
    parse:
      - regex: { pattern: '^X (?P<rest>.*)$' }
      - regex: { from: rest, pattern: '^(?P<num>\d+)$' }
    fields:
      num: { from: num, convert: int }
    set: { event.module: x }
"#;
    let d = load(text).unwrap_or_else(|e| panic!("{e}"));
    let ev = d.decode(&input("X abc"));
    assert_eq!(
        ev.get_str("decode.error"),
        Some("two_steps: parse[1] regex did not match")
    );
    assert_eq!(ev.get_str("event.module"), Some(UNKNOWN_MODULE));
    assert_eq!(d.decode(&input("X 12")).get_i64("num"), Some(12));
}

#[test]
fn kv_on_owned_capture_and_flags() {
    // An escaped quote makes the captured value owned; kv must still work.
    let text = r#"
decoders:
  - name: q
    parse:
      - kv: {}
      - kv: { from: inner, flags: inner_flags }
    fields:
      a: { from: a }
      b: { from: b }
      f: { from: flags, convert: list }
      g: { from: inner_flags, convert: list }
"#;
    let d = load(text).unwrap_or_else(|e| panic!("{e}"));
    let ev = d.decode(&input(r#"a=1 X inner="b=\"2\" Y""#));
    assert_eq!(ev.get_str("a"), Some("1"));
    assert_eq!(ev.get_str("b"), Some("2"));
    assert_eq!(ev.fields.get("f"), Some(&serde_json::json!(["X"])));
    assert_eq!(ev.fields.get("g"), Some(&serde_json::json!(["Y"])));
}

#[test]
fn load_errors_are_all_reported_with_lines() {
    let text = r#"decoders:
  - name: ok
    parse:
      - regex: { pattern: '^(?P<a>.)' }
  - name: bad_regex
    parse:
      - regex: { pattern: '(?P<a>[' }
  - name: unknown_key
    parse:
      - regex: { pattern: '(?P<a>.)' }
    feilds: {}
  - name: bad_from
    parse:
      - regex: { pattern: '(?P<a>.)' }
    fields:
      x: { from: nope }
  - name: two_kinds
    parse:
      - regex: { pattern: '(?P<a>.)' }
        kv: {}
  - name: orphan
    after: missing
    parse:
      - regex: { pattern: '(?P<a>.)' }
  - name: ok
    parse:
      - regex: { pattern: '(?P<a>.)' }
  - name: bad_format
    parse:
      - regex: { pattern: '(?P<a>.)' }
    fields:
      "@timestamp": { from: a, convert: timestamp }
  - name: bad_regex
    parse:
      - regex: { pattern: '(?P<a>.)' }
  - name: after_a_broken_one
    after: bad_regex
    parse:
      - regex: { pattern: '(?P<a>.)' }
"#;
    let errors = load_errors(text);
    assert_eq!(
        places(&errors),
        vec![
            (Some(7), Some("parse[0].regex.pattern")),
            (Some(11), Some("feilds")),
            (Some(16), Some("fields.x.from")),
            (Some(18), Some("parse[0]")),
            (Some(21), Some("after")),
            (Some(25), Some("name")),
            (Some(32), Some("fields.@timestamp")),
            // Its first use had a mistake; it is a repeat all the same.
            (Some(33), Some("name")),
            // `after_a_broken_one` names a decoder that exists, broken: not
            // reported again as naming no decoder.
        ],
        "{errors:#?}"
    );
    assert!(errors.iter().all(|e| e.file == "d.yml"));
    assert!(
        errors[3].message.contains("exactly one of"),
        "{}",
        errors[3]
    );
    assert!(
        errors[5].message.contains("already defined at d.yml:2"),
        "{}",
        errors[5]
    );
    assert!(
        errors[7]
            .message
            .contains("decoder `bad_regex` is already defined at d.yml:5"),
        "{}",
        errors[7]
    );
}

/// A value that is not one of its choices is told the choice it likely
/// misspells; one close to none is not.
#[test]
fn a_misspelt_choice_is_told_the_choice_it_misspells() {
    let text = r#"decoders:
  - name: one
    parse:
      - regex: { pattern: '(?P<a>.)' }
    fields:
      source.ip: { from: a, convert: ipp }
      source.port: { from: a, convert: number }
"#;
    let errors = load_errors(text);
    assert_eq!(
        places(&errors),
        vec![
            (Some(6), Some("fields.source.ip.convert")),
            (Some(7), Some("fields.source.port.convert")),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[0].message.starts_with("unknown variant `ipp`")
            && errors[0].message.ends_with("; did you mean `ip`?"),
        "{}",
        errors[0]
    );
    assert!(!errors[1].message.contains("did you mean"), "{}", errors[1]);
}

/// A parse step or `when` condition that was refused (reported) leaves
/// the decoder's captures unknown: its fields are not also reported as
/// naming no capture, nor the decoder as having no parse step. A key
/// refused beside a parse step that was kept leaves the checks on.
#[test]
fn what_a_refused_parse_step_leaves_out_is_not_reported_again() {
    let text = r#"decoders:
  - name: wrong_kind
    when: { program: {x: 1} }
    parse: { regex: { pattern: '^(?P<a>\S+)' } }
    fields:
      user.name: { from: a }
  - name: kept
    parse:
      - regex: { pattern: '^(?P<a>\S+)' }
    parsed: x
    fields:
      user.name: { from: b }
"#;
    let errors = load_errors(text);
    assert_eq!(
        places(&errors),
        vec![
            (Some(3), Some("when.program")),
            (Some(4), Some("parse")),
            (Some(10), Some("parsed")),
            (Some(12), Some("fields.user.name.from")),
        ],
        "{errors:#?}"
    );
    assert!(errors[3].message.contains("no parse step captures `b`"));
}

#[test]
fn after_cycles_are_rejected() {
    let text = r#"
decoders:
  - name: a
    after: [line, b]
    parse: [{ regex: { pattern: '(?P<body>.*)' } }]
  - name: b
    after: a
    parse: [{ regex: { pattern: '(?P<body>.*)' } }]
"#;
    let errors = load_errors(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("cycle"));
}

#[test]
fn source_type_hint_filters_only_when_given() {
    let text = r#"
decoders:
  - name: only_fw
    when: { source_type: [fw] }
    parse: [{ regex: { pattern: '^(?P<x>.+)$' } }]
    fields: { x: { from: x } }
"#;
    let d = load(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.decode(&input("v")).get_str("x"), Some("v"));
    assert_eq!(
        d.decode(&Input {
            source_type: "fw",
            ..input("v")
        })
        .get_str("x"),
        Some("v")
    );
    assert_eq!(
        d.decode(&Input {
            source_type: "av",
            ..input("v")
        })
        .get_str("x"),
        None
    );
}

/// A decoding thread reuses its field slots from line to line, and from one
/// decoder set to another: no field of one line may show up in the next.
#[test]
fn no_field_carries_over_to_the_next_line() {
    let tree = load(TREE).unwrap_or_else(|e| panic!("{e}"));
    let builtin = Decoders::builtin();
    let lines = [
        "Feb  3 10:00:01 fw01 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=203.0.113.9 DST=10.0.0.5 LEN=60 TTL=50 ID=1 PROTO=TCP SPT=5555 DPT=22 WINDOW=1024 SYN URGP=0",
        "h1 a 42",
        "Feb  3 10:00:02 web01 sshd[42]: Failed password for root from 203.0.113.9 port 2222 ssh2",
        "h2 a word",
        "",
        "not syslog at all",
    ];
    // Each line decoded alone, on a thread of its own (fresh slots).
    let alone: Vec<(Event, Event)> = std::thread::scope(|s| {
        lines
            .iter()
            .map(|l| {
                let one = s.spawn(|| builtin.decode(&input(l)));
                let two = s.spawn(|| tree.decode(&input(l)));
                (one.join().expect("decodes"), two.join().expect("decodes"))
            })
            .collect()
    });
    // Then all of them, in turn and twice over, on this one thread.
    for _ in 0..2 {
        for (l, (one, two)) in lines.iter().zip(&alone) {
            assert_eq!(builtin.decode(&input(l)).fields, one.fields, "{l}");
            assert_eq!(tree.decode(&input(l)).fields, two.fields, "{l}");
        }
    }
    assert!(alone[0].0.fields.contains_key("destination.port"));
    assert!(!alone[2].0.fields.contains_key("destination.port"));
}

/// A pattern that parses but is too big to compile is a load error with its
/// line; loaded deferred (`socctl rules test --replay`), the load succeeds
/// and the lines that reach the decoder fail with the reason.
#[test]
fn a_regex_too_big_to_compile_is_reported() {
    let text = r#"
decoders:
  - name: huge
    parse:
      - regex: { pattern: '^(?P<word>\w{1000}){50}$' }
    fields:
      message: { from: word }
"#;
    let err = load(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("d.yml:5") && err.contains("invalid regex"),
        "{err}"
    );
    let deferred = Decoders::from_sources_deferred(&[SourceFile::new("d.yml", text)])
        .unwrap_or_else(|e| panic!("{e}"));
    let ev = deferred.decode(&input("anything"));
    let error = ev
        .fields
        .get("decode.error")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        error.contains("huge") && error.contains("cannot be compiled"),
        "{error}"
    );
}

#[test]
fn a_list_of_patterns_is_tried_in_order_and_the_first_match_gives_the_captures() {
    let d = load(
        r#"
decoders:
  - name: login
    parse:
      - regex:
          pattern:
            - '^(?P<who>\S+) logged in from (?P<ip>\S+)$'
            - '^(?P<who>\S+) logged (?P<how>\S+)'
            - '(?P<whole>.*failed.*)'
    fields:
      user.name: { from: who }
      source.ip: { from: ip }
      how: { from: how }
      note: { from: whole }
    set: { event.module: login }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The first pattern matches: its captures, none of the second's.
    let ev = d.decode(&input("alice logged in from 192.0.2.1"));
    assert_eq!(ev.get_str("user.name"), Some("alice"));
    assert_eq!(ev.get_str("source.ip"), Some("192.0.2.1"));
    assert_eq!(ev.get_str("how"), None);
    // Only the second matches.
    let ev = d.decode(&input("bob logged out"));
    assert_eq!(ev.get_str("user.name"), Some("bob"));
    assert_eq!(ev.get_str("how"), Some("out"));
    assert_eq!(ev.get_str("source.ip"), None);
    // The third is one group around the whole pattern.
    let ev = d.decode(&input("login failed twice"));
    assert_eq!(ev.get_str("note"), Some("login failed twice"));
    assert_eq!(ev.get_str("decoder.name"), Some("login"));
    // None matches: the decoder does not apply.
    let ev = d.decode(&input("nothing to see"));
    assert_eq!(ev.get_str("event.module"), Some(UNKNOWN_MODULE));
}

#[test]
fn each_pattern_of_a_list_is_checked_where_it_is_written() {
    let errors = load_errors(
        r#"
decoders:
  - name: two
    parse:
      - regex:
          pattern:
            - '^(?P<a>.)'
            - '^(?P<b>'
            - '^no groups'
  - name: none
    parse:
      - regex:
          pattern: []
"#,
    );
    assert_eq!(
        places(&errors),
        vec![
            (Some(8), Some("parse[0].regex.pattern[1]")),
            (Some(9), Some("parse[0].regex.pattern[2]")),
            (Some(13), Some("parse[0].regex.pattern")),
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("invalid regex"), "{}", errors[0]);
    assert!(
        errors[1].message.contains("no named group"),
        "{}",
        errors[1]
    );
    assert!(errors[2].message.contains("empty"), "{}", errors[2]);
}

/// A parse step that is wrong is reported once: the fields reading what
/// it would have captured are not reported again as reading nothing.
#[test]
fn fields_of_a_wrong_parse_step_are_not_reported_again() {
    let errors = load_errors(
        r#"
decoders:
  - name: broken
    parse:
      - regex: { pattern: '(?P<a>[' }
    fields:
      source.ip: { from: a, convert: ip }
  - name: two_kinds
    parse:
      - { regex: { pattern: '(?P<b>x)' }, csv: { columns: [c] } }
    fields:
      user.name: { from: c }
"#,
    );
    assert_eq!(
        places(&errors),
        vec![
            (Some(5), Some("parse[0].regex.pattern")),
            (Some(9), Some("parse[0]")),
        ],
        "{errors:#?}"
    );
}

/// The two patterns of the shipped ClamAV decoder `decoder`: a
/// single-pass one tried first, then the general one.
fn clamav_patterns(decoder: &str) -> (regex::Regex, regex::Regex) {
    let text = include_str!("../../decoders/clamav.yml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("clamav.yml parses");
    let found = doc["decoders"]
        .as_sequence()
        .and_then(|ds| ds.iter().find(|d| d["name"].as_str() == Some(decoder)))
        .unwrap_or_else(|| panic!("{decoder} is shipped"));
    let patterns: Vec<regex::Regex> = found["parse"][0]["regex"]["pattern"]
        .as_sequence()
        .expect("a list of patterns")
        .iter()
        .map(|p| regex::Regex::new(p.as_str().expect("text")).expect("valid"))
        .collect();
    match <[regex::Regex; 2]>::try_from(patterns) {
        Ok([fast, general]) => (fast, general),
        Err(p) => panic!("{decoder} has {} patterns, not 2", p.len()),
    }
}

/// Checks that on every line of `lines` that the first pattern of
/// `decoder` reads, the second reads the same captures `names` (so the
/// first only saves time). Returns how many lines the first read, and how
/// many only the second.
fn fast_pattern_agrees(
    decoder: &str,
    names: &[&str],
    lines: impl IntoIterator<Item = String>,
) -> (usize, usize) {
    let (fast, general) = clamav_patterns(decoder);
    let read = |re: &regex::Regex, line: &str| {
        re.captures(line).map(|c| {
            names
                .iter()
                .map(|n| c.name(n).map(|m| m.as_str().to_owned()))
                .collect::<Vec<_>>()
        })
    };
    let (mut fast_reads, mut general_only) = (0, 0);
    for line in lines {
        let general_read = read(&general, &line);
        match read(&fast, &line) {
            Some(fast_read) => {
                fast_reads += 1;
                assert_eq!(Some(fast_read), general_read, "{decoder}: {line}");
            }
            None if general_read.is_some() => general_only += 1,
            None => {}
        }
    }
    (fast_reads, general_only)
}

/// `clamav_found`'s patterns, over lines built from parts that stress the
/// difference: colons and `: ` in paths, parentheses and colons in
/// signatures, hashes of every length, hex and not.
#[test]
fn clamav_found_fast_pattern_reads_as_the_general_one() {
    let paths = [
        "/tmp/a",
        "/home/u/My Files/x.exe",
        "C:\\Users\\bob\\x.exe",
        "/srv/notes: draft/e.com",
        "/a:b",
        "/a(1)",
        "/é/ü.bin",
        "instream(127.0.0.1@4242)",
    ];
    let signatures = [
        "Eicar-Signature",
        "Win.Trojan.Agent-1",
        "Php.Shell:Gen",
        "Sig(x)",
        "A.B.UNOFFICIAL",
    ];
    let md5 = "44d88612fea8a8f36de82e1278abb02f";
    let sha256 = "3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550fdab836ed";
    let infos = [
        String::new(),
        format!("({md5}:68)"),
        format!("({}:68)", &sha256[..40]),
        format!("({sha256}:68)"),
        format!("({}:68)", md5.to_uppercase()),
        format!("({md5})"),
        "(zz:1)".to_owned(),
    ];
    let mut lines = Vec::new();
    for path in paths {
        for signature in signatures {
            for info in &infos {
                lines.push(format!("{path}: {signature}{info} FOUND"));
            }
        }
    }
    let counts = fast_pattern_agrees("clamav_found", &["path", "signature", "md5", "size"], lines);
    // The fast pattern reads the lines of the five paths without `:`, the
    // four signatures without `(` and no or an MD5 detection info
    // (5 × 4 × 2); the general one reads every line.
    assert_eq!(counts, (40, 240));
}

/// `clamav_selfcheck`'s patterns, over statuses with dots anywhere.
#[test]
fn clamav_selfcheck_fast_pattern_reads_as_the_general_one() {
    let statuses = [
        "Database status OK.",
        "Database status OK",
        "Database modification detected. Forcing reload.",
        "Integrity check of daily.cld failed.",
        "",
        ".",
        "..",
        "a..",
        "..a",
        "a.b",
        "é.",
    ];
    let lines = statuses.iter().map(|s| format!("SelfCheck: {s}"));
    let counts = fast_pattern_agrees("clamav_selfcheck", &["status"], lines);
    // Read by the fast one: those without a dot but a last one (5).
    assert_eq!(counts, (5, 6));
}

/// `clamav_clean`'s patterns, over paths with colons anywhere.
#[test]
fn clamav_clean_fast_pattern_reads_as_the_general_one() {
    let paths = [
        "deploy/helm/values.yaml",
        "/home/u/My Files/a b.txt",
        "C:\\Users\\bob\\x.txt",
        "/srv/notes: draft/e.com",
        "/a:b",
        "/a: OK",
        "/é/ü.bin",
        "",
    ];
    let lines = paths.iter().map(|p| format!("{p}: OK"));
    let counts = fast_pattern_agrees("clamav_clean", &["path"], lines);
    // Read by the fast one: the three non-empty paths without `:`; the
    // general one also reads the four with one (an empty path is no line
    // of either).
    assert_eq!(counts, (3, 4));
}

/// A line on which a plain search gives up (its word at every place, each
/// read far before failing) is read by the regex engine instead, with the
/// same captures; so is every shorter one.
#[test]
fn a_line_a_plain_search_gives_up_on_is_read_by_the_regex() {
    let d = load(
        r#"
decoders:
  - name: tail
    parse:
      - regex: { pattern: 'a(?P<run>[^:b]*):(?P<word>\w+)' }
    fields:
      run: { from: run }
      word: { from: word }
    set: { event.module: tail }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plain = match &d.decoders[0].steps[0] {
        config::Step::Regex { patterns, .. } => patterns[0].regex.plain().expect("plain"),
        other => panic!("not a regex step: {other:?}"),
    };
    let mut slots = [None; plain::MAX_GROUPS];
    for n in [0, 10, 60_000] {
        let line = format!("{}baaa:end", "a".repeat(n));
        let gave_up = plain.captures(&line, &mut slots).is_none();
        assert_eq!(gave_up, n == 60_000, "{n}");
        let ev = d.decode(&input(&line));
        assert_eq!(ev.get_str("event.module"), Some("tail"), "{n}");
        assert_eq!(ev.get_str("run"), Some("aa"), "{n}");
        assert_eq!(ev.get_str("word"), Some("end"), "{n}");
    }
}
