//! Backups: a snapshot carries a half-way threshold to a fresh collector;
//! a damaged or foreign file is refused and changes nothing; a restore never
//! hands out an alert id twice; old backups are pruned.

use std::path::Path;
use std::sync::Arc;

use soc_collector::app::{App, Content};
use soc_collector::backup::{self, BackupError, Reason};
use soc_collector::config::CollectorConfig;
use soc_collector::db::{Db, meta_keys};
use soc_collector::journal::JournalEntry;
use soc_collector::model::AlertQuery;
use soc_collector::pipeline::Detector;

fn app(dir: &Path, extra: &str) -> Arc<App> {
    let p = Path::new("t.toml");
    let cfg = CollectorConfig::parse(p, &format!("[backup]\nkeep = 3\n{extra}")).expect("parse");
    let settings = cfg.build(p, dir).expect("settings");
    let content = Content::load(&settings).expect("content");
    let db = Db::open(&dir.join("db")).expect("db");
    Arc::new(App::new(settings, db, content).expect("app"))
}

fn failure(port: u64, second: u64) -> JournalEntry {
    JournalEntry {
        agent: "bastion".into(),
        stream: "s1".into(),
        source: "auth".into(),
        source_type: "sshd".into(),
        path: "/var/log/auth.log".into(),
        offset: port,
        read_time_ms: 1_733_000_000_000,
        received_ms: 1_733_000_000_000,
        raw: format!(
            "Mar  1 10:00:{second:02} bastion sshd[7]: Failed password for root from 203.0.113.9 port {port} ssh2"
        )
        .into_bytes(),
        truncated: false,
        labels: Default::default(),
    }
}

async fn feed(app: &Arc<App>, det: &mut Detector, entries: Vec<JournalEntry>) {
    app.journal
        .append("bastion", entries, 0)
        .await
        .expect("append");
    while det.step().expect("step") > 0 {}
}

fn alerts_of(app: &App, rule: &str) -> Vec<u64> {
    let page = app
        .alerts
        .list(&AlertQuery {
            rule: Some(rule.into()),
            ..Default::default()
        })
        .expect("list");
    page.alerts.iter().map(|a| a.id).collect()
}

fn meta(app: &App) -> (u64, u64, Option<Vec<u8>>, usize, usize) {
    (
        app.db
            .meta_u64(meta_keys::DETECTION_CURSOR)
            .expect("cursor"),
        app.db.meta_u64(meta_keys::NEXT_ALERT_ID).expect("next"),
        app.db
            .meta
            .get(meta_keys::ENGINE_STATE)
            .expect("state")
            .map(|v| v.to_vec()),
        app.db.alerts.len(),
        app.alerts.index_tree().len(),
    )
}

const RULE: &str = "ssh-brute-force-by-source";

#[tokio::test]
async fn a_half_way_threshold_continues_on_a_fresh_collector() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = app(&tmp.path().join("a"), "");
    let mut det_a = Detector::open(a.clone()).expect("detector");
    // An unrelated alert first, so the store is not empty.
    feed(
        &a,
        &mut det_a,
        (1..=5).map(|p| failure(100 + p, p)).collect(),
    )
    .await;
    assert_eq!(alerts_of(&a, RULE).len(), 1);
    // Another address, three of five failures.
    let three: Vec<JournalEntry> = (1..=3)
        .map(|p| {
            let mut e = failure(200 + p, 30 + p);
            e.raw = String::from_utf8_lossy(&e.raw)
                .replace("203.0.113.9", "198.51.100.4")
                .into_bytes();
            e
        })
        .collect();
    feed(&a, &mut det_a, three).await;
    assert_eq!(a.rule_groups().get(RULE), Some(&1), "one group half-way");
    let info = tokio::task::spawn_blocking({
        let a = a.clone();
        move || backup::create(&a, Reason::Manual)
    })
    .await
    .expect("join")
    .expect("backup");
    assert_eq!(info.cursor, 8);
    assert_eq!(info.alerts, Some(1));
    let path = Path::new(&info.path).to_owned();
    let snap = backup::verify_file(&path).expect("valid");
    assert_eq!(snap.header.cursor, 8);
    assert_eq!(snap.alerts.len(), 1);
    assert_eq!(
        a.metrics.backup_size_bytes.get() as u64,
        std::fs::metadata(&path).expect("size").len()
    );
    assert!(a.metrics.backup_last_success.get() > 0);

    // A fresh collector, restored, then two more failures: one alert.
    let b = app(&tmp.path().join("b"), "");
    let mut det_b = Detector::open(b.clone()).expect("detector");
    let view = tokio::task::spawn_blocking({
        let b = b.clone();
        move || backup::restore(&b, &snap)
    })
    .await
    .expect("join")
    .expect("restore");
    assert!(!view.same_journal);
    assert_eq!(view.cursor, 8);
    assert_eq!(alerts_of(&b, RULE).len(), 1, "the backed-up alert is there");
    // The next step takes up the restored state, and the API
    // (`socctl rules list`) shows its half-way group before any new line.
    assert_eq!(b.rule_groups().get(RULE), None);
    assert_eq!(det_b.step().expect("step"), 0);
    assert_eq!(b.rule_groups().get(RULE), Some(&1), "the restored group");
    let two: Vec<JournalEntry> = (4..=5)
        .map(|p| {
            let mut e = failure(200 + p, 30 + p);
            e.raw = String::from_utf8_lossy(&e.raw)
                .replace("203.0.113.9", "198.51.100.4")
                .into_bytes();
            e
        })
        .collect();
    feed(&b, &mut det_b, two).await;
    let ids = alerts_of(&b, RULE);
    assert_eq!(ids.len(), 2, "the half-way threshold completed: {ids:?}");
    assert!(
        ids[0] >= view.next_alert_id,
        "new id {} after restore",
        ids[0]
    );
    assert_eq!(b.cursor(), 10, "new lines are numbered after the cursor");
}

