//! `socctl rules lint` and `socctl rules test` warn of a field a rule reads
//! that no loaded decoder sets (the rule can never fire), and load a
//! decoder folder kept apart from the rules with `--decoders`, as the
//! collector loads `rules.decoders_dir` beside `rules.rules_dir`.

use std::path::Path;
use std::process::Output;

const RULES: &str = r#"rules:
  - id: local-typo
    title: A misspelt field
    severity: low
    summary: s
    match: { field: sorce.ip, equals: 192.0.2.1 }
  - id: local-app-user
    title: A field of a site decoder
    severity: low
    summary: "{app.user} did it"
    match: { field: app.action, equals: wipe }
"#;

const DECODERS: &str = r#"decoders:
  - name: local_app
    after: [syslog]
    when: { program: myapp }
    parse:
      - regex: { pattern: '^(?P<user>\S+) (?P<action>\S+)$' }
    fields:
      app.user: { from: user }
      app.action: { from: action }
"#;

/// The warning lines of `socctl`'s output.
fn warnings(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect()
}

fn socctl(args: &[&str], dirs: &[&Path]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_socctl"))
        .args(args)
        .args(dirs)
        .output()
        .expect("run socctl")
}

#[test]
fn a_field_no_decoder_sets_is_a_warning_and_decoders_elsewhere_count() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (rules, decoders) = (tmp.path().join("rules"), tmp.path().join("decoders"));
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::create_dir_all(&decoders).expect("mkdir");
    std::fs::write(rules.join("local.yml"), RULES).expect("write");
    std::fs::write(decoders.join("app.yml"), DECODERS).expect("write");
    let file = rules.join("local.yml").display().to_string();

    // The rules alone: both rules read fields no loaded decoder sets.
    let out = socctl(&["rules", "lint"], &[&rules]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "warnings only: {stdout}");
    let want = [
        format!(
            "warning: {file}:6: rule `local-typo` reads `sorce.ip`, which no loaded decoder \
             sets: no event can hold it; did you mean `source.ip`?"
        ),
        format!(
            "warning: {file}:10: rule `local-app-user` reads `app.user`, which no loaded \
             decoder sets: no event can hold it"
        ),
        format!(
            "warning: {file}:11: rule `local-app-user` reads `app.action`, which no loaded \
             decoder sets: no event can hold it"
        ),
    ];
    assert_eq!(warnings(&stdout), want, "{stdout}");
    assert!(
        stdout.contains("ok: ") && stdout.contains("(3 warning(s)"),
        "{stdout}"
    );

    // With the decoder folder given apart: only the misspelt field is left.
    let decoders_arg = decoders.display().to_string();
    for command in ["lint", "test"] {
        let out = socctl(&["rules", command, "--decoders", &decoders_arg], &[&rules]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command}: {stdout}");
        assert_eq!(warnings(&stdout), [want[0].as_str()], "{command}: {stdout}");
        assert!(stdout.contains("(1 warning(s)"), "{command}: {stdout}");
    }
}

/// A list entry that looks like an address but does not parse as one is
/// kept as text and matches no address: a warning, with its file and line;
/// names in the same list are not.
#[test]
fn a_list_entry_that_is_almost_an_address_is_a_warning() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lists = tmp.path().join("lists");
    std::fs::create_dir_all(&lists).expect("mkdir");
    std::fs::write(
        lists.join("watch.txt"),
        "203.0.113.7\n198.51.100.300\nEicar-Signature\n10.0.0.0/33\n",
    )
    .expect("write");
    let file = lists.join("watch.txt").display().to_string();
    let lists_arg = lists.display().to_string();
    for command in ["lint", "test"] {
        let out = socctl(&["rules", command, "--lists", &lists_arg], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command}: {stdout}");
        let want: Vec<String> = [(2, "198.51.100.300"), (4, "10.0.0.0/33")]
            .iter()
            .map(|(line, entry)| {
                format!(
                    "warning: {file}:{line}: list entry `{entry}` looks like an address or \
                     network but is not one: it is compared as text and matches no address"
                )
            })
            .collect();
        assert_eq!(warnings(&stdout), want, "{command}: {stdout}");
        assert!(stdout.contains("(2 warning(s)"), "{command}: {stdout}");
    }
}

#[test]
fn rules_fields_lists_each_field_with_the_decoders_that_set_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let decoders = tmp.path().join("decoders");
    std::fs::create_dir_all(&decoders).expect("mkdir");
    std::fs::write(decoders.join("app.yml"), DECODERS).expect("write");
    let decoders_arg = decoders.display().to_string();

    let out = socctl(&["rules", "fields", "--decoders", &decoders_arg], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"app.user  local_app"), "{stdout}");
    assert!(lines.contains(&"message  (decoding)"), "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with("source.ip  ")
            && l.contains("iptables")
            && l.contains("sshd_login")),
        "{stdout}"
    );
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "in name order");

    let out = socctl(
        &["--json", "rules", "fields", "--decoders", &decoders_arg],
        &[],
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert!(rows.contains(&serde_json::json!({
        "field": "app.user", "set_by_decoding": false, "decoders": ["local_app"]
    })));
    assert!(rows.contains(&serde_json::json!({
        "field": "agent.name", "set_by_decoding": true, "decoders": []
    })));
}

/// `socctl decode big.log | head`, `socctl rules test | true`: once the
/// reader is gone, socctl stops quietly, with success, as other
/// command-line tools do.
#[test]
fn output_to_a_reader_that_went_away_ends_quietly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("auth.log");
    let text: String = (0..20_000)
        .map(|i| {
            format!(
                "Mar  1 00:00:00 bastion01 sshd[{i}]: Failed password for root from 198.51.100.{} port {} ssh2\n",
                i % 250,
                1000 + i % 60000
            )
        })
        .collect();
    std::fs::write(&log, text).expect("write");
    for args in [vec!["decode"], vec!["rules", "test", "--json", "--replay"]] {
        // Twice what a pipe holds: a reader that goes away early is seen.
        let whole = std::process::Command::new(env!("CARGO_BIN_EXE_socctl"))
            .args(&args)
            .arg(&log)
            .output()
            .expect("run socctl");
        assert!(whole.status.success(), "{args:?}");
        assert!(
            whole.stdout.len() > 128 * 1024,
            "{args:?}: {} bytes",
            whole.stdout.len()
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_socctl"))
            .args(&args)
            .arg(&log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run socctl");
        // Read a little, then go away.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 64];
        std::io::Read::read_exact(&mut stdout, &mut first).expect("some output");
        drop(stdout);
        let out = child.wait_with_output().expect("socctl ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    // Commands that print a few lines (`println!`, which panics on a
    // closed pipe): the reader goes away before socctl has loaded the
    // shipped content and printed anything (`socctl rules test | true`).
    for args in [vec!["rules", "test"], vec!["rules", "fields"]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_socctl"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run socctl");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("socctl ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
