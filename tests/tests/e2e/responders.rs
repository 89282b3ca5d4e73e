//! The responders' workflow through the real `socctl` against a real
//! collector fed by a real agent: filters, follow, the alert lifecycle,
//! bulk acknowledgement, roles, revocation, the audit log, and webhook
//! forwarding to a receiver that is down and comes back.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use soc_e2e::{
    Agent, Collector, SourceSpec, append_lines, metric_value, wait_for, write_agent_config,
};

use crate::skeleton::clamd_found;

fn ufw(host: &str, src: &str, port: u16) -> String {
    format!(
        "Nov 28 08:01:12 {host} kernel: [81234.100201] [UFW BLOCK] IN=eth0 OUT= \
         MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={src} DST=192.0.2.10 LEN=60 TOS=0x00 \
         PREC=0x00 TTL=51 ID=40112 DF PROTO=TCP SPT=51514 DPT={port} WINDOW=64240 RES=0x00 SYN URGP=0"
    )
}

/// socctl with a given token (not the admin's), stdin closed.
fn socctl_as(c: &Collector, token: &str, args: &[&str]) -> Output {
    Command::new(soc_e2e::bin("socctl"))
        .args(args)
        .env("SOC_SERVER", &c.https)
        .env("SOC_TOKEN", token)
        .env("SOC_CA_CERT", &c.ca_file)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("running socctl")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "socctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "socctl should have failed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

fn ids(alerts: &[Value]) -> Vec<u64> {
    let mut v: Vec<u64> = alerts.iter().filter_map(|a| a["id"].as_u64()).collect();
    v.sort_unstable();
    v
}

fn create_token(c: &Collector, name: &str, role: &str) -> anyhow::Result<String> {
    let v: Value = c.socctl_json(&["tokens", "create", name, "--role", role])?;
    assert_eq!(v["role"], role);
    Ok(v["token"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn responders_filter_follow_handle_and_audit_alerts_with_roles() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let viewer = create_token(&collector, "vera", "viewer")?;
    let responder = create_token(&collector, "resp", "responder")?;

    // Follow from before anything happens.
    let mut follow = Command::new(soc_e2e::bin("socctl"))
        .args(["alerts", "follow", "--json"])
        .env("SOC_SERVER", &collector.https)
        .env("SOC_TOKEN", &viewer)
        .env("SOC_CA_CERT", &collector.ca_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let followed = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let followed = followed.clone();
        let stdout = follow.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Ok(mut f) = followed.lock()
                {
                    f.push(v);
                }
            }
        });
    }

    let secret = collector.enroll("web-01")?;
    let fw = tmp.path().join("ufw.log");
    let av = tmp.path().join("clamav.log");
    append_lines(&fw, &[])?;
    append_lines(&av, &[])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &soc_e2e::firewall_and_antivirus(&fw, &av),
    )?;
    let mut agent = Agent::start(&cfg)?;
    append_lines(
        &fw,
        &[
            ufw("web-01", "203.0.113.45", 22),
            ufw("web-01", "203.0.113.46", 3389),
            ufw("web-01", "203.0.113.45", 445),
            ufw("web-02", "198.51.100.9", 22),
            ufw("web-02", "198.51.100.9", 23),
        ],
    )?;
    append_lines(&av, &[clamd_found(1), clamd_found(2)])?;
    let all = wait_for("seven alerts", Duration::from_secs(60), || {
        let a = collector.socctl_ndjson(&["alerts", "list"]).ok()?;
        (a.len() >= 7).then_some(a)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", collector.log_text(), agent.log_text()))?;
    assert_eq!(all.len(), 7);
    let fw_rule = all
        .iter()
        .find(|a| a["severity"] == "low")
        .and_then(|a| a["rule_id"].as_str())
        .expect("a firewall alert")
        .to_owned();

    // Filters, each against what we wrote.
    let count = |args: &[&str]| -> usize {
        let mut a = vec!["alerts", "list"];
        a.extend_from_slice(args);
        collector
            .socctl_ndjson(&a)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    };
    assert_eq!(count(&["--severity", "high"]), 2);
    assert_eq!(count(&["--severity", "low"]), 7);
    assert_eq!(count(&["--severity", "low", "--severity-exactly"]), 5);
    assert_eq!(count(&["--host", "WEB-02"]), 2);
    assert_eq!(count(&["--source-ip", "203.0.113.0/24"]), 3);
    assert_eq!(count(&["--src", "203.0.113.45"]), 2);
    assert_eq!(count(&["--src", "198.51.100.9", "--host", "web-01"]), 0);
    assert_eq!(count(&["--destination-ip", "192.0.2.0/28"]), 5);
    assert_eq!(count(&["--rule", &fw_rule, "--host", "web-01"]), 3);
    assert_eq!(count(&["--agent", "web-01"]), 7);
    assert_eq!(count(&["--tag", "attack.t1133"]), 5);
    assert_eq!(count(&["--since", "1h"]), 7);
    assert_eq!(count(&["--until", "1h"]), 0);
    assert_eq!(count(&["--status", "open", "--limit", "3"]), 3);
    let oldest =
        collector.socctl_ndjson(&["alerts", "list", "--sort", "oldest", "--limit", "2"])?;
    let page2 = collector.socctl_ndjson(&[
        "alerts",
        "list",
        "--sort",
        "oldest",
        "--limit",
        "2",
        "--after",
        &oldest[1]["id"].to_string(),
    ])?;
    assert!(oldest[0]["id"].as_u64() < oldest[1]["id"].as_u64());
    assert!(oldest[1]["id"].as_u64() < page2[0]["id"].as_u64());
    let bad = collector.socctl(&["alerts", "list", "--src", "not-an-ip"]);
    assert!(refused(&bad).contains("source_ip"));

    // Follow saw every alert, once.
    let seen = wait_for("follow to see all alerts", Duration::from_secs(20), || {
        let f = followed.lock().ok()?.clone();
        (f.len() >= 7).then_some(f)
    })?;
    assert_eq!(ids(&seen), ids(&all));

    // The lifecycle, by a responder.
    let av_alert = all
        .iter()
        .find(|a| a["severity"] == "high")
        .expect("clamd alert");
    let id = av_alert["id"].to_string();
    ok(&socctl_as(
        &collector,
        &responder,
        &["alerts", "ack", &id, "--note", "looking"],
    ));
    ok(&socctl_as(
        &collector,
        &responder,
        &["alerts", "assign", &id, "alice"],
    ));
    ok(&socctl_as(
        &collector,
        &responder,
        &["alerts", "note", &id, "user confirms download"],
    ));
    let out = ok(&socctl_as(
        &collector,
        &responder,
        &[
            "alerts",
            "close",
            &id,
            "--reason",
            "true_positive",
            "--note",
            "reimaged",
        ],
    ));
    assert!(out.contains("closed (true_positive)"), "{out}");
    let err = refused(&socctl_as(&collector, &responder, &["alerts", "ack", &id]));
    assert!(err.contains("closed") && err.contains("409"), "{err}");
    assert_eq!(count(&["--status", "closed", "--assignee", "alice"]), 1);
    ok(&socctl_as(
        &collector,
        &responder,
        &["alerts", "reopen", &id],
    ));
    let shown: Value = collector.socctl_json(&["alerts", "show", &id])?;
    assert_eq!(shown["status"], "open");
    assert_eq!(shown["assignee"], "alice");
    let history: Vec<(String, String)> = shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["action"].as_str().unwrap_or("").to_owned(),
                h["by"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        ("created", "soc"),
        ("acknowledged", "resp"),
        ("assigned", "resp"),
        ("noted", "resp"),
        ("closed", "resp"),
        ("reopened", "resp"),
    ];
    assert_eq!(
        history,
        expect.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    assert_eq!(shown["history"][4]["detail"], "true_positive");
    assert_eq!(shown["history"][4]["note"], "reimaged");
    assert!(shown["history"][5]["at_ms"].as_i64() >= shown["history"][4]["at_ms"].as_i64());

    // Bulk acknowledgement: refused without --yes when nobody can confirm.
    let bulk = ["alerts", "ack", "--rule", &fw_rule, "--host", "web-02"];
    let err = refused(&socctl_as(&collector, &responder, &bulk));
    assert!(
        err.contains("acknowledge 2 alerts") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(count(&["--status", "acknowledged"]), 0);
    let mut with_yes = bulk.to_vec();
    with_yes.push("--yes");
    let out = ok(&socctl_as(&collector, &responder, &with_yes));
    assert!(out.contains("2 of 2"), "{out}");
    assert_eq!(count(&["--status", "acknowledged", "--host", "web-02"]), 2);
    assert_eq!(count(&["--status", "open"]), 5);

    // Roles: the viewer reads but cannot change; the responder cannot administer.
    ok(&socctl_as(&collector, &viewer, &["alerts", "list"]));
    let err = refused(&socctl_as(&collector, &viewer, &["alerts", "ack", &id]));
    assert!(
        err.contains("role viewer") && err.contains("ask an admin"),
        "{err}"
    );
    let err = refused(&socctl_as(&collector, &responder, &["tokens", "list"]));
    assert!(err.contains("needs admin"), "{err}");
    let err = refused(&socctl_as(
        &collector,
        &responder,
        &["agents", "enroll", "x"],
    ));
    assert!(err.contains("needs admin"), "{err}");
    let err = refused(&socctl_as(&collector, &viewer, &["audit"]));
    assert!(err.contains("needs admin"), "{err}");
    let tokens = collector.socctl_ndjson(&["tokens", "list"])?;
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|t| t.get("token").is_none()));

    // A revoked token is refused at once.
    ok(&collector.socctl(&["tokens", "revoke", "vera"]));
    let err = refused(&socctl_as(&collector, &viewer, &["alerts", "list"]));
    assert!(err.contains("refused the token"), "{err}");
    let err = refused(&collector.socctl(&["tokens", "revoke", "admin"]));
    assert!(err.contains("last admin"), "{err}");

    // A revoked agent is refused at its next batch.
    let m = collector.metrics_text()?;
    let agent_failures = metric_value(&m, "soc_auth_failures_total", "kind=\"agent\"");
    ok(&collector.socctl(&["agents", "revoke", "web-01"]));
    append_lines(&fw, &[ufw("web-01", "203.0.113.99", 22)])?;
    wait_for(
        "the revoked agent's batch refused",
        Duration::from_secs(20),
        || {
            let m = collector.metrics_text().ok()?;
            (metric_value(&m, "soc_auth_failures_total", "kind=\"agent\"") > agent_failures)
                .then_some(())
        },
    )?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&[]), 7, "nothing from the revoked agent");
    let agents = collector.socctl_ndjson(&["agents", "list"])?;
    assert_eq!(agents[0]["state"], "revoked");

    // The audit log has it all, with who, role, address and outcome.
    let audit = collector.socctl_ndjson(&["audit"])?;
    let find = |action: &str, outcome: &str, token: &str| {
        audit
            .iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome && e["token"] == token)
    };
    let ack = find("alert.ack", "success", "resp").expect("ack audited");
    assert_eq!(ack["role"], "responder");
    assert_eq!(ack["target"], id.as_str());
    assert_eq!(ack["peer"], "127.0.0.1");
    assert!(ack["at_ms"].as_i64().unwrap_or(0) > 0);
    assert!(find("alert.close", "success", "resp").is_some());
    assert!(find("alert.assign", "success", "resp").is_some());
    assert!(find("alert.note", "success", "resp").is_some());
    assert!(find("alert.reopen", "success", "resp").is_some());
    assert!(
        find("alert.ack", "failed", "resp").is_some(),
        "the 409 is audited"
    );
    let refusal = find("alert.ack", "refused", "vera").expect("403 audited");
    assert_eq!(refusal["role"], "viewer");
    assert!(find("agent.enroll", "refused", "resp").is_some());
    let b = find("alerts.bulk_ack", "success", "resp").expect("bulk audited");
    assert!(
        b["message"].as_str().unwrap_or("").contains("2 changed"),
        "{b}"
    );
    assert!(find("token.create", "success", "admin").is_some());
    assert!(find("token.revoke", "success", "admin").is_some());
    assert!(find("token.revoke", "failed", "admin").is_some());
    assert!(find("agent.revoke", "success", "admin").is_some());
    assert!(
        audit
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "in order"
    );
    let since = collector.socctl_ndjson(&["audit", "--since", "1s"])?;
    assert!(since.len() < audit.len());

    // Audit records cannot be changed through the API: no such route.
    let http = raw_http::put_status(&collector, "/api/v1/audit")?;
    assert!(
        http == 405 || http == 404,
        "PUT /api/v1/audit answered {http}"
    );

    let _ = follow.kill();
    let _ = follow.wait();
    agent.kill9();
    Ok(())
}

