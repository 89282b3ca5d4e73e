//! The responders' workflow metrics: alert changes, audit, auth limiter,
//! follow streams, retention and forwarding.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::{counter, counter_vec, gauge, gauge_vec};

/// Metrics of the responders' workflow (alerts API, audit, retention, forwarding).
pub struct WorkflowMetrics {
    /// Requests refused with 429 because their peer failed to authenticate too often.
    pub auth_rate_limited: IntCounter,
    /// Peers forgotten by the failure limiter because it was full.
    pub auth_limiter_evictions: IntCounter,
    /// Peers tracked by the failure limiter.
    pub auth_limiter_peers: IntGauge,
    /// `alerts follow` streams open now.
    pub alert_streams_open: IntGauge,
    /// Streams refused because `api.max_followers` were open.
    pub alert_streams_refused: IntCounter,
    /// Alert changes by action (ack, close, assign, note, reopen).
    pub alert_changes: IntCounterVec,
    /// Audit records written, by outcome.
    pub audit_records: IntCounterVec,
    /// Audit records that could not be written.
    pub audit_failures: IntCounter,
    /// What retention removed, by kind (closed_alerts, journal, audit).
    pub retention_removed: IntCounterVec,
    /// Alerts delivered, by sink.
    pub forward_sent: IntCounterVec,
    /// Failed delivery attempts, by sink.
    pub forward_failures: IntCounterVec,
    /// Alert ids not yet delivered, by sink.
    pub forward_backlog: IntGaugeVec,
    /// Alert ids skipped because the backlog passed `max_backlog`, by sink.
    pub forward_skipped: IntCounterVec,
    /// Alerts held in memory for delivery, by sink.
    pub forward_queue: IntGaugeVec,
}

impl WorkflowMetrics {
    pub(super) fn new(r: &Registry) -> WorkflowMetrics {
        WorkflowMetrics {
            auth_rate_limited: counter(
                r,
                "soc_auth_rate_limited_total",
                "Requests refused with 429 because their address failed to authenticate too often.",
            ),
            auth_limiter_evictions: counter(
                r,
                "soc_auth_limiter_evictions_total",
                "Addresses forgotten by the failed-authentication limiter because api.auth_max_peers was reached.",
            ),
            auth_limiter_peers: gauge(
                r,
                "soc_auth_limiter_peers",
                "Addresses tracked by the failed-authentication limiter.",
            ),
            alert_streams_open: gauge(
                r,
                "soc_alert_streams_open",
                "socctl alerts follow streams open now.",
            ),
            alert_streams_refused: counter(
                r,
                "soc_alert_streams_refused_total",
                "Alert streams refused because api.max_followers were open.",
            ),
            alert_changes: counter_vec(
                r,
                "soc_alert_changes_total",
                "Alert lifecycle changes made through the API, by action.",
                &["action"],
            ),
            audit_records: counter_vec(
                r,
                "soc_audit_records_total",
                "Audit records written, by outcome.",
                &["outcome"],
            ),
            audit_failures: counter(
                r,
                "soc_audit_failures_total",
                "Audit records that could not be written.",
            ),
            retention_removed: counter_vec(
                r,
                "soc_retention_removed_total",
                "Items removed by retention, by kind (closed_alerts, journal, audit).",
                &["kind"],
            ),
            forward_sent: counter_vec(
                r,
                "soc_forward_sent_total",
                "Alerts delivered to a forwarding sink.",
                &["sink"],
            ),
            forward_failures: counter_vec(
                r,
                "soc_forward_failures_total",
                "Failed delivery attempts to a forwarding sink (each is retried).",
                &["sink"],
            ),
            forward_backlog: gauge_vec(
                r,
                "soc_forward_backlog",
                "Alert ids raised but not yet delivered to a forwarding sink.",
                &["sink"],
            ),
            forward_skipped: counter_vec(
                r,
                "soc_forward_skipped_total",
                "Alert ids skipped because a sink's backlog passed max_backlog.",
                &["sink"],
            ),
            forward_queue: gauge_vec(
                r,
                "soc_forward_queue",
                "Alerts read ahead into memory for delivery to a sink.",
                &["sink"],
            ),
        }
    }
}
