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

/// A ClamAV detection of the same malware in the same file on `host`
/// at `time`, the `offset`th line of `agent`.
fn malware(agent: &str, host: &str, offset: u64, time: &str) -> JournalEntry {
    let mut e = line(
        agent,
        offset,
        format!("Mar  1 {time} {host} clamd[812]: /home/carol/a.exe: Win.Trojan.Agent-1 FOUND"),
    );
    e.source_type = "clamav".into();
    e
}

/// Feeds one ClamAV detection (see [`malware`]) of `(agent, host)` and
/// runs detection over it.
async fn feed_one(
    app: &Arc<App>,
    det: &mut Detector,
    (agent, host): (&str, &str),
    offset: u64,
    time: &str,
) {
    feed(app, det, vec![malware(agent, host, offset, time)]).await;
}

/// The event time the collector gives `Mar  1 {time}` (`hh:mm:ss`; the
/// year is that of the lines' read time, 2024).
fn at(time: &str) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2024, 3, 1)
        .zip(chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").ok())
        .map(|(d, t)| d.and_time(t).and_utc().timestamp_millis())
        .expect("a time")
}

#[tokio::test]
async fn an_alert_counts_the_repeats_its_suppression_period_swallows_as_they_come() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), "");
    let mut det = Detector::open(app.clone()).expect("detector");
    // The shipped rule suppresses the same malware in the same file on one
    // host for an hour. Alerted at 10:00 with a repeat in the same step;
    // two more repeats come in later steps, after the alert was stored.
    feed(
        &app,
        &mut det,
        vec![
            malware("agent-c", "ws-carol", 1, "10:00:00"),
            malware("agent-c", "ws-carol", 2, "10:10:00"),
        ],
    )
    .await;
    let first = alerts_of(&app, "clamav-malware-detected");
    assert_eq!(first.len(), 1, "{first:#?}");
    let id = first[0].id;
    assert_eq!(first[0].suppressed, 1, "{first:#?}");
    assert_eq!(first[0].last_repeat_ms, Some(at("10:10:00")));
    feed_one(&app, &mut det, ("agent-c", "ws-carol"), 3, "10:20:00").await;
    feed_one(&app, &mut det, ("agent-c", "ws-carol"), 4, "10:30:00").await;
    let stored = app.alerts.get(id).expect("get").expect("stored");
    assert_eq!(stored.suppressed, 3);
    assert_eq!(stored.last_repeat_ms, Some(at("10:30:00")));
    // A detector opened again from the committed position (as after a
    // crash) counts on from there: no repeat is counted twice.
    drop(det);
    let mut det = Detector::open(app.clone()).expect("detector");
    feed_one(&app, &mut det, ("agent-c", "ws-carol"), 5, "10:40:00").await;
    // After the hour, a new alert with its own count; the first keeps its.
    feed_one(&app, &mut det, ("agent-c", "ws-carol"), 6, "11:05:00").await;
    let mut all = alerts_of(&app, "clamav-malware-detected");
    all.sort_by_key(|a| a.event_time_ms);
    let counts: Vec<(u64, Option<i64>)> = all
        .iter()
        .map(|a| (a.suppressed, a.last_repeat_ms))
        .collect();
    assert_eq!(counts, [(4, Some(at("10:40:00"))), (0, None)], "{all:#?}");
    assert_eq!(all[0].id, id);
    // The same window on another host is counted apart.
    feed_one(&app, &mut det, ("agent-d", "ws-dave"), 1, "11:06:00").await;
    feed_one(&app, &mut det, ("agent-d", "ws-dave"), 2, "11:07:00").await;
    let dave: Vec<u64> = alerts_of(&app, "clamav-malware-detected")
        .iter()
        .filter(|a| a.host == "ws-dave")
        .map(|a| a.suppressed)
        .collect();
    assert_eq!(dave, [1]);
}

/// A rule state saved by a version that did not count repeats on the alert
/// (format 3: its windows are untagged): the repeats of such a window are
/// told on the next alert for its key, in its history, and that alert
/// counts its own.
#[tokio::test]
async fn repeats_of_a_window_opened_before_the_upgrade_are_told_on_the_next_alert() {
    use soc_collector::db::meta_keys;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), "");
    let mut det = Detector::open(app.clone()).expect("detector");
    feed_one(&app, &mut det, ("agent-c", "ws-carol"), 1, "10:00:00").await;
    drop(det);
    // The committed state, as the older version wrote it.
    let bytes = app
        .db
        .meta
        .get(meta_keys::ENGINE_STATE)
        .expect("read")
        .expect("state");
    let mut state = soc_rules::EngineState::from_bytes(&bytes).expect("state");
    state.format = 3;
    app.db
        .meta
        .insert(meta_keys::ENGINE_STATE, state.to_bytes())
        .expect("write");
    let mut det = Detector::open(app.clone()).expect("detector");
    let times = ["10:10:00", "10:20:00", "11:05:00", "11:06:00"];
    let lines = (2..)
        .zip(times)
        .map(|(o, t)| malware("agent-c", "ws-carol", o, t));
    feed(&app, &mut det, lines.collect()).await;
    let mut all = alerts_of(&app, "clamav-malware-detected");
    all.sort_by_key(|a| a.event_time_ms);
    let counts: Vec<u64> = all.iter().map(|a| a.suppressed).collect();
    assert_eq!(counts, [0, 1], "{all:#?}");
    let notes: Vec<Option<&str>> = all.iter().map(|a| a.history[0].note.as_deref()).collect();
    assert_eq!(
        notes,
        [
            None,
            Some("2 repeats suppressed since the previous alert for this key")
        ]
    );
}
