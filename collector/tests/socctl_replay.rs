//! `socctl rules test --replay FILE` as a rule writer backtests with it: the
//! built binary on a log file of many decoding batches, with the shipped
//! rules. The alerts are those the lines call for, each once, citing the
//! right line numbers, and two runs print the same bytes however the lines
//! were shared out between the decoding threads.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `Mar  1 hh:mm:ss` for `second` seconds after midnight.
fn stamp(second: usize) -> String {
    format!(
        "Mar  1 {:02}:{:02}:{:02}",
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

/// The lines that raise alerts, by line number (from 1): five failed SSH
/// logins within five seconds from 203.0.113.66 (one alert, the three later
/// failures folded into it), four from 198.51.100.9 (below the threshold:
/// none).
fn special(line_no: usize) -> Option<&'static str> {
    match line_no {
        1500 | 1510 | 1520 | 1530 | 1540 | 1700 | 1800 | 1900 => Some("203.0.113.66"),
        2500 | 2510 | 2520 | 2530 => Some("198.51.100.9"),
        _ => None,
    }
}

/// `lines` lines (ten a second), most of them routine.
fn write_log(path: &Path, lines: usize) {
    let mut text = String::new();
    for n in 1..=lines {
        let t = stamp(n / 10);
        let line = match special(n) {
            Some(ip) => {
                format!(
                    "{t} bastion01 sshd[100]: Failed password for root from {ip} port 40001 ssh2"
                )
            }
            None if n % 3 == 0 => format!(
                "{t} bastion01 sshd[{n}]: Accepted publickey for deploy from 192.0.2.{} port 50000 ssh2",
                n % 250 + 1
            ),
            None => format!("{t} web01 CRON[{n}]: (root) CMD (run-parts /etc/cron.hourly)"),
        };
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write the log");
}

fn replay(file: &Path, extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_socctl"))
        .args(["rules", "test", "--replay"])
        .arg(file)
        .args(extra)
        .output()
        .expect("socctl runs");
    assert!(
        out.status.success(),
        "socctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn replay_raises_each_alert_once_citing_its_lines() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("auth.log");
    write_log(&log, 3001);

    let out = replay(&log, &["--json"]);
    let alerts: Vec<Value> = String::from_utf8(out.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let brute: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule_id"] == "ssh-brute-force-by-source")
        .collect();
    assert_eq!(brute.len(), 1, "{alerts:#?}");
    let a = brute[0];
    assert_eq!(a["group_key"], "source.ip=203.0.113.66");
    assert_eq!(
        a["evidence_lines"],
        serde_json::json!([1500, 1510, 1520, 1530, 1540])
    );
    assert_eq!(a["severity"], "medium");
    assert!(
        a["timestamp"]
            .as_str()
            .is_some_and(|t| t.contains("-03-01T00:02:34")),
        "the fifth failure's time: {a}"
    );
    // The fields of the line that raised it, as decoded: all of them, not
    // only those the rules read (lines are decoded into those, and a line
    // that raises an alert again in full).
    assert_eq!(a["fields"]["source.ip"], "203.0.113.66");
    assert_eq!(a["fields"]["user.name"], "root");
    assert_eq!(a["fields"]["process.pid"], 100);
    assert_eq!(a["fields"]["source.port"], 40001);
    assert_eq!(
        a["fields"]["message"],
        "Mar  1 00:02:34 bastion01 sshd[100]: Failed password for root from 203.0.113.66 port 40001 ssh2"
    );
    assert_eq!(a["fields"]["decoder.name"], "sshd_login");
    // The replay's summary counts every line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replayed 3001 lines"), "{stderr}");

    // The same bytes on every run, JSON or text.
    for _ in 0..3 {
        assert_eq!(replay(&log, &["--json"]).stdout, out.stdout);
    }
    let text = String::from_utf8(replay(&log, &[]).stdout).expect("UTF-8 output");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ssh-brute-force-by-source"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    // The lines behind it, as a list of line numbers.
    assert!(
        lines[0].ends_with(" (lines [1500, 1510, 1520, 1530, 1540])"),
        "{}",
        lines[0]
    );
}

/// Held back for a lateness, lines in time order raise the same alerts.
/// Past the bound on held-back lines (10,000), the oldest are evaluated
/// before the lateness has passed, and the summary says how many.
#[test]
fn replay_with_a_lateness_raises_the_same_alerts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("auth.log");
    write_log(&log, 10_100);
    let plain = replay(&log, &["--json"]);
    let late = replay(&log, &["--json", "--lateness", "1h"]);
    assert!(!plain.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&late.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(
        stderr.contains(
            "100 lines were evaluated before --lateness had passed: more than 10000 were waiting"
        ),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&plain.stderr).contains("before --lateness"),
        "without a lateness nothing waits"
    );
}
