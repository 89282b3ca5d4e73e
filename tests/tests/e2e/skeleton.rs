//! The walking skeleton: a line written on an agency host becomes an alert a
//! responder can list, inspect and acknowledge.

use std::time::Duration;

use serde_json::Value;
use soc_e2e::{Agent, Collector, append_lines, metric_value, wait_for, write_agent_config};

pub const UFW_BLOCK_SSH: &str = "Nov 28 08:01:12 web-01 kernel: [81234.100201] [UFW BLOCK] IN=eth0 OUT= \
    MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.45 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 \
    TTL=51 ID=40112 DF PROTO=TCP SPT=51514 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0";

pub fn clamd_found(i: usize) -> String {
    format!(
        "Nov 28 08:02:44 web-01 clamd[812]: /home/clerk/Downloads/file-{i}.exe: Win.Trojan.Agent-{i} FOUND"
    )
}

#[test]
fn a_line_appended_to_a_watched_file_becomes_an_alert_a_responder_can_acknowledge()
-> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let secret = collector.enroll("web-01")?;
    let fw = tmp.path().join("ufw.log");
    let av = tmp.path().join("clamav.log");
    append_lines(
        &fw,
        &["Nov 28 08:00:00 web-01 kernel: unrelated boot noise".to_owned()],
    )?;
    append_lines(&av, &[])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &soc_e2e::firewall_and_antivirus(&fw, &av),
    )?;
    let mut agent = Agent::start(&cfg)?;

    // The agent enrols and ships the existing line.
    wait_for(
        "the agent to become active",
        Duration::from_secs(30),
        || {
            let agents = collector.socctl_ndjson(&["agents", "list"]).ok()?;
            agents
                .iter()
                .any(|a| {
                    a["name"] == "web-01" && a["state"] == "active" && a["events_received"] == 1
                })
                .then_some(())
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", agent.log_text()))?;

    append_lines(&fw, &[UFW_BLOCK_SSH.to_owned()])?;
    append_lines(&av, &[clamd_found(1)])?;

    let alerts = wait_for("two alerts", Duration::from_secs(30), || {
        let alerts = collector.socctl_ndjson(&["alerts", "list"]).ok()?;
        (alerts.len() >= 2).then_some(alerts)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\ncollector log:\n{}\nagent log:\n{}",
            collector.log_text(),
            agent.log_text()
        )
    })?;
    assert_eq!(alerts.len(), 2, "exactly two alerts: {alerts:#?}");

    let fw_alert = alerts
        .iter()
        .find(|a| a["evidence"][0]["line"] == UFW_BLOCK_SSH)
        .expect("an alert whose evidence is the firewall line");
    assert_eq!(fw_alert["status"], "open");
    assert_eq!(fw_alert["host"], "web-01");
    let ev = &fw_alert["evidence"][0];
    assert_eq!(ev["fields"]["source.ip"], "203.0.113.45");
    assert_eq!(ev["fields"]["destination.port"], 22);
    assert_eq!(ev["fields"]["event.action"], "deny");
    assert_eq!(ev["agent"], "web-01");
    assert_eq!(ev["path"], fw.display().to_string());

    let av_alert = alerts
        .iter()
        .find(|a| a["evidence"][0]["line"] == clamd_found(1).as_str())
        .expect("an alert whose evidence is the clamd line");
    assert_eq!(av_alert["severity"], "high");
    assert_eq!(
        av_alert["evidence"][0]["fields"]["file.path"],
        "/home/clerk/Downloads/file-1.exe"
    );

    // Filters.
    let high = collector.socctl_ndjson(&["alerts", "list", "--severity", "high"])?;
    assert!(
        high.iter()
            .all(|a| a["severity"] == "high" || a["severity"] == "critical")
    );
    assert!(high.iter().any(|a| a["id"] == av_alert["id"]));
    let by_rule = collector.socctl_ndjson(&[
        "alerts",
        "list",
        "--rule",
        av_alert["rule_id"].as_str().unwrap_or(""),
    ])?;
    assert_eq!(by_rule.len(), 1);
    assert_eq!(
        collector
            .socctl_ndjson(&["alerts", "list", "--host", "no-such-host"])?
            .len(),
        0
    );
    assert_eq!(
        collector
            .socctl_ndjson(&["alerts", "list", "--since", "1h"])?
            .len(),
        2
    );

    // Show, in both forms.
    let id = fw_alert["id"].as_u64().expect("numeric id").to_string();
    let shown: Value = collector.socctl_json(&["alerts", "show", &id])?;
    assert_eq!(shown["evidence"][0]["line"], UFW_BLOCK_SSH);
    let text = collector.socctl(&["alerts", "show", &id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(UFW_BLOCK_SSH), "{text}");
    assert!(
        text.contains("source.ip") && text.contains("203.0.113.45"),
        "{text}"
    );

    // Acknowledge with a note.
    let out = collector.socctl(&["alerts", "ack", &id, "--note", "known scanner"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = collector.socctl_json(&["alerts", "show", &id])?;
    assert_eq!(shown["status"], "acknowledged");
    let last = shown["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("history");
    assert_eq!(last["action"], "acknowledged");
    assert_eq!(last["by"], "admin");
    assert_eq!(last["note"], "known scanner");
    let open = collector.socctl_ndjson(&["alerts", "list", "--status", "open"])?;
    assert_eq!(open.len(), 1);

    // The human table.
    let out = collector.socctl(&["alerts", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("SEVERITY") && table.contains("acknowledged"),
        "{table}"
    );

    // The same malware in the same file again: within the rule's
    // suppression period, so no new alert; it is counted on the first.
    append_lines(&av, &[clamd_found(1)])?;
    let av_id = av_alert["id"].as_u64().expect("numeric id").to_string();
    let shown = wait_for("the repeat counted", Duration::from_secs(30), || {
        let a: Value = collector.socctl_json(&["alerts", "show", &av_id]).ok()?;
        (a["suppressed"] == 1).then_some(a)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}
collector log:
{}",
            collector.log_text()
        )
    })?;
    assert_eq!(
        shown["last_repeat_ms"], shown["event_time_ms"],
        "same line time"
    );
    let text = collector.socctl(&["alerts", "show", &av_id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("repeats   1 suppressed since"), "{text}");
    let out = collector.socctl(&["alerts", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("(repeated 1×)"), "{table}");
    assert_eq!(collector.socctl_ndjson(&["alerts", "list"])?.len(), 2);

    // Agents list: name, last seen, events received.
    let agents = collector.socctl_ndjson(&["agents", "list"])?;
    assert_eq!(agents[0]["events_received"], 4);
    assert!(agents[0]["last_seen_ms"].as_i64().is_some());

    // Metrics reflect it.
    let m = collector.metrics_text()?;
    assert_eq!(metric_value(&m, "soc_events_received_total", ""), 4.0);
    assert_eq!(
        metric_value(
            &m,
            "soc_alerts_suppressed_total",
            "rule=\"clamav-malware-detected\""
        ),
        1.0
    );
    assert_eq!(
        metric_value(&m, "soc_alerts_total", "severity=\"high\""),
        1.0
    );
    assert!(metric_value(&m, "soc_events_decoded_total", "module=\"iptables\"") >= 1.0);

    agent.stop()?;
    // Both logs go to files here: plain text, no terminal colour codes.
    for (who, log) in [
        ("collector", collector.log_text()),
        ("agent", agent.log_text()),
    ] {
        assert!(log.contains("INFO"), "{who} log:\n{log}");
        assert!(
            !log.contains('\u{1b}'),
            "colour codes in the {who} log:\n{log}"
        );
    }
    Ok(())
}

#[test]
fn bad_credentials_and_bad_batches_are_refused_with_clear_errors() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;

    // No token, wrong token.
    let out = std::process::Command::new(soc_e2e::bin("socctl"))
        .args(["alerts", "list"])
        .env("SOC_SERVER", &collector.https)
        .env("SOC_CA_CERT", &collector.ca_file)
        .env("SOC_TOKEN", "soc_tk_wrong")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");

    // A CA that does not match: the TLS handshake fails, nothing is sent.
    let other_ca = tmp.path().join("other-ca.pem");
    let other = Collector::start(&tmp.path().join("other"), "127.0.0.1:0", &[])?;
    std::fs::copy(&other.ca_file, &other_ca)?;
    let out = std::process::Command::new(soc_e2e::bin("socctl"))
        .args(["status"])
        .env("SOC_SERVER", &collector.https)
        .env("SOC_CA_CERT", &other_ca)
        .env("SOC_TOKEN", &collector.token)
        .output()?;
    assert!(
        !out.status.success(),
        "a server signed by another CA must not be trusted"
    );

    // An enrolment secret works once.
    let secret = collector.enroll("web-02")?;
    assert!(
        collector.enroll("web-02").is_ok(),
        "re-issuing a pending secret is allowed"
    );
    let _ = secret;
    let m = collector.metrics_text()?;
    assert!(metric_value(&m, "soc_auth_failures_total", "kind=\"token\"") >= 1.0);
    Ok(())
}
