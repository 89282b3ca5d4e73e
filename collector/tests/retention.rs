//! Retention removes old closed alerts and processed journal entries, and
//! nothing else: not open alerts, not entries detection has not reached,
//! not the newest entry.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sled::Transactional as _;
use soc_collector::alerts::{Change, insert_in};
use soc_collector::app::{App, Content};
use soc_collector::config::CollectorConfig;
use soc_collector::db::Db;
use soc_collector::journal::JournalEntry;
use soc_collector::model::{Alert, AlertQuery, AlertStatus, CloseReason, Severity};
use soc_collector::retention::run_once;

const DAY: i64 = 86_400_000;

fn alert(id: u64) -> Alert {
    Alert {
        id,
        rule_id: "r".into(),
        rule_title: "t".into(),
        rule_version: 1,
        severity: Severity::Low,
        tags: vec![],
        summary: "s".into(),
        group_key: String::new(),
        status: AlertStatus::Open,
        created_ms: 0,
        event_time_ms: 0,
        host: "h".into(),
        agent: "a".into(),
        labels: Default::default(),
        evidence: vec![],
        evidence_omitted: 0,
        suppressed: 0,
        last_repeat_ms: None,
        history: vec![],
        assignee: None,
        close_reason: None,
        closed_ms: None,
    }
}

fn entry(offset: u64, received_ms: i64) -> JournalEntry {
    JournalEntry {
        agent: "a1".into(),
        stream: "s".into(),
        source: "ufw".into(),
        source_type: "iptables".into(),
        path: "/p".into(),
        offset,
        read_time_ms: 0,
        received_ms,
        raw: b"x".to_vec(),
        truncated: false,
        labels: Default::default(),
    }
}

#[tokio::test]
async fn retention_removes_only_what_is_past_and_processed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = std::path::Path::new("t.toml");
    let cfg = CollectorConfig::parse(
        p,
        "[retention]\nclosed_alert_max_age = \"30d\"\nmax_closed_alerts = 2\n\
         journal_max_age = \"7d\"\njournal_max_entries = 0\n",
    )
    .expect("parse");
    let settings = cfg.build(p, dir.path()).expect("settings");
    let content = Content::load(&settings).expect("content");
    let db = Db::open(&dir.path().join("db")).expect("db");
    let app = Arc::new(App::new(settings, db.clone(), content).expect("app"));
    let now = 100 * DAY;

    // Ten alerts: 1-5 closed 40 days ago, 6-8 closed a day ago, 9-10 open.
    let alerts: Vec<Alert> = (1..=10).map(alert).collect();
    (&db.alerts, app.alerts.index_tree())
        .transaction(|(a, ix)| {
            for al in &alerts {
                insert_in(a, ix, al)?;
            }
            Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
        })
        .expect("insert");
    for id in 1..=8u64 {
        let at = if id <= 5 {
            now - 40 * DAY
        } else {
            now - DAY + id as i64
        };
        app.alerts
            .update(id, &Change::Close(CloseReason::Benign), "t", None, at)
            .expect("close");
    }

    // Journal: 6 entries 10 days old, 4 from today; detection has passed 8.
    let mut entries: Vec<JournalEntry> = (0..6).map(|i| entry(i, now - 10 * DAY)).collect();
    entries.extend((6..10).map(|i| entry(i, now)));
    // One append per entry: each is then its own journal segment, the unit
    // retention removes.
    for e in entries {
        app.journal
            .append("a1", vec![e], now)
            .await
            .expect("append");
    }
    app.detection_cursor.store(3, Ordering::Release);

    let removed = run_once(&app, now).expect("retention");
    // Age: 1-5 go; count: of 6, 7, 8 the longest-closed (6) goes too.
    assert_eq!(removed.closed_alerts, 6);
    let left: Vec<u64> = app
        .alerts
        .list(&AlertQuery {
            sort: Some(soc_collector::model::SortOrder::Oldest),
            ..Default::default()
        })
        .expect("list")
        .alerts
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(left, vec![7, 8, 9, 10]);
    let closed = app
        .alerts
        .list(&AlertQuery {
            status: Some(AlertStatus::Closed),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(
        closed.alerts.len(),
        2,
        "the index lost the removed alerts too"
    );
    // Journal: old entries go, but only up to the detection cursor.
    assert_eq!(removed.journal, 3);
    assert_eq!(app.journal.read_after(0, 100).expect("read")[0].0, 4);

    app.detection_cursor.store(10, Ordering::Release);
    let removed = run_once(&app, now).expect("retention");
    assert_eq!(removed.journal, 3, "the rest of the old ones, not today's");
    let seqs: Vec<u64> = app
        .journal
        .read_after(0, 100)
        .expect("read")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs, vec![7, 8, 9, 10]);

    // Much later everything processed is old, but the newest entry stays.
    let removed = run_once(&app, now + 30 * DAY).expect("retention");
    assert_eq!(removed.journal, 3);
    assert_eq!(app.journal.read_after(0, 100).expect("read").len(), 1);
}
