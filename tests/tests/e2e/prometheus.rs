//! A real Prometheus scrapes a real collector fed by a real agent; every
//! PromQL expression of every dashboard panel must be valid and return data,
//! and promtool must accept the metrics output and the alerting rules.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use soc_e2e::{Agent, Collector, append_lines, wait_for, workspace_root, write_agent_config};

use crate::skeleton::{UFW_BLOCK_SSH, clamd_found};

fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() {
        bail!("`{name}` is not installed: tests/run.sh installs the Debian package prometheus");
    }
    Ok(PathBuf::from(path))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, metrics_addr: &str) -> anyhow::Result<Prometheus> {
    let rules = workspace_root()
        .join("deploy/prometheus/soc-alerts.yml")
        .canonicalize()?;
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: soc-collector\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            metrics_addr
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = Command::new(tool("prometheus")?)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting prometheus")?;
    Ok(Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

fn query(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    q: &str,
) -> anyhow::Result<Value> {
    rt.block_on(async {
        let resp = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .await?;
        Ok(resp.json::<Value>().await?)
    })
}

/// Every panel expression of every dashboard, with Grafana's variables filled in.
fn dashboard_exprs() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let dir = workspace_root().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let d: Value = serde_json::from_slice(&std::fs::read(&f)?)?;
        let title = d["title"].as_str().unwrap_or_default().to_owned();
        assert!(
            d["templating"]["list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|v| v["type"] == "datasource")),
            "{title}: dashboards select their datasource through a variable"
        );
        for p in d["panels"].as_array().context("panels")? {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{title}/{}: datasource variable",
                p["title"]
            );
            for t in p["targets"].as_array().context("targets")? {
                let expr = t["expr"]
                    .as_str()
                    .context("expr")?
                    .replace("$__rate_interval", "1m");
                out.push((
                    format!("{title} / {}", p["title"].as_str().unwrap_or_default()),
                    expr,
                ));
            }
        }
    }
    Ok(out)
}

#[test]
fn every_dashboard_panel_returns_data_from_a_real_prometheus() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let metrics_addr = collector
        .metrics
        .clone()
        .context("metrics listener")?
        .replace("http://", "");
    let secret = collector.enroll("web-01")?;
    let fw = tmp.path().join("ufw.log");
    let av = tmp.path().join("clamav.log");
    append_lines(&fw, &[UFW_BLOCK_SSH.to_owned()])?;
    append_lines(&av, &[clamd_found(1)])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &soc_e2e::firewall_and_antivirus(&fw, &av),
    )?;
    let _agent = Agent::start(&cfg)?;
    wait_for("alerts", Duration::from_secs(60), || {
        (collector.socctl_ndjson(&["alerts", "list"]).ok()?.len() >= 2).then_some(())
    })?;

    // promtool accepts the exposition format.
    let text = collector.metrics_text()?;
    let mut check = Command::new(tool("promtool")?)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        use std::io::Write as _;
        check
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
    }
    let out = check.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom = start_prometheus(tmp.path(), &metrics_addr)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_for(
        "prometheus to scrape the collector",
        Duration::from_secs(60),
        || {
            let v = query(&rt, &client, &prom.url, "up{job=\"soc-collector\"}").ok()?;
            (v["data"]["result"][0]["value"][1] == "1").then_some(())
        },
    )?;
    // A few more lines while Prometheus watches, so rates have something to show.
    for i in 2..6 {
        append_lines(&av, &[clamd_found(i)])?;
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_for("the new alerts", Duration::from_secs(60), || {
        (collector.socctl_ndjson(&["alerts", "list"]).ok()?.len() >= 6).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(4));

    let exprs = dashboard_exprs()?;
    assert!(exprs.len() >= 20, "only {} panel expressions", exprs.len());
    let mut failures = Vec::new();
    for (panel, expr) in &exprs {
        match query(&rt, &client, &prom.url, expr) {
            Ok(v) if v["status"] == "success" => {
                if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                    failures.push(format!("{panel}: `{expr}` returned no series"));
                }
            }
            Ok(v) => failures.push(format!("{panel}: `{expr}` failed: {}", v["error"])),
            Err(e) => failures.push(format!("{panel}: `{expr}`: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} panel queries failed:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );

    // Prometheus loaded the alerting rules without error.
    let rules: Value = rt.block_on(async {
        client
            .get(format!("{}/api/v1/rules", prom.url))
            .send()
            .await?
            .json::<Value>()
            .await
    })?;
    let groups = rules["data"]["groups"].as_array().context("rule groups")?;
    let n: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(n >= 6, "alerting rules loaded: {n}");
    for g in groups {
        for r in g["rules"].as_array().context("rules")? {
            assert_eq!(
                r["health"], "ok",
                "rule {} is unhealthy: {}",
                r["name"], r["lastError"]
            );
        }
    }
    println!(
        "prometheus: {} panel expressions returned data; {n} alerting rules healthy",
        exprs.len()
    );
    Ok(())
}

#[test]
fn promtool_checks_and_unit_tests_the_alerting_rules() -> anyhow::Result<()> {
    let dir = workspace_root().join("deploy/prometheus").canonicalize()?;
    // The example config names the rule file at its installed path; check a
    // copy that points at the file in the repository.
    let tmp = tempfile::tempdir()?;
    let example = std::fs::read_to_string(dir.join("prometheus.yml"))?;
    assert!(example.contains("/etc/prometheus/soc-alerts.yml"));
    let local = tmp.path().join("prometheus.yml");
    std::fs::write(
        &local,
        example.replace(
            "/etc/prometheus/soc-alerts.yml",
            &dir.join("soc-alerts.yml").display().to_string(),
        ),
    )?;
    let local = local.display().to_string();
    for args in [
        vec!["check", "rules", "soc-alerts.yml"],
        vec!["test", "rules", "soc-alerts.test.yml"],
        vec!["check", "config", local.as_str()],
    ] {
        let out = Command::new(tool("promtool")?)
            .args(&args)
            .current_dir(&dir)
            .output()?;
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
