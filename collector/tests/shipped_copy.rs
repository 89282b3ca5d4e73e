//! A folder holding a modified copy of the shipped decoders and rules, as an
//! operator makes one to adapt them: loaded together with the shipped set,
//! every name in it is defined twice. `socctl rules lint` and the collector
//! say so, and say how to run the copy on its own; with the shipped set left
//! out the same folder loads.

use std::path::Path;
use std::process::{Command, Output};

use soc_collector::app::Content;
use soc_collector::config::CollectorConfig;

/// Copies the shipped decoder, rule and list files into `dir`, with the SSH
/// brute force threshold raised in the copy.
fn copy_shipped(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    for sub in ["decoders", "rules", "lists"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for f in std::fs::read_dir(shipped.join(sub)).expect("read shipped") {
            let p = f.expect("entry").path();
            let mut text = std::fs::read_to_string(&p).expect("read");
            if p.ends_with("rules/sshd.yml") {
                assert!(text.contains("count: 5"), "the shipped SSH rule changed");
                text = text.replacen("count: 5", "count: 8", 1);
            }
            let name = p.file_name().expect("file name");
            std::fs::write(dir.join(sub).join(name), text).expect("write");
        }
    }
}

fn lint(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_socctl"))
        .args(["rules", "lint"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run socctl")
}

#[test]
fn lint_of_a_copy_of_the_shipped_set_points_to_no_builtin() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_shipped(tmp.path());

    let out = lint(tmp.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("id: rule id `ssh-brute-force-by-source` is already used at rules/sshd.yml:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("name: decoder `iptables` is already defined at decoders/iptables.yml:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("hint:") && stderr.contains("--no-builtin"),
        "{stderr}"
    );

    let out = lint(tmp.path(), &["--no-builtin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn a_name_defined_twice_in_ones_own_files_gets_no_hint() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_shipped(tmp.path());
    let sshd = std::fs::read_to_string(tmp.path().join("rules/sshd.yml")).expect("read");
    std::fs::write(tmp.path().join("rules/sshd-again.yml"), sshd).expect("write");

    let out = lint(tmp.path(), &["--no-builtin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("sshd.yml:3: id: rule id `ssh-brute-force-by-source` is already used at"),
        "{stdout}"
    );
    assert!(!stderr.contains("hint:"), "{stderr}");
}

#[test]
fn the_collector_refuses_the_copy_next_to_the_shipped_set_and_says_how_to_run_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_shipped(tmp.path());
    let load = |config: &str| {
        let p = Path::new("t.toml");
        let settings = CollectorConfig::parse(p, config)
            .expect("parse")
            .build(p, tmp.path())
            .expect("settings");
        Content::load(&settings)
    };
    let dirs =
        "[rules]\nrules_dir = \"rules\"\ndecoders_dir = \"decoders\"\nlists_dir = \"lists\"\n";

    let err = match load(dirs) {
        Ok(_) => panic!("a copy next to the shipped set loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("rule id `ssh-brute-force-by-source` is already used at rules/sshd.yml:"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("builtin = false"),
        "{err}"
    );

    let content = match load(&format!("{dirs}builtin = false\n")) {
        Ok(c) => c,
        Err(e) => panic!("the copy alone: {e}"),
    };
    let ssh = content
        .rules
        .rules()
        .iter()
        .find(|r| r.id == "ssh-brute-force-by-source")
        .expect("the copied SSH rule");
    match ssh.kind() {
        soc_rules::RuleKind::Threshold(t) => assert_eq!(t.count, 8),
        other => panic!("not a threshold: {other:?}"),
    }
}
