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
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
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
    assert_eq!(warnings, want, "{stdout}");
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
        let warnings: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .collect();
        assert_eq!(warnings, [want[0].as_str()], "{command}: {stdout}");
        assert!(stdout.contains("(1 warning(s)"), "{command}: {stdout}");
    }
}
