//! Crash tests: `kill -9` of the collector or the agent in the middle of a
//! stream of 100,000 lines loses nothing, counts nothing twice, and stores no
//! alert twice.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use soc_e2e::{Agent, Collector, SourceSpec, append_lines, wait_for, write_agent_config};

use crate::skeleton::clamd_found;

const LINES: usize = 100_000;
/// Every `ALERT_EVERY`th line is a malware detection that raises one alert.
const ALERT_EVERY: usize = 100;

fn line(i: usize) -> String {
    if i.is_multiple_of(ALERT_EVERY) {
        clamd_found(i)
    } else {
        format!("Nov 28 08:02:44 web-01 clamd[812]: SelfCheck: Database status OK. seq={i}")
    }
}

/// Writes the stream in chunks from a thread, so the crash happens mid-stream.
fn write_stream(path: &Path) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        for chunk in (0..LINES).collect::<Vec<_>>().chunks(5_000) {
            let lines: Vec<String> = chunk.iter().map(|&i| line(i)).collect();
            append_lines(&path, &lines)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })
}

fn journal_len(c: &Collector) -> u64 {
    c.status()
        .ok()
        .and_then(|s| s["journal_last_seq"].as_u64())
        .unwrap_or(0)
}

/// Waits until everything is journalled and processed, then checks the counts.
fn assert_exact(c: &Collector, agent: &Agent) -> anyhow::Result<()> {
    wait_for(
        "all lines journalled and processed",
        Duration::from_secs(300),
        || {
            let s = c.status().ok()?;
            (s["journal_last_seq"] == LINES as u64 && s["detection_cursor"] == LINES as u64)
                .then_some(())
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: status {:?}\ncollector log tail:\n{}\nagent log tail:\n{}",
            c.status().ok(),
            tail(&c.log_text()),
            tail(&agent.log_text())
        )
    })?;
    // Nothing more arrives later (no double counting after a late re-send).
    std::thread::sleep(Duration::from_secs(2));
    let s = c.status()?;
    assert_eq!(s["journal_last_seq"], LINES as u64, "events counted");

    // Page through every stored alert (1,000 a page, newest first).
    let mut all: Vec<serde_json::Value> = Vec::new();
    loop {
        let mut args = vec![
            "alerts".to_owned(),
            "list".into(),
            "--limit".into(),
            "1000".into(),
        ];
        if let Some(last) = all.last() {
            args.push("--before".into());
            args.push(last["id"].to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let page = c.socctl_ndjson(&refs)?;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    let expected = LINES / ALERT_EVERY;
    assert_eq!(all.len(), expected, "alerts stored");
    let mut lines = HashSet::new();
    for a in &all {
        let l = a["evidence"][0]["line"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(lines.insert(l.clone()), "alert stored twice for {l}");
    }
    let want: HashSet<String> = (0..LINES).step_by(ALERT_EVERY).map(clamd_found).collect();
    assert_eq!(lines, want, "one alert per planted detection");
    assert_eq!(s["alerts_stored"], expected as u64);
    println!(
        "crash test: {LINES} lines written, {} events counted, {} alerts stored, 0 duplicates",
        s["journal_last_seq"],
        all.len()
    );
    Ok(())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn kill_9_of_the_collector_mid_stream_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("collector");
    let mut collector = Collector::start(&data, "127.0.0.1:0", &[])?;
    let addr = collector.addr().to_owned();
    let secret = collector.enroll("web-01")?;
    let log = tmp.path().join("clamav.log");
    append_lines(&log, &[])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &[SourceSpec {
            name: "clamav",
            source_type: "clamav",
            include: &log,
        }],
    )?;
    let agent = Agent::start(&cfg)?;
    let writer = write_stream(&log);

    wait_for(
        "a third of the stream journalled",
        Duration::from_secs(120),
        || (journal_len(&collector) > (LINES / 3) as u64).then_some(()),
    )?;
    collector.kill9();
    std::thread::sleep(Duration::from_secs(2));
    let collector = Collector::start(&data, &addr, &[])?;
    writer.join().expect("writer thread")?;
    assert_exact(&collector, &agent)
}

#[test]
fn kill_9_of_the_agent_mid_stream_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let secret = collector.enroll("web-01")?;
    let log = tmp.path().join("clamav.log");
    append_lines(&log, &[])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &[SourceSpec {
            name: "clamav",
            source_type: "clamav",
            include: &log,
        }],
    )?;
    let mut agent = Agent::start(&cfg)?;
    let writer = write_stream(&log);

    wait_for(
        "a third of the stream journalled",
        Duration::from_secs(120),
        || (journal_len(&collector) > (LINES / 3) as u64).then_some(()),
    )?;
    agent.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let agent = Agent::start(&cfg)?;
    writer.join().expect("writer thread")?;
    assert_exact(&collector, &agent)
}
