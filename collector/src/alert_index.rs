//! Secondary indexes over the alert store, and the query planner that
//! answers every filter of [`AlertQuery`] from them.
//!
//! # Layout of the index tree
//!
//! One sled tree, `alerts.index`, holds one empty-valued key per (field,
//! value, alert):
//!
//! ```text
//! tag | value | 0x00 | id (u64 BE)       text fields (status, severity, host, ...)
//! tag | ip (16 bytes, v4 mapped) | id    source.ip / destination.ip
//! tag | time (u64 BE) | id              created and closed times
//! ```
//!
//! Because the id comes last, the keys of one value are sorted by id, and
//! ids grow with time. A query is an intersection of such posting lists,
//! walked with a leapfrog join: each list is asked for "the largest id not
//! above `c`" (one sled range seek), the candidate drops to the smallest
//! answer, and an id all lists agree on is a match. A page of 50 costs about
//! 50 × (number of filters) seeks whatever the store's size; a per-page
//! budget bounds the worst case (see [`SCAN_BUDGET`]).
//!
//! The index keys are a pure function of the alert ([`keys`]), so an update
//! removes the keys of the old version and inserts those of the new one in
//! the same transaction as the alert itself.

use std::net::IpAddr;

use crate::model::{Alert, AlertQuery, AlertStatus, Severity, SortOrder};

/// Name of the index tree.
pub const TREE: &str = "alerts.index";

/// Index candidates examined per page before a page is returned short with
/// a cursor, so no query can hold a worker for long.
pub const SCAN_BUDGET: usize = 200_000;

/// Most ids a CIDR filter wider than one address materialises.
pub const MAX_CIDR_IDS: usize = 2_000_000;

const STATUS: u8 = b's';
const SEVERITY: u8 = b'v';
const HOST: u8 = b'h';
const RULE: u8 = b'r';
const AGENT: u8 = b'a';
const LABEL: u8 = b'l';
const TAG: u8 = b't';
const ASSIGNEE: u8 = b'u';
const SRC_IP: u8 = b'i';
const DST_IP: u8 = b'd';
const CREATED: u8 = b'c';
const CLOSED: u8 = b'x';

/// Why a query could not be run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("`{field}`: {message}")]
    BadFilter {
        field: &'static str,
        message: String,
    },
    #[error(
        "`{field}`: the CIDR matches more than {MAX_CIDR_IDS} alerts; narrow it or add another filter"
    )]
    TooWide { field: &'static str },
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

fn text_prefix(tag: u8, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 10);
    k.push(tag);
    // A NUL would end the value early and mix two values' postings.
    k.extend(value.bytes().filter(|&b| b != 0));
    k.push(0);
    k
}

fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ip_prefix(tag: u8, ip: IpAddr) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(tag);
    k.extend_from_slice(&ip_bytes(ip));
    k
}

/// Orders negative and positive times correctly as unsigned bytes.
fn time_bytes(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_prefix(tag: u8, ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(tag);
    k.extend_from_slice(&time_bytes(ms));
    k
}

fn id_of(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8)?;
    crate::db::be_u64(&key[tail..])
}

