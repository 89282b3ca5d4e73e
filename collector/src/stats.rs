//! Gauges that are read from state rather than counted on the way: database
//! and disk size, open alerts by severity. Refreshed on a timer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::model::{AlertStatus, Severity};

/// How often the gauges are refreshed.
const PERIOD: Duration = Duration::from_secs(15);

/// Refreshes the state gauges once.
pub fn refresh(app: &App) {
    let m = &app.metrics;
    match app.db.db.size_on_disk() {
        Ok(n) => m.db_size_bytes.set(n as i64),
        Err(e) => tracing::warn!(error = %e, "could not read the database size"),
    }
    match fs4::statvfs(&app.settings.data_dir) {
        Ok(st) => {
            m.data_dir_available_bytes.set(st.available_space() as i64);
            m.data_dir_size_bytes.set(st.total_space() as i64);
        }
        Err(e) => {
            tracing::warn!(error = %e, dir = %app.settings.data_dir.display(), "could not read free space")
        }
    }
    match app.alerts.count_by_severity(AlertStatus::Open) {
        Ok(counts) => {
            for sev in Severity::ALL {
                let n = counts.get(&sev).copied().unwrap_or(0);
                m.alerts_open
                    .with_label_values(&[sev.as_str()])
                    .set(n as i64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count open alerts"),
    }
}

/// Refreshes the gauges every few seconds until shutdown.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let a = app.clone();
        if tokio::task::spawn_blocking(move || refresh(&a))
            .await
            .is_err()
        {
            tracing::error!("refreshing the state gauges panicked");
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.changed() => return,
        }
    }
}
