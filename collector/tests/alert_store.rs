//! The alert store against a model: random alerts, random lifecycle
//! changes and random filters; every indexed listing must equal a plain
//! scan-and-filter of the same alerts, page by page.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sled::Transactional as _;
use soc_collector::alerts::{AlertStore, Change, insert_in};
use soc_collector::db::Db;
use soc_collector::model::{
    Alert, AlertQuery, AlertStatus, BulkAction, BulkRequest, CloseReason, Evidence, HistoryEntry,
    Severity, SortOrder,
};

const HOSTS: [&str; 4] = ["web-01", "WEB-02", "db-01", "fw01"];
const RULES: [&str; 3] = ["fw-inbound", "clamav-malware", "ssh-brute"];
const AGENCIES: [&str; 3] = ["finance", "health", "police"];

fn alert(rng: &mut StdRng, id: u64) -> Alert {
    let mut fields = BTreeMap::new();
    let src = format!(
        "203.0.{}.{}",
        rng.random_range(112..115),
        rng.random_range(1..5)
    );
    fields.insert("source.ip".to_owned(), serde_json::json!(src));
    fields.insert(
        "destination.ip".to_owned(),
        serde_json::json!(format!("10.0.0.{}", rng.random_range(1..4))),
    );
    let agency = AGENCIES[rng.random_range(0..3)];
    Alert {
        id,
        rule_id: RULES[rng.random_range(0..3)].into(),
        rule_title: "t".into(),
        rule_version: 1,
        severity: Severity::ALL[rng.random_range(0..5)],
        tags: vec![format!("attack.t{}", rng.random_range(1..4))],
        summary: "s".into(),
        group_key: String::new(),
        status: AlertStatus::Open,
        created_ms: 1_000 * id as i64,
        event_time_ms: 0,
        host: HOSTS[rng.random_range(0..4)].into(),
        agent: format!("agent-{}", rng.random_range(0..2)),
        labels: [("agency".to_owned(), agency.to_owned())].into(),
        evidence: vec![Evidence {
            seq: id,
            agent: "a".into(),
            source: "s".into(),
            path: "/p".into(),
            offset: 0,
            line: "l".into(),
            line_b64: None,
            fields: fields.into(),
        }],
        evidence_omitted: 0,
        suppressed: 0,
        last_repeat_ms: None,
        history: vec![HistoryEntry {
            at_ms: 0,
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

fn in_net(ip: Option<&str>, net: &str) -> bool {
    let Some(ip) = ip.and_then(|i| i.parse::<IpAddr>().ok()) else {
        return false;
    };
    match net.parse::<ipnet::IpNet>() {
        Ok(n) => n.contains(&ip),
        Err(_) => net.parse::<IpAddr>().ok() == Some(ip),
    }
}

/// The model: what a query means, by brute force.
fn matches(q: &AlertQuery, a: &Alert) -> bool {
    let field = |f: &str| {
        a.evidence[0]
            .fields
            .get(f)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    q.severity.is_none_or(|s| {
        if q.severity_exactly == Some(true) {
            a.severity == s
        } else {
            a.severity >= s
        }
    }) && q.rule.as_deref().is_none_or(|r| a.rule_id == r)
        && q.host
            .as_deref()
            .is_none_or(|h| a.host.eq_ignore_ascii_case(h))
        && q.agent.as_deref().is_none_or(|g| a.agent == g)
        && q.status.is_none_or(|s| a.status == s)
        && q.assignee
            .as_deref()
            .is_none_or(|u| a.assignee.as_deref() == Some(u))
        && q.tag
            .as_deref()
            .is_none_or(|t| a.tags.iter().any(|x| x == t))
        && q.label.as_deref().is_none_or(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            a.labels.get(k).map(String::as_str) == Some(v)
        })
        && q.source_ip
            .as_deref()
            .is_none_or(|n| in_net(field("source.ip").as_deref(), n))
        && q.destination_ip
            .as_deref()
            .is_none_or(|n| in_net(field("destination.ip").as_deref(), n))
        && q.since_ms.is_none_or(|s| a.created_ms >= s)
        && q.until_ms.is_none_or(|u| a.created_ms <= u)
}

fn random_query(rng: &mut StdRng, max_id: u64) -> AlertQuery {
    let mut q = AlertQuery::default();
    let pick = |rng: &mut StdRng| rng.random_bool(0.3);
    if pick(rng) {
        q.severity = Some(Severity::ALL[rng.random_range(0..5)]);
        q.severity_exactly = rng.random_bool(0.5).then_some(true);
    }
    if pick(rng) {
        q.rule = Some(RULES[rng.random_range(0..3)].into());
    }
    if pick(rng) {
        q.host = Some(HOSTS[rng.random_range(0..4)].to_ascii_lowercase());
    }
    if pick(rng) {
        q.agent = Some(format!("agent-{}", rng.random_range(0..2)));
    }
    if pick(rng) {
        q.status = Some(
            [
                AlertStatus::Open,
                AlertStatus::Acknowledged,
                AlertStatus::Closed,
            ][rng.random_range(0..3)],
        );
    }
    if pick(rng) {
        q.assignee = Some(["alice", "bob"][rng.random_range(0..2)].into());
    }
    if pick(rng) {
        q.tag = Some(format!("attack.t{}", rng.random_range(1..4)));
    }
    if pick(rng) {
        q.label = Some(format!("agency={}", AGENCIES[rng.random_range(0..3)]));
    }
    if pick(rng) {
        q.source_ip = Some(
            [
                "203.0.113.0/24",
                "203.0.112.3",
                "203.0.112.0/23",
                "203.0.0.0/16",
                "2001:db8::/32",
            ][rng.random_range(0..5)]
            .into(),
        );
    }
    if pick(rng) {
        q.destination_ip = Some(format!("10.0.0.{}", rng.random_range(1..4)));
    }
    if pick(rng) {
        q.since_ms = Some(1_000 * rng.random_range(0..max_id as i64));
    }
    if pick(rng) {
        q.until_ms = Some(1_000 * rng.random_range(0..max_id as i64 + 5));
    }
    if rng.random_bool(0.5) {
        q.sort = Some(SortOrder::Oldest);
    }
    q.limit = Some(rng.random_range(1..40));
    q
}

#[test]
fn indexed_listings_equal_a_scan_of_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("db")).expect("db");
    let store = AlertStore::open(db.clone()).expect("store");
    let mut rng = StdRng::seed_from_u64(7);
    let n = 400u64;
    let mut model: Vec<Alert> = (1..=n).map(|id| alert(&mut rng, id)).collect();
    for chunk in model.chunks(50) {
        (&db.alerts, store.index_tree())
            .transaction(|(a, ix)| {
                for al in chunk {
                    insert_in(a, ix, al)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
            })
            .expect("insert");
    }
    // Random lifecycle changes, applied to both the store and the model.
    for step in 0..300 {
        let id = rng.random_range(1..=n);
        let change = match rng.random_range(0..4) {
            0 => Change::Ack,
            1 => Change::Close(CloseReason::Benign),
            2 => Change::Assign(["alice", "bob"][rng.random_range(0..2)].into()),
            _ => Change::Reopen,
        };
        let m = &mut model[(id - 1) as usize];
        let expect = change.apply(m, "t", None, 5_000_000 + step);
        let got = store.update(id, &change, "t", None, 5_000_000 + step);
        assert_eq!(expect.is_ok(), got.is_ok(), "{change:?} on {id}");
        if let Ok(a) = got {
            assert_eq!(&a, m);
        }
    }
    let mut checked = 0;
    for _ in 0..300 {
        let q = random_query(&mut rng, n);
        let mut want: Vec<u64> = model
            .iter()
            .filter(|a| matches(&q, a))
            .map(|a| a.id)
            .collect();
        if q.sort != Some(SortOrder::Oldest) {
            want.reverse();
        }
        // Page through and compare with the model, in order.
        let mut got = Vec::new();
        let mut page_q = q.clone();
        for _ in 0..1000 {
            let page = store.list(&page_q).expect("list");
            got.extend(page.alerts.iter().map(|a| a.id));
            match (page.next_before_id, page.next_after_id) {
                (Some(b), _) => page_q.before_id = Some(b),
                (_, Some(a)) => page_q.after_id = Some(a),
                (None, None) => break,
            }
        }
        assert_eq!(got, want, "query {q:?}");
        checked += want.len();
    }
    assert!(
        checked > 1000,
        "the random queries matched something: {checked}"
    );
}

#[test]
fn bulk_ack_counts_first_then_changes_only_what_was_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("db")).expect("db");
    let store = AlertStore::open(db.clone()).expect("store");
    let mut rng = StdRng::seed_from_u64(3);
    let mut alerts: Vec<Alert> = (1..=30).map(|id| alert(&mut rng, id)).collect();
    for a in &mut alerts {
        a.rule_id = "r1".into();
    }
    alerts[4].rule_id = "r2".into();
    (&db.alerts, store.index_tree())
        .transaction(|(t, ix)| {
            for al in &alerts {
                insert_in(t, ix, al)?;
            }
            Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
        })
        .expect("insert");
    store
        .update(3, &Change::Close(CloseReason::Duplicate), "t", None, 1)
        .expect("close");
    let mut req = BulkRequest {
        action: BulkAction::Ack,
        filter: AlertQuery {
            rule: Some("r1".into()),
            ..Default::default()
        },
        dry_run: true,
        reason: None,
        assignee: None,
        note: Some("bulk".into()),
    };
    let dry = store.bulk(&req, "alice", 2).expect("dry");
    assert_eq!(dry.matched, 29);
    assert_eq!(dry.changed, 28, "the closed one cannot be acknowledged");
    assert_eq!(dry.max_id, Some(30));
    assert_eq!(
        store.get(1).expect("get").expect("alert").status,
        AlertStatus::Open,
        "a dry run changes nothing"
    );
    req.dry_run = false;
    req.filter.before_id = Some(30);
    let done = store.bulk(&req, "alice", 3).expect("bulk");
    assert_eq!(done.changed, 27);
    let acked = store
        .list(&AlertQuery {
            status: Some(AlertStatus::Acknowledged),
            limit: Some(1000),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(acked.alerts.len(), 27);
    assert!(acked.alerts.iter().all(|a| a.id < 30 && a.rule_id == "r1"));
    let last = acked.alerts[0].history.last().expect("history");
    assert_eq!(
        (last.by.as_str(), last.note.as_deref()),
        ("alice", Some("bulk"))
    );
}
