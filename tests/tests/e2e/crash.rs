//! Crash tests: `kill -9` of the collector or the agent in the middle of a
//! stream of 100,000 lines loses nothing, counts nothing twice, stores no
//! alert twice and counts no suppressed repeat twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use soc_e2e::{Agent, Collector, SourceSpec, append_lines, wait_for, write_agent_config};

use crate::skeleton::clamd_found;

const LINES: usize = 100_000;
/// Every `ALERT_EVERY`th line is a malware detection that raises one alert;
/// half-way to the next, the same detection again, which the rule's
/// suppression period counts on that alert.
const ALERT_EVERY: usize = 100;

fn line(i: usize) -> String {
    if i.is_multiple_of(ALERT_EVERY) {
        clamd_found(i)
    } else if i % ALERT_EVERY == ALERT_EVERY / 2 {
        clamd_found(i - ALERT_EVERY / 2)
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
        assert_eq!(a["suppressed"], 1, "repeats counted on the alert for {l}");
    }
    let want: HashSet<String> = (0..LINES).step_by(ALERT_EVERY).map(clamd_found).collect();
    assert_eq!(lines, want, "one alert per planted detection");
    assert_eq!(s["alerts_stored"], expected as u64);
    println!(
        "crash test: {LINES} lines written, {} events counted, {} alerts stored, 0 duplicates, 1 repeat on each",
        s["journal_last_seq"],
        all.len()
    );
    Ok(())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// An empty ClamAV log under `dir` and an agent configuration tailing it.
fn clamav_agent(
    dir: &Path,
    collector: &Collector,
    secret: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let log = dir.join("clamav.log");
    append_lines(&log, &[])?;
    let cfg = write_agent_config(
        &dir.join("agent"),
        "web-01",
        collector,
        secret,
        &[SourceSpec {
            name: "clamav",
            source_type: "clamav",
            include: &log,
        }],
    )?;
    Ok((log, cfg))
}

#[test]
fn kill_9_of_the_collector_mid_stream_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("collector");
    let mut collector = Collector::start(&data, "127.0.0.1:0", &[])?;
    let addr = collector.addr().to_owned();
    let secret = collector.enroll("web-01")?;
    let (log, cfg) = clamav_agent(tmp.path(), &collector, &secret)?;
    let agent = Agent::start(&cfg)?;
    let writer = write_stream(&log);

    wait_for(
        "a third of the stream journalled",
        Duration::from_secs(120),
        || (collector.journal_len() > (LINES / 3) as u64).then_some(()),
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
    let (log, cfg) = clamav_agent(tmp.path(), &collector, &secret)?;
    let mut agent = Agent::start(&cfg)?;
    let writer = write_stream(&log);

    wait_for(
        "a third of the stream journalled",
        Duration::from_secs(120),
        || (collector.journal_len() > (LINES / 3) as u64).then_some(()),
    )?;
    agent.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let agent = Agent::start(&cfg)?;
    writer.join().expect("writer thread")?;
    assert_exact(&collector, &agent)
}

/// Lines of the stream with stateful rules in flight.
const STATEFUL_LINES: usize = 30_000;
/// SSH brute-force bursts: five failures each, 150 lines apart.
const BURSTS: usize = 40;
/// Hosts with a malware detection and, 700 lines later, outbound traffic.
const INFECTED: usize = 20;

/// The stream: filler, with brute-force bursts and malware-then-outbound
/// sequences planted at known positions, each spread over hundreds of lines
/// so that a kill mid-stream falls inside some of them.
fn stateful_stream() -> Vec<String> {
    // Bursts sit on multiples of 50, sequences 25 off them: none overwrites another.
    let mut lines: Vec<String> = (0..STATEFUL_LINES)
        .map(|i| {
            format!("Nov 28 08:02:44 web-01 clamd[812]: SelfCheck: Database status OK. seq={i}")
        })
        .collect();
    for k in 0..BURSTS {
        for j in 0..5 {
            lines[200 + k * 700 + j * 150] = format!(
                "Nov 28 08:02:44 bastion sshd[77]: Failed password for root from 203.0.113.{} port {} ssh2",
                k + 1,
                10_000 + k * 10 + j
            );
        }
    }
    for k in 0..INFECTED {
        let at = 525 + k * 1400;
        lines[at] = format!(
            "Nov 28 08:02:44 ws-{k} clamd[812]: /home/u{k}/f.exe: Win.Trojan.Plant-{k} FOUND"
        );
        lines[at + 700] = format!(
            "Nov 28 08:02:44 ws-{k} kernel: [UFW ALLOW] IN= OUT=eth0 SRC=10.1.0.{k} DST=198.51.100.9 PROTO=TCP SPT={} DPT=443",
            40_000 + k
        );
    }
    let planted = lines.iter().filter(|l| !l.contains("SelfCheck")).count();
    assert_eq!(planted, BURSTS * 5 + INFECTED * 2, "planted lines overlap");
    lines
}

/// (rule id, the line that completed it) of every alert the stream must raise.
fn stateful_expected(lines: &[String]) -> Vec<String> {
    let mut want = Vec::new();
    for k in 0..BURSTS {
        want.push(format!(
            "ssh-brute-force-by-source | {}",
            lines[200 + k * 700 + 4 * 150]
        ));
    }
    for k in 0..INFECTED {
        let at = 525 + k * 1400;
        want.push(format!("clamav-malware-detected | {}", lines[at]));
        want.push(format!(
            "malware-then-outbound-traffic | {}",
            lines[at + 700]
        ));
    }
    want
}

#[test]
fn kill_9_with_thresholds_and_sequences_in_flight_misses_and_duplicates_no_alert()
-> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("collector");
    // Small detection steps, so commits are frequent and the kill lands
    // between two of them with groups open.
    let cfg_file = tmp.path().join("collector.toml");
    std::fs::write(&cfg_file, "[detection]\nbatch_size = 64\n")?;
    let cfg_arg = cfg_file.display().to_string();
    let mut collector = Collector::start(&data, "127.0.0.1:0", &["--config", &cfg_arg])?;
    let addr = collector.addr().to_owned();
    let secret = collector.enroll("mixed")?;
    let log = tmp.path().join("mixed.log");
    append_lines(&log, &[])?;
    let cfg = write_agent_config(
        &tmp.path().join("agent"),
        "mixed",
        &collector,
        &secret,
        &[SourceSpec {
            name: "mixed",
            source_type: "syslog",
            include: &log,
        }],
    )?;
    let agent = Agent::start(&cfg)?;
    let lines = stateful_stream();
    let writer = {
        let (log, lines) = (log.clone(), lines.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            for chunk in lines.chunks(1_000) {
                append_lines(&log, chunk)?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
    };
    let at_kill = wait_for(
        "a third of the stream processed",
        Duration::from_secs(60),
        || {
            let s = collector.status().ok()?;
            let cursor = s["detection_cursor"].as_u64()?;
            (cursor > (STATEFUL_LINES / 3) as u64).then_some(cursor)
        },
    )?;
    collector.kill9();
    assert!(
        at_kill < (STATEFUL_LINES - 1000) as u64,
        "the kill came too late ({at_kill}) to leave state in flight"
    );
    std::thread::sleep(Duration::from_secs(1));
    let collector = Collector::start(&data, &addr, &["--config", &cfg_arg])?;
    writer.join().expect("writer thread")?;
    wait_for(
        "the whole stream processed",
        Duration::from_secs(120),
        || {
            let s = collector.status().ok()?;
            (s["journal_last_seq"] == STATEFUL_LINES as u64
                && s["detection_cursor"] == STATEFUL_LINES as u64)
                .then_some(())
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {:?}\n{}\n{}",
            collector.status().ok(),
            tail(&collector.log_text()),
            tail(&agent.log_text())
        )
    })?;
    let alerts = collector.socctl_ndjson(&["alerts", "list", "--limit", "1000"])?;
    let got: Vec<String> = alerts
        .iter()
        .map(|a| {
            let ev = a["evidence"].as_array().cloned().unwrap_or_default();
            let last = ev
                .last()
                .and_then(|e| e["line"].as_str())
                .unwrap_or_default()
                .to_owned();
            format!("{} | {last}", a["rule_id"].as_str().unwrap_or_default())
        })
        .collect();
    let want = stateful_expected(&lines);
    let (missing, extra) = soc_e2e::multiset_diff(&want, &got);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing alerts: {missing:#?}\nextra or duplicate alerts: {extra:#?}"
    );
    println!(
        "crash test with state in flight: {STATEFUL_LINES} lines, killed at detection cursor {at_kill}, {} alerts = the {} expected ({BURSTS} brute force, {INFECTED} malware, {INFECTED} malware-then-outbound), 0 missing, 0 duplicate",
        got.len(),
        want.len()
    );
    Ok(())
}