/// A request socctl has no command for, made with a plain HTTPS client.
mod raw_http {
    use soc_e2e::Collector;

    pub fn put_status(c: &Collector, path: &str) -> anyhow::Result<u16> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let tls = tls::config(&c.ca_file)?;
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()?;
            let r = client
                .put(format!("{}{path}", c.https))
                .bearer_auth(&c.token)
                .body("{}")
                .send()
                .await?;
            Ok(r.status().as_u16())
        })
    }

    mod tls {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;

        pub fn config(ca: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)? {
                roots.add(c?)?;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            Ok(rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth())
        }
    }
}

/// A tiny HTTP receiver: answers 200 to every request and keeps each body.
fn receiver(listener: TcpListener, got: Arc<Mutex<Vec<Value>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(match s.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                });
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    // Request line and headers.
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&body)
                        && let Ok(mut g) = got.lock()
                    {
                        g.push(v);
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn webhook_delivery_survives_a_receiver_outage_and_a_collector_restart() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // A port with nobody listening: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[forward.webhook]\nurl = \"http://127.0.0.1:{port}/soc\"\nmin_severity = \"low\"\n\
             retry_initial = \"100ms\"\nretry_max = \"300ms\"\n"
        ),
    )?;
    let cfg = config.display().to_string();
    let data = tmp.path().join("collector");
    let mut collector = Collector::start(&data, "127.0.0.1:0", &["--config", &cfg])?;
    let secret = collector.enroll("web-01")?;
    let fw = tmp.path().join("ufw.log");
    append_lines(&fw, &[])?;
    let acfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &[SourceSpec {
            name: "ufw",
            source_type: "iptables",
            include: &fw,
        }],
    )?;
    let mut agent = Agent::start(&acfg)?;
    let lines: Vec<String> = (0..6)
        // Six firewalls: the rule raises one alert per firewall and port an hour.
        .map(|i| {
            ufw(
                &format!("web-{:02}", i + 1),
                &format!("203.0.113.{}", 10 + i),
                22,
            )
        })
        .collect();
    append_lines(&fw, &lines)?;
    let alerts = wait_for("six alerts", Duration::from_secs(60), || {
        let a = collector.socctl_ndjson(&["alerts", "list"]).ok()?;
        (a.len() >= 6).then_some(a)
    })?;
    wait_for("failed deliveries", Duration::from_secs(20), || {
        let m = collector.metrics_text().ok()?;
        (metric_value(&m, "soc_forward_failures_total", "sink=\"webhook\"") >= 2.0).then_some(())
    })?;
    let m = collector.metrics_text()?;
    assert_eq!(
        metric_value(&m, "soc_forward_sent_total", "sink=\"webhook\""),
        0.0
    );
    assert!(metric_value(&m, "soc_forward_backlog", "sink=\"webhook\"") >= 1.0);
    agent.stop()?;

    // Restart the collector while the receiver is still down.
    collector.stop()?;
    let collector = Collector::start(&data, "127.0.0.1:0", &["--config", &cfg])?;

    // The receiver comes back: everything arrives.
    let got = Arc::new(Mutex::new(Vec::new()));
    receiver(TcpListener::bind(("127.0.0.1", port))?, got.clone());
    let delivered = wait_for("all alerts delivered", Duration::from_secs(30), || {
        let g = got.lock().ok()?.clone();
        let mut d = ids(&g);
        d.dedup();
        (d.len() >= 6).then_some(g)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", collector.log_text()))?;
    let mut d = ids(&delivered);
    d.dedup();
    assert_eq!(d, ids(&alerts), "nothing lost");
    let first = &delivered[0];
    assert!(first["rule_id"].is_string() && first["evidence"][0]["line"].is_string());
    // The backlog gauge is set once the page's last delivery has returned,
    // a moment after the receiver got it: wait for it rather than read it
    // at once.
    wait_for(
        "the webhook backlog back to 0",
        Duration::from_secs(10),
        || {
            let m = collector.metrics_text().ok()?;
            (metric_value(&m, "soc_forward_backlog", "sink=\"webhook\"") == 0.0).then_some(())
        },
    )?;
    Ok(())
}

fn socctl_env(server: &str, token: &str, ca: &std::path::Path, args: &[&str]) -> Output {
    Command::new(soc_e2e::bin("socctl"))
        .args(args)
        .env("SOC_SERVER", server)
        .env("SOC_TOKEN", token)
        .env("SOC_CA_CERT", ca)
        .stdin(Stdio::null())
        .output()
        .expect("running socctl")
}

#[test]
fn socctl_says_what_to_do_and_failed_logins_are_rate_limited() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let down = format!("https://127.0.0.1:{port}");
    let err = refused(&socctl_env(
        &down,
        &collector.token,
        &collector.ca_file,
        &["status"],
    ));
    assert!(
        err.contains("connection refused") && err.contains("SOC_SERVER"),
        "{err}"
    );

    // A certificate from another CA.
    let other = Collector::start(&tmp.path().join("other"), "127.0.0.1:0", &[])?;
    let err = refused(&socctl_env(
        &collector.https,
        &collector.token,
        &other.ca_file,
        &["status"],
    ));
    assert!(
        err.contains("not trusted") && err.contains("--ca-cert"),
        "{err}"
    );

    // Wrong tokens: 401 with advice, then 429 for this address.
    let burst = 10;
    for _ in 0..burst {
        let err = refused(&socctl_env(
            &collector.https,
            "soc_tk_wrong",
            &collector.ca_file,
            &["alerts", "list"],
        ));
        assert!(err.contains("refused the token"), "{err}");
    }
    let err = refused(&socctl_env(
        &collector.https,
        "soc_tk_wrong",
        &collector.ca_file,
        &["alerts", "list"],
    ));
    assert!(
        err.contains("429") && err.contains("too many failed"),
        "{err}"
    );
    // Even the right token waits: the address is limited, not the token.
    let err = refused(&collector.socctl(&["status"]));
    assert!(err.contains("429"), "{err}");
    let m = collector.metrics_text()?;
    assert!(metric_value(&m, "soc_auth_failures_total", "kind=\"token\"") >= f64::from(burst));
    assert!(metric_value(&m, "soc_auth_rate_limited_total", "") >= 2.0);
    drop(other);
    Ok(())
}
