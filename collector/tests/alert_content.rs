//! What an alert is filed under and carries, on the real detector and
//! database: the host, agent and labels of the line that completed it, even
//! when detection noticed it while evaluating another agent's line (a
//! silence, noticed on a line of a source still talking; a threshold
//! completed by a line held back for the allowed lateness); and the repeats
//! its rule's `suppress:` swallowed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use soc_collector::app::{App, Content};
use soc_collector::config::CollectorConfig;
use soc_collector::db::Db;
use soc_collector::journal::JournalEntry;
use soc_collector::model::{Alert, AlertQuery};
use soc_collector::pipeline::Detector;

fn app(dir: &Path, config: &str) -> Arc<App> {
    let p = Path::new("t.toml");
    let cfg = CollectorConfig::parse(p, config).expect("parse");
    let settings = cfg.build(p, dir).expect("settings");
    let content = Content::load(&settings).expect("content");
    let db = Db::open(&dir.join("db")).expect("db");
    Arc::new(App::new(settings, db, content).expect("app"))
}

/// A line of `agent` (whose labels say `agency = agent`), read from
/// `/var/log/auth.log` at `offset`.
fn line(agent: &str, offset: u64, raw: String) -> JournalEntry {
    JournalEntry {
        agent: agent.into(),
        stream: "s1".into(),
        source: "auth".into(),
        source_type: "sshd".into(),
        path: "/var/log/auth.log".into(),
        offset,
        read_time_ms: 1_733_000_000_000,
        received_ms: 1_733_000_000_000,
        raw: raw.into_bytes(),
        truncated: false,
        labels: BTreeMap::from([("agency".to_string(), agent.to_string())]),
    }
}

/// A failed SSH login on `host` at `time` (`hh:mm:ss`) from 203.0.113.9.
fn failure(agent: &str, host: &str, offset: u64, time: &str) -> JournalEntry {
    line(
        agent,
        offset,
        format!(
            "Mar  1 {time} {host} sshd[7]: Failed password for root from 203.0.113.9 port {offset} ssh2"
        ),
    )
}

/// An accepted SSH login on `host` at `time`.
fn accepted(agent: &str, host: &str, offset: u64, time: &str) -> JournalEntry {
    line(
        agent,
        offset,
        format!(
            "Mar  1 {time} {host} sshd[8]: Accepted publickey for deploy from 192.0.2.7 port {offset} ssh2"
        ),
    )
}

async fn feed(app: &Arc<App>, det: &mut Detector, entries: Vec<JournalEntry>) {
    for e in entries {
        let agent = e.agent.clone();
        app.journal
            .append(&agent, vec![e], 0)
            .await
            .expect("append");
    }
    while det.step().expect("step") > 0 {}
}

fn alerts_of(app: &App, rule: &str) -> Vec<Alert> {
    app.alerts
        .list(&AlertQuery {
            rule: Some(rule.into()),
            ..Default::default()
        })
        .expect("list")
        .alerts
}

fn subject(a: &Alert) -> (&str, &str, Option<&str>) {
    (
        a.host.as_str(),
        a.agent.as_str(),
        a.labels.get("agency").map(String::as_str),
    )
}

#[tokio::test]
async fn a_silent_source_is_reported_under_its_own_host_not_the_one_still_talking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), "");
    let mut det = Detector::open(app.clone()).expect("detector");
    // `quiet` logs once and falls silent; `busy` logs every hour until 7 h
    // later, past the shipped rule's 6 h for a source not watched for a
    // whole day.
    let mut lines = vec![accepted("agent-q", "quiet", 1, "08:00:00")];
    lines.extend((8..=15).map(|h| accepted("agent-b", "busy", h, &format!("{h:02}:00:05"))));
    feed(&app, &mut det, lines).await;
    let silent = alerts_of(&app, "log-source-silent");
    assert_eq!(silent.len(), 1, "{silent:#?}");
    let a = &silent[0];
    assert!(a.group_key.contains("host.name=quiet"), "{}", a.group_key);
    assert_eq!(subject(a), ("quiet", "agent-q", Some("agent-q")));
    assert_eq!(a.evidence.last().map(|e| e.agent.as_str()), Some("agent-q"));
}

#[tokio::test]
async fn a_threshold_completed_by_a_held_back_line_is_filed_under_that_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), "[detection]\nallowed_lateness = \"1m\"\n");
    let mut det = Detector::open(app.clone()).expect("detector");
    // Five failures on `bastion` within a minute; they wait for the
    // lateness, and `web`'s line two minutes later releases them.
    let mut lines: Vec<JournalEntry> = (0..5)
        .map(|i| failure("agent-a", "bastion", i + 1, &format!("10:00:0{i}")))
        .collect();
    lines.push(accepted("agent-w", "web", 1, "10:02:00"));
    feed(&app, &mut det, lines).await;
    let brute = alerts_of(&app, "ssh-brute-force-by-source");
    assert_eq!(brute.len(), 1, "{brute:#?}");
    assert_eq!(subject(&brute[0]), ("bastion", "agent-a", Some("agent-a")));
    assert_eq!(brute[0].evidence.len(), 5);
}

#[tokio::test]
async fn an_alert_after_a_suppression_period_carries_the_repeats_swallowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), "");
    let mut det = Detector::open(app.clone()).expect("detector");
    // The same malware in the same file on one host: alerted at 10:00,
    // suppressed for an hour (shipped rule), alerted again at 11:05.
    let found = |offset: u64, time: &str| {
        let mut e = line(
            "agent-c",
            offset,
            format!(
                "Mar  1 {time} ws-carol clamd[812]: /home/carol/a.exe: Win.Trojan.Agent-1 FOUND"
            ),
        );
        e.source_type = "clamav".into();
        e
    };
    let times = ["10:00:00", "10:10:00", "10:20:00", "10:30:00", "11:05:00"];
    let lines = (1..).zip(times).map(|(o, t)| found(o, t)).collect();
    feed(&app, &mut det, lines).await;
    let mut found = alerts_of(&app, "clamav-malware-detected");
    found.sort_by_key(|a| a.event_time_ms);
    let repeats: Vec<u64> = found.iter().map(|a| a.suppressed).collect();
    assert_eq!(repeats, [0, 3], "{found:#?}");
    let shown = app.alerts.get(found[1].id).expect("get").expect("stored");
    assert_eq!(shown.suppressed, 3, "stored with the alert");
}
