//! Rule reload with the real binaries: a rule added to `rules.rules_dir`
//! works after `socctl rules reload`; an unchanged threshold rule keeps its
//! half-way state across the reload (3 failures before + 2 after = 1
//! alert); a broken file keeps the running set and the answer names the
//! file and line.

use std::process::Output;
use std::time::Duration;

use soc_e2e::{
    Agent, Collector, SourceSpec, append_lines, metric_value, wait_for, write_agent_config,
};

const ALPHA: &str = "rules:
  - id: local-canary-alpha
    title: Canary alpha
    severity: low
    match:
      all:
        - { field: process.name, equals: canary }
        - { field: message, contains: alpha }
    summary: alpha on {host.name}
";

const BETA: &str = "
  - id: local-canary-beta
    title: Canary beta
    severity: low
    match:
      all:
        - { field: process.name, equals: canary }
        - { field: message, contains: beta }
    summary: beta on {host.name}
";

const BROKEN: &str = "rules:
  - id: local-broken
    title: Broken on purpose
    severity: low
    match:
      field: message
      resembles: something
";

/// Loads, but reads a field no decoder sets: a warning, not an error.
const MISSPELT: &str = "rules:
  - id: local-misspelt
    title: Misspelt on purpose
    severity: low
    summary: s
    match: { field: sorce.ip, equals: 192.0.2.1 }
";

