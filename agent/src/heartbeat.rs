//! The periodic health report to the collector.
//!
//! Sent every `heartbeat_interval` with the same credentials as batches. A
//! heartbeat that fails is not retried: the next one carries fresher
//! numbers. The collector uses them to spot silent and lagging agents.

use std::sync::atomic::Ordering;

use soc_protocol::{HEARTBEAT_PATH, Heartbeat, PROTOCOL_VERSION, SourceLag};

use crate::ship::{SendError, Shipper};
use crate::stats::Stats;

/// Builds the report from the counters and the per-source lag.
pub fn build(agent: &str, stats: &Stats, files_watched: usize, lag: Vec<SourceLag>) -> Heartbeat {
    Heartbeat {
        version: PROTOCOL_VERSION,
        agent: agent.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: hostname(),
        files_watched: files_watched as u64,
        lines_sent: stats.lines_sent.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        lag,
    }
}

/// Sends one heartbeat; failures are logged at `debug` only when the
/// collector is unreachable (batches already report that), as a warning
/// when it refuses.
pub async fn send(shipper: &Shipper, hb: Heartbeat) {
    match shipper
        .post_json::<_, serde_json::Value>(HEARTBEAT_PATH, &hb)
        .await
    {
        Ok(_) => tracing::debug!(files_watched = hb.files_watched, "Heartbeat sent."),
        Err(e @ SendError::Refused { .. }) => {
            tracing::warn!(error = %e, "Collector refused the heartbeat.");
        }
        Err(e) => tracing::debug!(error = %e, "Cannot send heartbeat."),
    }
}

/// The machine's host name, best effort.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_carries_counters_and_lag() {
        let stats = Stats::default();
        stats.lines_sent.store(7, Ordering::Relaxed);
        let lag = vec![SourceLag {
            source: "ufw".into(),
            bytes_behind: 10,
        }];
        let hb = build("web-01", &stats, 3, lag.clone());
        assert_eq!(
            (hb.agent.as_str(), hb.files_watched, hb.lines_sent),
            ("web-01", 3, 7)
        );
        assert_eq!(hb.lag, lag);
        assert_eq!(hb.version, PROTOCOL_VERSION);
    }
}
