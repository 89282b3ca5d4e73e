//! The alert store: alerts by id in sled, their secondary indexes
//! ([`crate::alert_index`]), and the responders' lifecycle
//! (open → acknowledged → closed, reopen, assign, notes).
//!
//! Every write changes the alert and its index keys in one transaction, so
//! a listing never sees an index entry without its alert or the reverse.

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use crate::alert_index::{self, Plan, QueryError};
use crate::db::{Db, DbError};
use std::collections::BTreeMap;

use crate::model::{
    Alert, AlertPage, AlertQuery, AlertStatus, BulkAction, BulkRequest, BulkResponse, CloseReason,
    HistoryEntry, Severity, SortOrder,
};

/// Most alerts one bulk call looks at; the caller runs it again for more.
pub const BULK_MAX: usize = 10_000;

/// Why an alert change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert {0} does not exist")]
    NotFound(u64),
    #[error("alert {id} is {status} and cannot be {action}")]
    BadTransition {
        id: u64,
        status: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sled::Error> for AlertError {
    fn from(e: sled::Error) -> Self {
        AlertError::Db(DbError::Sled(e))
    }
}

impl From<TransactionError<AlertError>> for AlertError {
    fn from(e: TransactionError<AlertError>) -> Self {
        match e {
            TransactionError::Abort(a) => a,
            TransactionError::Storage(s) => AlertError::Db(DbError::Sled(s)),
        }
    }
}

/// A change to one alert, as a responder asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Ack,
    Close(CloseReason),
    Assign(String),
    Note,
    Reopen,
}

impl Change {
    /// The verb used in errors and audit actions.
    pub fn verb(&self) -> &'static str {
        match self {
            Change::Ack => "ack",
            Change::Close(_) => "close",
            Change::Assign(_) => "assign",
            Change::Note => "note",
            Change::Reopen => "reopen",
        }
    }

    /// Applies the change to `a`; `Ok(false)` when it changes nothing (ack
    /// of an acknowledged alert without a note).
    pub fn apply(
        &self,
        a: &mut Alert,
        by: &str,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<bool, AlertError> {
        let refuse = |action: &'static str| AlertError::BadTransition {
            id: a.id,
            status: a.status.as_str(),
            action,
        };
        let (action, detail) = match self {
            Change::Ack => match a.status {
                AlertStatus::Open => {
                    a.status = AlertStatus::Acknowledged;
                    ("acknowledged", None)
                }
                AlertStatus::Acknowledged if note.is_some() => ("acknowledged", None),
                AlertStatus::Acknowledged => return Ok(false),
                AlertStatus::Closed => return Err(refuse("acknowledged")),
            },
            Change::Close(reason) => {
                if a.status == AlertStatus::Closed {
                    return Err(refuse("closed"));
                }
                a.status = AlertStatus::Closed;
                a.close_reason = Some(*reason);
                a.closed_ms = Some(now_ms);
                ("closed", Some(reason.as_str().to_owned()))
            }
            Change::Assign(who) => {
                if !crate::auth::valid_name(who) {
                    return Err(AlertError::BadRequest(format!(
                        "`{who}` is not a valid assignee: use 1-64 letters, digits, `.`, `-` or `_`"
                    )));
                }
                if a.assignee.as_deref() == Some(who.as_str()) && note.is_none() {
                    return Ok(false);
                }
                a.assignee = Some(who.clone());
                ("assigned", Some(who.clone()))
            }
            Change::Note => {
                if note.is_none() {
                    return Err(AlertError::BadRequest("a note needs text".into()));
                }
                ("noted", None)
            }
            Change::Reopen => {
                if a.status != AlertStatus::Closed {
                    return Err(refuse("reopened"));
                }
                a.status = AlertStatus::Open;
                a.close_reason = None;
                a.closed_ms = None;
                ("reopened", None)
            }
        };
        a.history.push(HistoryEntry {
            at_ms: now_ms,
            by: by.into(),
            action: action.into(),
            note,
            detail,
        });
        Ok(true)
    }
}

/// Read and change alerts.
#[derive(Clone)]
pub struct AlertStore {
    db: Db,
    index: sled::Tree,
    /// Held shared by every responder change and removal, and exclusively
    /// by a restore, which replaces the whole store: a change racing it
    /// could otherwise leave index keys of an alert that is gone.
    writers: std::sync::Arc<std::sync::RwLock<()>>,
}

fn decode(id: u64, v: &[u8]) -> Result<Alert, DbError> {
    serde_json::from_slice(v).map_err(|e| DbError::Corrupt {
        key: format!("alerts/{id}"),
        reason: e.to_string(),
    })
}

fn encode(a: &Alert) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(a).map_err(|e| DbError::Corrupt {
        key: format!("alerts/{}", a.id),
        reason: e.to_string(),
    })
}