/// Every IP address in the evidence's `field` (deduplicated).
fn evidence_ips(a: &Alert, field: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = a
        .evidence
        .iter()
        .filter_map(|e| e.fields.get(field)?.as_str()?.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Every index key of an alert.
pub fn keys(a: &Alert) -> Vec<Vec<u8>> {
    let id = a.id;
    let mut out = vec![
        with_id(text_prefix(STATUS, a.status.as_str()), id),
        with_id(text_prefix(SEVERITY, a.severity.as_str()), id),
        with_id(text_prefix(HOST, &a.host.to_ascii_lowercase()), id),
        with_id(text_prefix(RULE, &a.rule_id), id),
        with_id(text_prefix(AGENT, &a.agent), id),
        with_id(time_prefix(CREATED, a.created_ms), id),
    ];
    for (k, v) in &a.labels {
        out.push(with_id(text_prefix(LABEL, &format!("{k}={v}")), id));
    }
    let mut tags = a.tags.clone();
    tags.sort();
    tags.dedup();
    for t in &tags {
        out.push(with_id(text_prefix(TAG, t), id));
    }
    if let Some(u) = &a.assignee {
        out.push(with_id(text_prefix(ASSIGNEE, u), id));
    }
    for ip in evidence_ips(a, "source.ip") {
        out.push(with_id(ip_prefix(SRC_IP, ip), id));
    }
    for ip in evidence_ips(a, "destination.ip") {
        out.push(with_id(ip_prefix(DST_IP, ip), id));
    }
    if a.status == AlertStatus::Closed
        && let Some(t) = a.closed_ms
    {
        out.push(with_id(time_prefix(CLOSED, t), id));
    }
    out
}

/// One posting list (or a union of a few) that can answer "the nearest id
/// at or beyond `c` in the walking direction".
enum Source {
    /// Union of the posting lists under these prefixes.
    Prefixes(Vec<Vec<u8>>),
    /// A sorted, de-duplicated list of ids (a CIDR wider than one address).
    Ids(Vec<u64>),
    /// Every stored alert.
    All,
}

/// A compiled query: sources to intersect, an id window, and the time
/// window checked on each match.
pub struct Plan {
    sources: Vec<Source>,
    /// Inclusive id bounds.
    lo: u64,
    hi: u64,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    order: SortOrder,
    empty: bool,
}

fn parse_net(field: &'static str, v: &str) -> Result<ipnet::IpNet, QueryError> {
    let v = v.trim();
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    v.parse::<ipnet::IpNet>()
        .map_err(|e| QueryError::BadFilter {
            field,
            message: format!("`{v}` is not an IP address or CIDR like 203.0.113.0/24: {e}"),
        })
}

impl Plan {
    /// Compiles `q` against the index. CIDRs wider than one address are
    /// resolved to their ids here.
    pub fn new(index: &sled::Tree, q: &AlertQuery) -> Result<Plan, QueryError> {
        let mut sources = Vec::new();
        if let Some(s) = q.severity {
            let sevs: Vec<Severity> = if q.severity_exactly.unwrap_or(false) {
                vec![s]
            } else {
                Severity::ALL.into_iter().filter(|x| *x >= s).collect()
            };
            sources.push(Source::Prefixes(
                sevs.iter()
                    .map(|s| text_prefix(SEVERITY, s.as_str()))
                    .collect(),
            ));
        }
        let mut text = |tag: u8, v: Option<String>| {
            if let Some(v) = v {
                sources.push(Source::Prefixes(vec![text_prefix(tag, &v)]));
            }
        };
        text(STATUS, q.status.map(|s| s.as_str().to_owned()));
        text(RULE, q.rule.clone());
        text(HOST, q.host.as_ref().map(|h| h.to_ascii_lowercase()));
        text(AGENT, q.agent.clone());
        text(ASSIGNEE, q.assignee.clone());
        text(TAG, q.tag.clone());
        if let Some(l) = &q.label {
            let Some((k, v)) = l.split_once('=') else {
                return Err(QueryError::BadFilter {
                    field: "label",
                    message: format!("`{l}` is not `key=value`, e.g. agency=finance"),
                });
            };
            sources.push(Source::Prefixes(vec![text_prefix(
                LABEL,
                &format!("{}={}", k.trim(), v.trim()),
            )]));
        }
        for (field, tag, v) in [
            ("source_ip", SRC_IP, &q.source_ip),
            ("destination_ip", DST_IP, &q.destination_ip),
        ] {
            let Some(v) = v else { continue };
            let net = parse_net(field, v)?;
            if net.network() == net.broadcast() {
                sources.push(Source::Prefixes(vec![ip_prefix(tag, net.addr())]));
            } else {
                let lo = ip_prefix(tag, net.network());
                let mut hi = ip_prefix(tag, net.broadcast());
                hi.extend_from_slice(&u64::MAX.to_be_bytes());
                let mut ids = Vec::new();
                for item in index.range(lo..=hi) {
                    let (k, _) = item?;
                    if let Some(id) = id_of(&k) {
                        ids.push(id);
                    }
                    if ids.len() > MAX_CIDR_IDS {
                        return Err(QueryError::TooWide { field });
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                sources.push(Source::Ids(ids));
            }
        }
        if sources.is_empty() {
            sources.push(Source::All);
        }
        let mut plan = Plan {
            sources,
            lo: q.after_id.map_or(0, |a| a.saturating_add(1)),
            hi: q.before_id.map_or(u64::MAX, |b| b.saturating_sub(1)),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            order: q.sort.unwrap_or_default(),
            empty: q.before_id == Some(0) || q.after_id == Some(u64::MAX),
        };
        // Ids grow with creation time: turn the time window into an id window.
        if let Some(since) = q.since_ms {
            match index.range(time_prefix(CREATED, since)..).next() {
                Some(item) => {
                    let (k, _) = item?;
                    match (k.first(), id_of(&k)) {
                        (Some(&CREATED), Some(id)) => plan.lo = plan.lo.max(id),
                        _ => plan.empty = true,
                    }
                }
                None => plan.empty = true,
            }
        }
        if let Some(until) = q.until_ms {
            let mut end = time_prefix(CREATED, until);
            end.extend_from_slice(&u64::MAX.to_be_bytes());
            match index.range(..=end).next_back() {
                Some(item) => {
                    let (k, _) = item?;
                    match (k.first(), id_of(&k)) {
                        (Some(&CREATED), Some(id)) => plan.hi = plan.hi.min(id),
                        _ => plan.empty = true,
                    }
                }
                None => plan.empty = true,
            }
        }
        if plan.lo > plan.hi {
            plan.empty = true;
        }
        Ok(plan)
    }

    /// The nearest id to `c` (at or below it when newest first, at or above
    /// it when oldest first) in `src`.
    fn seek(
        &self,
        src: &Source,
        index: &sled::Tree,
        alerts: &sled::Tree,
        c: u64,
    ) -> Result<Option<u64>, sled::Error> {
        let desc = self.order == SortOrder::Newest;
        match src {
            Source::All => {
                let item = if desc {
                    alerts.range(..=c.to_be_bytes()).next_back()
                } else {
                    alerts.range(c.to_be_bytes()..).next()
                };
                Ok(match item {
                    Some(r) => crate::db::be_u64(&r?.0),
                    None => None,
                })
            }
            Source::Ids(ids) => Ok(if desc {
                match ids.binary_search(&c) {
                    Ok(i) => Some(ids[i]),
                    Err(0) => None,
                    Err(i) => Some(ids[i - 1]),
                }
            } else {
                match ids.binary_search(&c) {
                    Ok(i) => Some(ids[i]),
                    Err(i) => ids.get(i).copied(),
                }
            }),
            Source::Prefixes(prefixes) => {
                let mut best: Option<u64> = None;
                for p in prefixes {
                    let item = if desc {
                        index.range(p.clone()..=with_id(p.clone(), c)).next_back()
                    } else {
                        index
                            .range(with_id(p.clone(), c)..=with_id(p.clone(), u64::MAX))
                            .next()
                    };
                    if let Some(r) = item {
                        let (k, _) = r?;
                        if let Some(id) = id_of(&k) {
                            best = Some(match best {
                                None => id,
                                Some(b) if desc => b.max(id),
                                Some(b) => b.min(id),
                            });
                        }
                    }
                }
                Ok(best)
            }
        }
    }

    /// Walks the matches in order, calling `f` with each id; `f` returns
    /// whether to go on. Returns the id to resume from when the scan budget
    /// ran out (`Some`), or `None` when the walk ended.
    pub fn walk(
        &self,
        index: &sled::Tree,
        alerts: &sled::Tree,
        mut f: impl FnMut(u64) -> Result<bool, QueryError>,
    ) -> Result<Option<u64>, QueryError> {
        if self.empty {
            return Ok(None);
        }
        let desc = self.order == SortOrder::Newest;
        let mut c = if desc { self.hi } else { self.lo };
        let mut budget = SCAN_BUDGET;
        'outer: loop {
            if c < self.lo || c > self.hi {
                return Ok(None);
            }
            if budget == 0 {
                return Ok(Some(c));
            }
            budget -= 1;
            for src in &self.sources {
                match self.seek(src, index, alerts, c)? {
                    None => return Ok(None),
                    Some(x) if x != c => {
                        c = x;
                        continue 'outer;
                    }
                    Some(_) => {}
                }
            }
            if !f(c)? {
                return Ok(None);
            }
            if desc {
                if c == 0 {
                    return Ok(None);
                }
                c -= 1;
            } else {
                if c == u64::MAX {
                    return Ok(None);
                }
                c += 1;
            }
        }
    }

    /// Whether a fetched alert is inside the time window (ids only
    /// approximate it if the clock ever went backwards).
    pub fn in_time(&self, a: &Alert) -> bool {
        self.since_ms.is_none_or(|s| a.created_ms >= s)
            && self.until_ms.is_none_or(|u| a.created_ms <= u)
    }

    pub fn order(&self) -> SortOrder {
        self.order
    }
}

/// Alert ids whose close time is at or before `cutoff_ms`, oldest closed
/// first, at most `max`.
pub fn closed_before(
    index: &sled::Tree,
    cutoff_ms: i64,
    max: usize,
) -> Result<Vec<u64>, sled::Error> {
    let mut end = time_prefix(CLOSED, cutoff_ms);
    end.extend_from_slice(&u64::MAX.to_be_bytes());
    let mut out = Vec::new();
    for item in index.range(vec![CLOSED]..=end).take(max) {
        let (k, _) = item?;
        if let Some(id) = id_of(&k) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Closed alerts, oldest closed first, at most `max`; and how many exist.
pub fn closed_count(index: &sled::Tree) -> usize {
    index.scan_prefix(text_prefix(STATUS, "closed")).count()
}

/// Ids of closed alerts in order of their close time, oldest first.
pub fn oldest_closed(index: &sled::Tree, max: usize) -> Result<Vec<u64>, sled::Error> {
    closed_before(index, i64::MAX, max)
}
