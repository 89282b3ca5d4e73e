//! Query speed of the alert store with many alerts: loads N alerts (default
//! one million) into a fresh sled store through the same `insert_in` the
//! detection worker uses, then times the common filters, one page of 50 each.
//!
//! ```sh
//! cargo run --release -p soc-collector --example alert_query_bench -- [N] [DIR]
//! ```
//!
//! Prints a report: for each query, how many pages were timed and the
//! median, p95 and worst time per page.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sled::Transactional as _;
use soc_collector::alerts::{AlertStore, insert_in};
use soc_collector::db::Db;
use soc_collector::model::{
    Alert, AlertQuery, AlertStatus, Evidence, HistoryEntry, Severity, SortOrder,
};

const DAY_MS: i64 = 86_400_000;

fn make(rng: &mut StdRng, id: u64, t0: i64, span_ms: i64, n: u64) -> Alert {
    let created = t0 + (span_ms as f64 * id as f64 / n as f64) as i64;
    // Mostly low and medium, a few high and critical, as in real feeds.
    let severity = match rng.random_range(0..100) {
        0..30 => Severity::Info,
        30..65 => Severity::Low,
        65..90 => Severity::Medium,
        90..98 => Severity::High,
        _ => Severity::Critical,
    };
    let src = format!(
        "198.51.{}.{}",
        rng.random_range(0..40),
        rng.random_range(1..255)
    );
    let mut fields = BTreeMap::new();
    fields.insert("source.ip".to_owned(), serde_json::json!(src));
    fields.insert(
        "destination.ip".to_owned(),
        serde_json::json!(format!(
            "10.1.{}.{}",
            rng.random_range(0..4),
            rng.random_range(1..255)
        )),
    );
    fields.insert("destination.port".to_owned(), serde_json::json!(22));
    fields.insert("event.action".to_owned(), serde_json::json!("deny"));
    let host = format!("host-{:03}", rng.random_range(0..300));
    Alert {
        id,
        rule_id: format!("rule-{:02}", rng.random_range(0..30)),
        rule_title: "A rule".into(),
        rule_version: 1,
        severity,
        tags: vec!["attack.t1133".into()],
        summary: format!("Blocked inbound tcp from {src} to port 22 on {host}"),
        group_key: String::new(),
        status: match rng.random_range(0..10) {
            0..6 => AlertStatus::Open,
            6..8 => AlertStatus::Acknowledged,
            _ => AlertStatus::Closed,
        },
        created_ms: created,
        event_time_ms: created,
        host: host.clone(),
        agent: host,
        labels: [(
            "agency".to_owned(),
            format!("agency-{}", rng.random_range(0..20)),
        )]
        .into(),
        evidence: vec![Evidence {
            seq: id,
            agent: "a".into(),
            source: "ufw".into(),
            path: "/var/log/ufw.log".into(),
            offset: id * 200,
            line: format!(
                "Nov 28 08:01:12 web kernel: [UFW BLOCK] IN=eth0 SRC={src} DST=10.1.0.1 PROTO=TCP SPT=51514 DPT=22"
            ),
            line_b64: None,
            fields: fields.into(),
        }],
        evidence_omitted: 0,
        suppressed: 0,
        last_repeat_ms: None,
        history: vec![HistoryEntry {
            at_ms: created,
            by: "soc".into(),
            action: "created".into(),
            note: None,
            detail: None,
        }],
        assignee: None,
        close_reason: None,
        closed_ms: None,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let tmp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let db = Db::open(&dir.join("db"))?;
    let store = AlertStore::open(db.clone())?;
    let t0 = 1_735_689_600_000i64; // 2025-01-01
    let span = 30 * DAY_MS;
    if store.count() < n {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(42);
        let mut id = store.last_id()? + 1;
        while id <= n {
            let end = (id + 999).min(n);
            let batch: Vec<Alert> = (id..=end).map(|i| make(&mut rng, i, t0, span, n)).collect();
            (&db.alerts, store.index_tree())
                .transaction(|(a, ix)| {
                    for al in &batch {
                        insert_in(a, ix, al)?;
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
                })
                .map_err(|e| anyhow::anyhow!("loading alerts: {e:?}"))?;
            id = end + 1;
        }
        db.db.flush()?;
        println!(
            "loaded {n} alerts in {:.1}s ({:.0} alerts/s)",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
    println!(
        "store: {} alerts, database {} MiB on disk",
        n,
        db.db.size_on_disk()? / (1024 * 1024)
    );

    let last_week = t0 + span - 7 * DAY_MS;
    let cases: Vec<(&str, AlertQuery)> = vec![
        ("newest, no filter", AlertQuery::default()),
        (
            "severity >= high, last 7 days",
            AlertQuery {
                severity: Some(Severity::High),
                since_ms: Some(last_week),
                ..Default::default()
            },
        ),
        (
            "severity = critical, days 10-12",
            AlertQuery {
                severity: Some(Severity::Critical),
                severity_exactly: Some(true),
                since_ms: Some(t0 + 10 * DAY_MS),
                until_ms: Some(t0 + 12 * DAY_MS),
                ..Default::default()
            },
        ),
        (
            "host = host-042",
            AlertQuery {
                host: Some("host-042".into()),
                ..Default::default()
            },
        ),
        (
            "source.ip = one address",
            AlertQuery {
                source_ip: Some("198.51.7.77".into()),
                ..Default::default()
            },
        ),
        (
            "source.ip in a /24",
            AlertQuery {
                source_ip: Some("198.51.7.0/24".into()),
                ..Default::default()
            },
        ),
        (
            "open + rule + agency label",
            AlertQuery {
                status: Some(AlertStatus::Open),
                rule: Some("rule-07".into()),
                label: Some("agency=agency-3".into()),
                ..Default::default()
            },
        ),
        (
            "host + severity >= medium, oldest first",
            AlertQuery {
                host: Some("host-100".into()),
                severity: Some(Severity::Medium),
                sort: Some(SortOrder::Oldest),
                ..Default::default()
            },
        ),
    ];
    println!();
    println!(
        "{:<42} {:>6} {:>7} {:>10} {:>10} {:>10}",
        "query (page of 50, 10 pages deep x 3)", "pages", "rows", "median", "p95", "max"
    );
    for (name, q) in cases {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..3 {
            let mut q = q.clone();
            q.limit = Some(50);
            for _ in 0..10 {
                let start = Instant::now();
                let page = store.list(&q)?;
                times.push(start.elapsed());
                rows += page.alerts.len();
                match (page.next_before_id, page.next_after_id) {
                    (Some(b), _) => q.before_id = Some(b),
                    (_, Some(a)) => q.after_id = Some(a),
                    _ => break,
                }
            }
        }
        times.sort();
        println!(
            "{:<42} {:>6} {:>7} {:>8.2}ms {:>8.2}ms {:>8.2}ms",
            name,
            times.len(),
            rows,
            pct(&times, 0.5).as_secs_f64() * 1e3,
            pct(&times, 0.95).as_secs_f64() * 1e3,
            pct(&times, 1.0).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
