//! Backup and restore with the real binaries: a threshold half-way at
//! backup time (3 of 5 SSH failures) completes on a fresh collector restored
//! from it (2 more failures: exactly one alert), and a copy with one flipped
//! byte is refused, by socctl and by the collector, changing nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use soc_e2e::{Agent, Collector, SourceSpec, append_lines, wait_for, write_agent_config};

const RULE: &str = "ssh-brute-force-by-source";

fn failure(second: u32, port: u32) -> String {
    format!(
        "Nov 28 08:02:{second:02} bastion sshd[4242]: Failed password for root from 203.0.113.9 port {port} ssh2"
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Enrols `bastion` on `c` and starts an agent shipping `log` to it.
fn agent_for(c: &Collector, dir: &Path, log: &Path) -> anyhow::Result<Agent> {
    let secret = c.enroll("bastion")?;
    let cfg = write_agent_config(
        dir,
        "bastion",
        c,
        &secret,
        &[SourceSpec {
            name: "auth",
            source_type: "auth",
            include: log,
        }],
    )?;
    Agent::start(&cfg)
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
    .map_err(|e| anyhow::anyhow!("{e}: status {:?}\n{}", c.status().ok(), c.log_text()))
}

fn rule_alerts(c: &Collector) -> anyhow::Result<Vec<serde_json::Value>> {
    c.socctl_ndjson(&["alerts", "list", "--rule", RULE])
}

/// POSTs a file to the restore route directly (socctl refuses a bad copy
/// before sending it; this proves the collector refuses it too).
fn raw_restore(c: &Collector, bytes: Vec<u8>) -> anyhow::Result<(u16, String)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&c.ca_file)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()?;
        let r = client
            .post(format!(
                "{}/api/v1/backups/restore?name=flipped.socbak",
                c.https
            ))
            .bearer_auth(&c.token)
            .body(bytes)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

#[test]
fn a_half_way_threshold_survives_a_restore_onto_a_fresh_collector() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;

    // The old collector sees 3 of the 5 failures, then is backed up.
    let mut old = Collector::start(&tmp.path().join("old"), "127.0.0.1:0", &[])?;
    let log = tmp.path().join("auth.log");
    append_lines(
        &log,
        &[failure(1, 4241), failure(2, 4242), failure(3, 4243)],
    )?;
    let mut agent = agent_for(&old, &tmp.path().join("agent-old"), &log)?;
    wait_processed(&old, 3)?;
    assert!(rule_alerts(&old)?.is_empty(), "3 failures are not 5");
    let info: serde_json::Value = old.socctl_json(&["backup", "create"])?;
    assert_eq!(info["cursor"], 3);
    let file = PathBuf::from(info["path"].as_str().unwrap_or_default());
    assert!(file.is_file(), "{info}");
    let listed = old.socctl_ndjson(&["backup", "list"])?;
    assert!(
        listed.iter().any(|b| b["name"] == info["name"]),
        "listed: {listed:?}"
    );
    let verify = old.socctl(&["backup", "verify", &file.display().to_string()]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("backup is valid"),
        "{}",
        text(&verify)
    );
    let metrics = old.metrics_text()?;
    assert!(
        soc_e2e::metric_value(&metrics, "soc_backup_size_bytes", "")
            == std::fs::metadata(&file)?.len() as f64,
        "soc_backup_size_bytes"
    );
    assert!(soc_e2e::metric_value(&metrics, "soc_backup_last_success_timestamp_seconds", "") > 0.0);
    agent.stop()?;
    old.stop()?;
    // Keep the backup apart from the old data folder.
    let copy = tmp.path().join(file.file_name().unwrap_or_default());
    std::fs::copy(&file, &copy)?;
    std::fs::remove_dir_all(tmp.path().join("old"))?;

    // A fresh collector: new data folder, the agent enrolled again.
    let new = Collector::start(&tmp.path().join("new"), "127.0.0.1:0", &[])?;
    let out = new.socctl(&["backup", "restore", &copy.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("detection cursor 3"), "{}", text(&out));
    let log2 = tmp.path().join("auth-new.log");
    append_lines(&log2, &[failure(4, 4244), failure(5, 4245)])?;
    let agent = agent_for(&new, &tmp.path().join("agent-new"), &log2)?;
    wait_processed(&new, 5)?;
    let alerts = wait_for("the brute-force alert", Duration::from_secs(10), || {
        rule_alerts(&new).ok().filter(|a| !a.is_empty())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let alerts_now = rule_alerts(&new)?;
    assert_eq!(alerts_now.len(), 1, "exactly one alert: {alerts_now:?}");
    let a = &alerts[0];
    assert!(
        a["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("5 failed SSH logins from 203.0.113.9"),
        "{a}"
    );
    // Evidence: the two lines this collector received (the restored three
    // are in the old journal, counted as omitted).
    assert_eq!(a["evidence"].as_array().map(Vec::len), Some(2), "{a}");
    assert_eq!(a["evidence_omitted"], 3, "{a}");

    // A copy with one byte flipped is refused and changes nothing.
    let before_status = new.status()?;
    let before_alerts = new.socctl_ndjson(&["alerts", "list"])?;
    let mut bytes = std::fs::read(&copy)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let flipped = tmp.path().join("flipped.socbak");
    std::fs::write(&flipped, &bytes)?;
    let out = new.socctl(&["backup", "verify", &flipped.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("checksum does not match"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("nothing was changed"),
        "{}",
        text(&out)
    );
    let out = new.socctl(&["backup", "restore", &flipped.display().to_string()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));
    assert!(
        text(&out).contains("not sent, nothing was changed"),
        "{}",
        text(&out)
    );
    let (status, body) = raw_restore(&new, bytes)?;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("checksum does not match"), "{body}");
    assert!(body.contains("nothing was changed"), "{body}");
    let after_status = new.status()?;
    for key in ["detection_cursor", "journal_last_seq", "alerts_stored"] {
        assert_eq!(after_status[key], before_status[key], "{key}");
    }
    assert_eq!(new.socctl_ndjson(&["alerts", "list"])?, before_alerts);
    let audit = new.socctl_ndjson(&["audit"])?;
    let restores: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|e| e["action"] == "backup.restore")
        .collect();
    let outcomes: Vec<&str> = restores
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, vec!["success", "failed"], "{restores:?}");
    drop(agent);
    println!(
        "backup test: 3 failures backed up at cursor 3, restored onto a fresh collector, 2 more: {} alert; a flipped byte refused (HTTP {status})",
        alerts_now.len()
    );
    Ok(())
}