#[tokio::test]
async fn a_damaged_or_foreign_file_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = app(&tmp.path().join("a"), "");
    let mut det = Detector::open(a.clone()).expect("detector");
    feed(&a, &mut det, (1..=6).map(|p| failure(p, p)).collect()).await;
    let info = backup::create(&a, Reason::Manual).expect("backup");
    let good = std::fs::read(&info.path).expect("read");
    let before = meta(&a);

    let refused = |bytes: Vec<u8>| -> BackupError {
        let e = backup::verify_bytes("copy.socbak", &bytes).expect_err("refused");
        assert!(e.is_bad_file(), "{e}");
        e
    };
    // One flipped byte in the middle.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let e = refused(flipped);
    assert!(matches!(e, BackupError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("copy.socbak"), "{e}");
    // What a refused file means for a restore is said by the restore; a
    // verify changes nothing to begin with.
    assert!(!e.to_string().contains("nothing was changed"), "{e}");
    // Cut short.
    let e = refused(good[..good.len() - 10].to_vec());
    assert!(matches!(e, BackupError::Checksum { .. }), "{e}");
    // Another format.
    let mut v2 = good.clone();
    v2[8] = 2;
    let e = refused(v2);
    assert!(matches!(e, BackupError::Version { found: 2, .. }), "{e}");
    assert!(e.to_string().contains("format 2"), "{e}");
    // Not a backup at all.
    let e = refused(b"hello, this is not a backup file at all, not even close".to_vec());
    assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");
    assert_eq!(meta(&a), before, "nothing changed");
    // The good one still verifies.
    backup::verify_bytes("good", &good).expect("good");
}

#[tokio::test]
async fn a_restore_on_the_same_collector_never_reuses_an_alert_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = app(&tmp.path().join("a"), "");
    let mut det = Detector::open(a.clone()).expect("detector");
    feed(&a, &mut det, (1..=5).map(|p| failure(p, p)).collect()).await;
    let info = backup::create(&a, Reason::Manual).expect("backup");
    // After the backup, five failures from another address raise alert 2.
    let later: Vec<JournalEntry> = (6..=10)
        .map(|p| failure(p, 40 + p))
        .map(|mut e| {
            e.raw = String::from_utf8_lossy(&e.raw)
                .replace("203.0.113.9", "192.0.2.50")
                .into_bytes();
            e
        })
        .collect();
    feed(&a, &mut det, later).await;
    let before = alerts_of(&a, RULE);
    assert_eq!(before.len(), 2);
    let highest = before[0];

    let snap = backup::verify_file(Path::new(&info.path)).expect("valid");
    let view = tokio::task::spawn_blocking({
        let a = a.clone();
        move || backup::restore(&a, &snap)
    })
    .await
    .expect("join")
    .expect("restore");
    assert!(view.same_journal);
    assert_eq!(view.reprocess, 5, "the five lines after the cursor");
    assert!(view.next_alert_id > highest);
    // The worker notices the restore and processes those lines again.
    while det.step().expect("step") > 0 {}
    let after = alerts_of(&a, RULE);
    assert_eq!(after.len(), 2, "the alert is raised again, once: {after:?}");
    assert!(after[0] > highest, "with a new id: {after:?}");
}

#[test]
fn old_backups_beyond_keep_are_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = app(&tmp.path().join("a"), "");
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(backup::create(&a, Reason::Manual).expect("backup").name);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let list = backup::list(&a.settings.backup.dir).expect("list");
    let kept: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(kept, vec![&names[4], &names[3], &names[2]]);
    assert!(list.iter().all(|i| i.reason == "manual"));
}

#[tokio::test]
async fn after_a_restore_and_a_restart_new_lines_are_still_numbered_after_the_cursor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = app(&tmp.path().join("a"), "");
    let mut det = Detector::open(a.clone()).expect("detector");
    feed(&a, &mut det, (1..=4).map(|p| failure(p, p)).collect()).await;
    let info = backup::create(&a, Reason::Manual).expect("backup");
    let snap = backup::verify_file(Path::new(&info.path)).expect("valid");
    let fresh = tmp.path().join("b");
    {
        let b = app(&fresh, "");
        tokio::task::spawn_blocking(move || backup::restore(&b, &snap))
            .await
            .expect("join")
            .expect("restore");
    }
    // Reopened from disk: the journal is empty but continues after 4.
    let b = app(&fresh, "");
    assert_eq!(b.journal.last_seq().await, 4);
    assert_eq!(b.cursor(), 4);
    let mut det = Detector::open(b.clone()).expect("detector");
    feed(&b, &mut det, vec![failure(5, 5)]).await;
    assert_eq!(b.cursor(), 5);
    assert_eq!(alerts_of(&b, RULE).len(), 1, "4 restored + 1 new = 5");
}
