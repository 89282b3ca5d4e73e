//! Retention: a periodic task that removes closed alerts, raw journal
//! entries and audit records past their configured age or count
//! (`[retention]`), and counts what it removed in
//! `soc_retention_removed_total{kind}`.
//!
//! Open and acknowledged alerts are never removed. Journal entries are
//! removed only once the detection cursor has passed them, and the newest
//! entry always stays (it carries the journal's next sequence number).

use std::sync::Arc;

use tokio::sync::watch;

use crate::app::{App, now_ms};
use crate::db::DbError;

/// Items removed per transaction or pass, so one run never holds the
/// database for long.
const CHUNK: usize = 1000;

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub closed_alerts: u64,
    pub journal: u64,
    pub audit: u64,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs every retention rule once.
pub fn run_once(app: &App, now: i64) -> Result<Removed, DbError> {
    let r = &app.settings.retention;
    let mut out = Removed::default();
    let index = app.alerts.index_tree();
    let remove = |ids: &[u64]| -> Result<u64, DbError> {
        app.alerts.remove(ids).map_err(|e| match e {
            crate::alerts::AlertError::Db(d) => d,
            other => DbError::Aborted(other.to_string()),
        })
    };

    if let Some(age) = r.closed_alert_max_age {
        let cutoff = now.saturating_sub(ms(age));
        loop {
            let ids = crate::alert_index::closed_before(index, cutoff, CHUNK)?;
            if ids.is_empty() {
                break;
            }
            out.closed_alerts += remove(&ids)?;
        }
    }
    if let Some(max) = r.max_closed_alerts {
        let closed = crate::alert_index::closed_count(index) as u64;
        let mut excess = closed.saturating_sub(max);
        while excess > 0 {
            let ids = crate::alert_index::oldest_closed(index, (excess as usize).min(CHUNK))?;
            if ids.is_empty() {
                break;
            }
            let n = remove(&ids)?;
            out.closed_alerts += n;
            excess = excess.saturating_sub(ids.len() as u64);
        }
    }

    // The journal: only what detection has passed, never the newest entry.
    let (first, last) = app.journal.bounds()?;
    let limit = app.cursor().min(last.saturating_sub(1));
    if first > 0 && first <= limit {
        // Sequences are gap-free and pruned from the front: a count is a subtraction.
        let held = last - first + 1;
        let mut upto = first - 1;
        if let Some(max) = r.journal_max_entries
            && held > max
        {
            upto = upto.max((first - 1 + (held - max)).min(limit));
        }
        if let Some(age) = r.journal_max_age {
            let cutoff = now.saturating_sub(ms(age));
            let mut seq = upto;
            'scan: while seq < limit {
                let batch = app.journal.read_after(seq, CHUNK)?;
                if batch.is_empty() {
                    break;
                }
                for (s, e) in batch {
                    if s > limit {
                        break 'scan;
                    }
                    // An unreadable entry is past use: age it out with its neighbours.
                    if e.as_ref().is_ok_and(|e| e.received_ms >= cutoff) {
                        break 'scan;
                    }
                    seq = s;
                }
            }
            upto = upto.max(seq);
        }
        out.journal += app.journal.prune_through(upto)?;
    }

    if let Some(age) = r.audit_max_age {
        let cutoff = now.saturating_sub(ms(age));
        loop {
            let n = app.audit.prune_before(cutoff, CHUNK)?;
            out.audit += n;
            if n < CHUNK as u64 {
                break;
            }
        }
    }
    if out != Removed::default() {
        app.db.db.flush()?;
    }
    Ok(out)
}

/// Runs retention every `retention.interval` until `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let every = app.settings.retention.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let a = app.clone();
        match tokio::task::spawn_blocking(move || run_once(&a, now_ms())).await {
            Ok(Ok(removed)) => {
                let m = &app.metrics.workflow.retention_removed;
                m.with_label_values(&["closed_alerts"])
                    .inc_by(removed.closed_alerts);
                m.with_label_values(&["journal"]).inc_by(removed.journal);
                m.with_label_values(&["audit"]).inc_by(removed.audit);
                if removed != Removed::default() {
                    tracing::info!(
                        closed_alerts = removed.closed_alerts,
                        journal = removed.journal,
                        audit = removed.audit,
                        "retention removed old data"
                    );
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention run failed; retrying next interval")
            }
            Err(e) => tracing::error!(error = %e, "retention run panicked"),
        }
    }
}
