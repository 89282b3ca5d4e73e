//! The alert store: alerts by id in sled, newest first for listings.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::db::{Db, DbError};
use std::collections::BTreeMap;

use crate::model::{Alert, AlertPage, AlertQuery, AlertStatus, HistoryEntry, Severity};

/// Why an alert change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert {0} does not exist")]
    NotFound(u64),
    #[error("alert {id} is {status} and cannot be acknowledged")]
    BadTransition { id: u64, status: &'static str },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sled::Error> for AlertError {
    fn from(e: sled::Error) -> Self {
        AlertError::Db(DbError::Sled(e))
    }
}

/// Read and change alerts.
#[derive(Clone)]
pub struct AlertStore {
    db: Db,
}

fn decode(id: u64, v: &[u8]) -> Result<Alert, DbError> {
    serde_json::from_slice(v).map_err(|e| DbError::Corrupt {
        key: format!("alerts/{id}"),
        reason: e.to_string(),
    })
}

/// Writes an alert inside the detection worker's transaction.
pub fn insert_in(
    tx: &TransactionalTree,
    alert: &Alert,
) -> Result<(), ConflictableTransactionError<String>> {
    let bytes = serde_json::to_vec(alert)
        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
    tx.insert(&alert.id.to_be_bytes(), bytes)?;
    Ok(())
}

impl AlertStore {
    pub fn new(db: Db) -> AlertStore {
        AlertStore { db }
    }

    /// Number of stored alerts.
    pub fn count(&self) -> u64 {
        self.db.alerts.len() as u64
    }

    pub fn get(&self, id: u64) -> Result<Option<Alert>, DbError> {
        match self.db.alerts.get(id.to_be_bytes())? {
            Some(v) => Ok(Some(decode(id, &v)?)),
            None => Ok(None),
        }
    }

    /// Alerts matching `q`, newest first.
    pub fn list(&self, q: &AlertQuery) -> Result<AlertPage, DbError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let upper = q.before_id.unwrap_or(u64::MAX);
        let mut alerts = Vec::new();
        let mut more = false;
        for item in self.db.alerts.range(..upper.to_be_bytes()).rev() {
            let (k, v) = item?;
            let id = crate::db::be_u64(&k).unwrap_or(0);
            let a = decode(id, &v)?;
            if let Some(since) = q.since_ms {
                // Ids grow with time: once older than `since`, the rest are too.
                if a.created_ms < since {
                    break;
                }
            }
            if !matches(q, &a) {
                continue;
            }
            if alerts.len() == limit {
                more = true;
                break;
            }
            alerts.push(a);
        }
        let next_before_id = if more {
            alerts.last().map(|a| a.id)
        } else {
            None
        };
        Ok(AlertPage {
            alerts,
            next_before_id,
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

    /// Acknowledges an open alert; acknowledging twice adds the note only.
    pub fn acknowledge(
        &self,
        id: u64,
        by: &str,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Alert, AlertError> {
        loop {
            let Some(old) = self.db.alerts.get(id.to_be_bytes())? else {
                return Err(AlertError::NotFound(id));
            };
            let mut a = decode(id, &old)?;
            if a.status == AlertStatus::Closed {
                return Err(AlertError::BadTransition {
                    id,
                    status: a.status.as_str(),
                });
            }
            a.status = AlertStatus::Acknowledged;
            a.history.push(HistoryEntry {
                at_ms: now_ms,
                by: by.into(),
                action: "acknowledged".into(),
                note: note.clone(),
            });
            let new = serde_json::to_vec(&a).map_err(|e| DbError::Corrupt {
                key: format!("alerts/{id}"),
                reason: e.to_string(),
            })?;
            if self
                .db
                .alerts
                .compare_and_swap(id.to_be_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                self.db.db.flush()?;
                return Ok(a);
            }
        }
    }
}

fn matches(q: &AlertQuery, a: &Alert) -> bool {
    q.severity.is_none_or(|s| a.severity >= s)
        && q.rule.as_deref().is_none_or(|r| a.rule_id == r)
        && q.host
            .as_deref()
            .is_none_or(|h| a.host.eq_ignore_ascii_case(h))
        && q.status.is_none_or(|s| a.status == s)
}
