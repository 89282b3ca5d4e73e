//! The audit log: every state-changing API call, who made it, from where,
//! and how it ended, in an append-only sled tree.
//!
//! Keys are `at_ms (u64 BE) | seq (u64 BE)`, so the log reads in time order
//! and `--since` is a seek. The only writer is [`AuditLog::record`], which
//! inserts under a fresh key and never overwrites; the API has no route that
//! changes or deletes a record. Retention (`retention.audit_max_age`) is the
//! only thing that removes records, oldest first.

use std::net::SocketAddr;

use crate::auth::TokenRecord;
use crate::db::{Db, DbError};
use crate::model::{AuditEntry, AuditOutcome, AuditQuery};

/// Name of the audit tree.
pub const TREE: &str = "audit";

/// The append-only audit tree.
#[derive(Clone)]
pub struct AuditLog {
    db: sled::Db,
    tree: sled::Tree,
}

/// What a caller is about to do, for [`AuditLog::record`].
#[derive(Debug, Clone)]
pub struct Action<'a> {
    /// Who (None when the token was missing or unknown).
    pub who: Option<&'a TokenRecord>,
    pub peer: Option<SocketAddr>,
    /// `alert.ack`, `token.create`, `rules.reload`, ...
    pub action: &'a str,
    pub target: &'a str,
}

fn key(at_ms: i64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl AuditLog {
    pub fn open(db: &Db) -> Result<AuditLog, DbError> {
        Ok(AuditLog {
            tree: db.db.open_tree(TREE)?,
            db: db.db.clone(),
        })
    }

    /// Appends one record and makes it durable.
    pub fn record(
        &self,
        act: &Action<'_>,
        outcome: AuditOutcome,
        message: Option<String>,
        at_ms: i64,
    ) -> Result<AuditEntry, DbError> {
        let seq = self.db.generate_id()?;
        let entry = AuditEntry {
            seq,
            at_ms,
            token: act.who.map_or_else(|| "-".to_owned(), |w| w.name.clone()),
            role: act.who.map(|w| w.role),
            peer: act.peer.map(|p| p.ip().to_string()),
            action: act.action.to_owned(),
            target: act.target.to_owned(),
            outcome,
            message,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| DbError::Corrupt {
            key: format!("audit/{seq}"),
            reason: e.to_string(),
        })?;
        // A fresh key every time: compare-and-swap against "absent" makes
        // overwriting impossible even by mistake.
        let _ = self
            .tree
            .compare_and_swap(key(at_ms, seq), None as Option<&[u8]>, Some(bytes))?;
        self.tree.flush()?;
        Ok(entry)
    }

    /// Records oldest first from `q.since_ms`, after `q.after_seq`.
    pub fn list(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, DbError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let start = key(q.since_ms.unwrap_or(0), 0);
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            let e: AuditEntry = serde_json::from_slice(&v).map_err(|e| DbError::Corrupt {
                key: format!("audit/{k:?}"),
                reason: e.to_string(),
            })?;
            if q.after_seq.is_some_and(|a| e.seq <= a) {
                continue;
            }
            out.push(e);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Removes records older than `cutoff_ms`, at most `max`. Retention only.
    pub fn prune_before(&self, cutoff_ms: i64, max: usize) -> Result<u64, DbError> {
        let mut n = 0;
        let keys: Vec<_> = self
            .tree
            .range(..key(cutoff_ms, 0))
            .take(max)
            .filter_map(|r| r.ok().map(|(k, _)| k))
            .collect();
        for k in keys {
            self.tree.remove(k)?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn records_read_back_in_order_and_since_seeks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("db")).expect("db");
        let log = AuditLog::open(&db).expect("audit");
        let who = TokenRecord {
            name: "alice".into(),
            role: Role::Responder,
            created_ms: 0,
            revoked: false,
        };
        let peer: SocketAddr = "192.0.2.7:5555".parse().expect("addr");
        for (i, outcome) in [
            AuditOutcome::Success,
            AuditOutcome::Refused,
            AuditOutcome::Failed,
        ]
        .into_iter()
        .enumerate()
        {
            log.record(
                &Action {
                    who: Some(&who),
                    peer: Some(peer),
                    action: "alert.ack",
                    target: &format!("{i}"),
                },
                outcome,
                None,
                1000 * (i as i64 + 1),
            )
            .expect("record");
        }
        let all = log.list(&AuditQuery::default()).expect("list");
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target, "0");
        assert_eq!(all[1].outcome, AuditOutcome::Refused);
        assert_eq!(all[0].peer.as_deref(), Some("192.0.2.7"));
        assert_eq!(all[0].role, Some(Role::Responder));
        let later = log
            .list(&AuditQuery {
                since_ms: Some(2000),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(later.len(), 2);
        let page = log
            .list(&AuditQuery {
                after_seq: Some(all[1].seq),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(page.len(), 1);
        assert_eq!(log.prune_before(2500, 100).expect("prune"), 2);
        assert_eq!(log.list(&AuditQuery::default()).expect("list").len(), 1);
    }
}