fn failure(second: u32) -> String {
    format!(
        "Nov 28 08:03:{second:02} bastion sshd[4242]: Failed password for root from 203.0.113.9 port {} ssh2",
        4000 + second
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn count(c: &Collector, rule: &str) -> anyhow::Result<usize> {
    Ok(c.socctl_ndjson(&["alerts", "list", "--rule", rule])?.len())
}

/// The entry of rule `id` in a `socctl rules list --json`.
fn rule(listed: &[serde_json::Value], id: &str) -> anyhow::Result<serde_json::Value> {
    listed
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("rule {id} not listed: {listed:?}"))
}

fn wait_processed(c: &Collector, cursor: u64) -> anyhow::Result<()> {
    wait_for(
        &format!("detection cursor {cursor}"),
        Duration::from_secs(30),
        || {
            let s = c.status().ok()?;
            (s["detection_cursor"].as_u64() == Some(cursor)).then_some(())
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}: {:?}\n{}", c.status().ok(), c.log_text()))
}

#[test]
fn reload_adds_rules_keeps_half_way_state_and_refuses_a_broken_file() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let rules_dir = tmp.path().join("rules");
    std::fs::create_dir_all(&rules_dir)?;
    std::fs::write(rules_dir.join("local.yml"), ALPHA)?;
    let cfg = tmp.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!("[rules]\nrules_dir = \"{}\"\n", rules_dir.display()),
    )?;
    let cfg_arg = cfg.display().to_string();
    let c = Collector::start(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &["--config", &cfg_arg],
    )?;
    let secret = c.enroll("bastion")?;
    let log = tmp.path().join("auth.log");
    append_lines(
        &log,
        &[
            failure(1),
            failure(2),
            failure(3),
            "Nov 28 08:03:04 bastion canary[1]: alpha and beta".into(),
        ],
    )?;
    let agent_cfg = write_agent_config(
        &tmp.path().join("agent"),
        "bastion",
        &c,
        &secret,
        &[SourceSpec {
            name: "auth",
            source_type: "auth",
            include: &log,
        }],
    )?;
    let _agent = Agent::start(&agent_cfg)?;
    wait_processed(&c, 4)?;
    assert_eq!(count(&c, "local-canary-alpha")?, 1);
    assert_eq!(count(&c, "local-canary-beta")?, 0, "not loaded yet");
    assert_eq!(count(&c, "ssh-brute-force-by-source")?, 0, "3 of 5");

    // `rules list`: the rules in force, where they come from, what they
    // hold open and their newest alert.
    let listed = c.socctl_ndjson(&["rules", "list"])?;
    let alpha = rule(&listed, "local-canary-alpha")?;
    assert_eq!(alpha["kind"], "single");
    assert_eq!(alpha["enabled"], true);
    assert_eq!(
        alpha["file"],
        rules_dir.join("local.yml").display().to_string()
    );
    assert_eq!(alpha["line"], 2);
    assert_eq!(alpha["open_groups"], 0);
    assert_eq!(alpha["last_alert"]["status"], "open", "{alpha}");
    let ssh = rule(&listed, "ssh-brute-force-by-source")?;
    assert_eq!(ssh["kind"], "threshold");
    assert_eq!(ssh["file"], "rules/sshd.yml", "a shipped rule");
    assert_eq!(
        ssh["open_groups"], 1,
        "3 of 5 failures from one address: {ssh}"
    );
    assert!(ssh.get("last_alert").is_none(), "{ssh}");
    assert!(
        rule(&listed, "local-canary-beta").is_err(),
        "not loaded yet"
    );
    let table = c.socctl(&["rules", "list"]);
    assert!(table.status.success(), "{}", text(&table));
    let table = text(&table);
    assert!(
        table.contains("local-canary-alpha")
            && table.contains("threshold")
            && table.contains("OPEN GROUPS"),
        "{table}"
    );

    assert_eq!(
        metric_value(&c.metrics_text()?, "soc_rule_fields_unset", ""),
        0.0
    );
    // Add a rule, reload.
    std::fs::write(rules_dir.join("local.yml"), format!("{ALPHA}{BETA}"))?;
    let out = c.socctl(&["rules", "reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
    append_lines(
        &log,
        &[
            failure(5),
            "Nov 28 08:03:06 bastion canary[1]: beta only".into(),
            failure(7),
        ],
    )?;
    wait_processed(&c, 7)?;
    assert_eq!(count(&c, "local-canary-beta")?, 1, "the new rule works");
    assert_eq!(
        count(&c, "ssh-brute-force-by-source")?,
        1,
        "3 failures before the reload + 2 after = 1 alert"
    );
    assert_eq!(count(&c, "local-canary-alpha")?, 1);
    let listed = c.socctl_ndjson(&["rules", "list"])?;
    let beta = rule(&listed, "local-canary-beta")?;
    assert_eq!(beta["last_alert"]["status"], "open", "{beta}");
    let ssh = rule(&listed, "ssh-brute-force-by-source")?;
    assert_eq!(ssh["open_groups"], 0, "the threshold fired: {ssh}");
    assert_eq!(ssh["last_alert"]["status"], "open", "{ssh}");

    // A broken file: refused with file and line, the running set stays.
    let broken = rules_dir.join("broken.yml");
    std::fs::write(&broken, BROKEN)?;
    let out = c.socctl(&["rules", "reload"]);
    assert!(!out.status.success(), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("422"), "{msg}");
    assert!(msg.contains("previous rules stay in force"), "{msg}");
    let at = format!("{}:7", broken.display());
    assert!(msg.contains(&at), "the answer names {at}: {msg}");
    append_lines(
        &log,
        &["Nov 28 08:03:08 bastion canary[1]: beta again".into()],
    )?;
    wait_processed(&c, 8)?;
    assert_eq!(count(&c, "local-canary-beta")?, 2, "the old set still runs");
    let audit = c.socctl_ndjson(&["audit"])?;
    let outcomes: Vec<&str> = audit
        .iter()
        .filter(|e| e["action"] == "rules.reload")
        .map(|e| e["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, vec!["success", "failed"]);

    // A rule that reads a field no decoder sets is taken, with a warning
    // that names its line and the field it likely means.
    std::fs::write(&broken, MISSPELT)?;
    let out = c.socctl(&["rules", "reload"]);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    let at = format!(
        "{}:6: rule `local-misspelt` reads `sorce.ip`",
        broken.display()
    );
    assert!(
        msg.contains(&format!("warning: {at}")) && msg.contains("did you mean `source.ip`?"),
        "{msg}"
    );
    assert!(rule(&c.socctl_ndjson(&["rules", "list"])?, "local-misspelt").is_ok());
    // Counted for Prometheus (`SocRuleCannotFire`).
    let unset = metric_value(&c.metrics_text()?, "soc_rule_fields_unset", "");
    assert_eq!(unset, 1.0);
    println!(
        "reload test: new rule fired after reload; 3+2 failures across the reload = 1 alert; broken file refused at {at}"
    );
    Ok(())
}