/// Writes an alert and its index keys inside the detection worker's
/// transaction (`index` is [`AlertStore::index_tree`]).
pub fn insert_in(
    tx: &TransactionalTree,
    index: &TransactionalTree,
    alert: &Alert,
) -> Result<(), ConflictableTransactionError<String>> {
    let bytes = serde_json::to_vec(alert)
        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
    tx.insert(&alert.id.to_be_bytes(), bytes)?;
    for k in alert_index::keys(alert) {
        index.insert(k, &[][..])?;
    }
    Ok(())
}

/// Sets, inside the detection worker's transaction, the repeats that a
/// `suppress:` window swallowed on the alert the window was tagged with.
/// The count is the window's whole count, so applying it twice changes
/// nothing. An alert no longer stored (retention) or unreadable is left
/// alone: a count must not stop detection.
pub fn note_repeats_in(
    tx: &TransactionalTree,
    r: &soc_rules::Repeat,
) -> Result<(), ConflictableTransactionError<String>> {
    let Some(old) = tx.get(r.tag.to_be_bytes())? else {
        return Ok(());
    };
    let Ok(mut a) = decode(r.tag, &old) else {
        return Ok(());
    };
    if note_repeats(&mut a, r) {
        let bytes = encode(&a).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
        tx.insert(&r.tag.to_be_bytes(), bytes)?;
    }
    Ok(())
}

/// Applies `r` to `a`; returns whether it changed. Counts and times only
/// grow: a repeat replayed after a crash finds them already there.
pub fn note_repeats(a: &mut Alert, r: &soc_rules::Repeat) -> bool {
    let count = a.suppressed.max(r.count);
    let last = a.last_repeat_ms.max(Some(r.last_ms));
    let changed = (count, last) != (a.suppressed, a.last_repeat_ms);
    a.suppressed = count;
    a.last_repeat_ms = last;
    changed
}

impl AlertStore {
    /// Opens the store and its index tree.
    pub fn open(db: Db) -> Result<AlertStore, DbError> {
        let index = db.db.open_tree(alert_index::TREE)?;
        Ok(AlertStore {
            db,
            index,
            writers: Default::default(),
        })
    }

    /// Blocks every responder change and removal until dropped (restore).
    pub fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.writers.write().unwrap_or_else(|p| p.into_inner())
    }

    fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.writers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The index tree, for writers that put alerts in their own transaction.
    pub fn index_tree(&self) -> &sled::Tree {
        &self.index
    }

    /// Number of stored alerts.
    pub fn count(&self) -> u64 {
        self.db.alerts.len() as u64
    }

    /// Highest alert id stored (0 when none).
    pub fn last_id(&self) -> Result<u64, DbError> {
        Ok(self
            .db
            .alerts
            .last()?
            .and_then(|(k, _)| crate::db::be_u64(&k))
            .unwrap_or(0))
    }

    pub fn get(&self, id: u64) -> Result<Option<Alert>, DbError> {
        match self.db.alerts.get(id.to_be_bytes())? {
            Some(v) => Ok(Some(decode(id, &v)?)),
            None => Ok(None),
        }
    }

    /// Alerts matching `q`, in its order, one page.
    pub fn list(&self, q: &AlertQuery) -> Result<AlertPage, AlertError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let plan = Plan::new(&self.index, q)?;
        let mut alerts = Vec::with_capacity(limit.min(128));
        let mut more = false;
        let resume = plan.walk(&self.index, &self.db.alerts, |id| {
            let Some(a) = self.get(id)? else {
                return Ok(true);
            };
            if !plan.in_time(&a) {
                return Ok(true);
            }
            if alerts.len() == limit {
                more = true;
                return Ok(false);
            }
            alerts.push(a);
            Ok(true)
        })?;
        // Out of budget: hand back a cursor just past the last id examined.
        let (next_before_id, next_after_id) = match (plan.order(), more, resume) {
            (SortOrder::Newest, true, _) => (alerts.last().map(|a| a.id), None),
            (SortOrder::Newest, false, Some(c)) => (Some(c.saturating_add(1)), None),
            (SortOrder::Oldest, true, _) => (None, alerts.last().map(|a| a.id)),
            (SortOrder::Oldest, false, Some(c)) => (None, Some(c.saturating_sub(1))),
            (_, false, None) => (None, None),
        };
        Ok(AlertPage {
            alerts,
            next_before_id,
            next_after_id,
        })
    }

    /// Number of alerts in `status`, by severity.
    pub fn count_by_severity(
        &self,
        status: AlertStatus,
    ) -> Result<BTreeMap<Severity, u64>, DbError> {
        let mut out = BTreeMap::new();
        for item in self.db.alerts.iter() {
            let (k, v) = item?;
            let a = decode(crate::db::be_u64(&k).unwrap_or(0), &v)?;
            if a.status == status {
                *out.entry(a.severity).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// Ids matching `q` (newest first), at most `max`; and whether more matched.
    pub fn matching_ids(&self, q: &AlertQuery, max: usize) -> Result<(Vec<u64>, bool), AlertError> {
        let mut q = q.clone();
        q.sort = Some(SortOrder::Newest);
        q.after_id = None;
        let plan = Plan::new(&self.index, &q)?;
        let mut ids = Vec::new();
        let mut more = false;
        let check_time = q.since_ms.is_some() || q.until_ms.is_some();
        let resume = plan.walk(&self.index, &self.db.alerts, |id| {
            if check_time {
                match self.get(id)? {
                    Some(a) if plan.in_time(&a) => {}
                    _ => return Ok(true),
                }
            }
            if ids.len() == max {
                more = true;
                return Ok(false);
            }
            ids.push(id);
            Ok(true)
        })?;
        Ok((ids, more || resume.is_some()))
    }

    /// Applies `change` to alert `id` and its index keys in one transaction,
    /// then flushes. Returns the alert as stored.
    pub fn update(
        &self,
        id: u64,
        change: &Change,
        by: &str,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Alert, AlertError> {
        let a = self.update_in_tx(id, change, by, note, now_ms)?;
        self.db.db.flush()?;
        Ok(a)
    }

    fn update_in_tx(
        &self,
        id: u64,
        change: &Change,
        by: &str,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Alert, AlertError> {
        let _shared = self.shared();
        let r = (&self.db.alerts, &self.index).transaction(|(t, ix)| {
            let Some(old) = t.get(id.to_be_bytes())? else {
                return abort(AlertError::NotFound(id));
            };
            let mut a = match decode(id, &old) {
                Ok(a) => a,
                Err(e) => return abort(AlertError::Db(e)),
            };
            let before = alert_index::keys(&a);
            match change.apply(&mut a, by, note.clone(), now_ms) {
                Ok(true) => {}
                Ok(false) => return Ok(a),
                Err(e) => return abort(e),
            }
            let after = alert_index::keys(&a);
            for k in before.iter().filter(|k| !after.contains(k)) {
                ix.remove(k.as_slice())?;
            }
            for k in after.iter().filter(|k| !before.contains(k)) {
                ix.insert(k.as_slice(), &[][..])?;
            }
            match encode(&a) {
                Ok(bytes) => t.insert(&id.to_be_bytes(), bytes)?,
                Err(e) => return abort(AlertError::Db(e)),
            };
            Ok(a)
        });
        Ok(r?)
    }

    /// Acknowledges an open alert; acknowledging twice adds the note only.
    pub fn acknowledge(
        &self,
        id: u64,
        by: &str,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Alert, AlertError> {
        self.update(id, &Change::Ack, by, note, now_ms)
    }

    /// Applies a bulk action to what its filter selects (at most
    /// [`BULK_MAX`]); alerts the action does not apply to (acknowledging a
    /// closed alert) are left alone and not counted as changed.
    pub fn bulk(
        &self,
        req: &BulkRequest,
        by: &str,
        now_ms: i64,
    ) -> Result<BulkResponse, AlertError> {
        let change = match req.action {
            BulkAction::Ack => Change::Ack,
            BulkAction::Reopen => Change::Reopen,
            BulkAction::Close => Change::Close(req.reason.ok_or_else(|| {
                AlertError::BadRequest(
                    "close needs a reason (true_positive, false_positive, benign, duplicate)"
                        .into(),
                )
            })?),
            BulkAction::Assign => Change::Assign(
                req.assignee
                    .clone()
                    .ok_or_else(|| AlertError::BadRequest("assign needs an assignee".into()))?,
            ),
        };
        let (ids, truncated) = self.matching_ids(&req.filter, BULK_MAX)?;
        let mut changed = 0u64;
        for &id in &ids {
            if req.dry_run {
                let Some(mut a) = self.get(id)? else { continue };
                if matches!(change.apply(&mut a, by, req.note.clone(), now_ms), Ok(true)) {
                    changed += 1;
                }
                continue;
            }
            let before = self.get(id)?.map(|a| a.history.len());
            match self.update_in_tx(id, &change, by, req.note.clone(), now_ms) {
                Ok(a) if Some(a.history.len()) != before => changed += 1,
                Ok(_) => {}
                Err(AlertError::NotFound(_) | AlertError::BadTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !req.dry_run && changed > 0 {
            self.db.db.flush()?;
        }
        Ok(BulkResponse {
            matched: ids.len() as u64,
            changed,
            max_id: ids.first().copied(),
            truncated,
        })
    }

    /// Deletes alerts and their index keys, one transaction per alert.
    /// Returns how many were removed.
    pub fn remove(&self, ids: &[u64]) -> Result<u64, AlertError> {
        let mut n = 0;
        let _shared = self.shared();
        for &id in ids {
            let r = (&self.db.alerts, &self.index).transaction(|(t, ix)| {
                let Some(old) = t.remove(&id.to_be_bytes())? else {
                    return Ok(false);
                };
                let a = match decode(id, &old) {
                    Ok(a) => a,
                    Err(e) => return abort(AlertError::Db(e)),
                };
                for k in alert_index::keys(&a) {
                    ix.remove(k)?;
                }
                Ok(true)
            });
            if r? {
                n += 1;
            }
        }
        Ok(n)
    }
}
