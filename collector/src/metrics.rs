//! Every metric the collector exports, defined in this one module.
//!
//! Label values are bounded: formats and rule ids come from the loaded
//! content, reasons from fixed enums, agents from the enrolled set. No file
//! path or IP address is ever a label value.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Most distinct values a free-form label (a decoder's `event.module`) may take;
/// further values are reported as `other`.
const MAX_FREE_LABELS: usize = 100;

pub struct Metrics {
    registry: Registry,
    /// Lines received from agents, before de-duplication.
    pub events_received: IntCounterVec,
    /// Re-sent lines dropped by de-duplication.
    pub events_duplicate: IntCounter,
    /// Lines decoded, by `event.module` (`unknown` when no decoder matched).
    pub events_decoded: IntCounterVec,
    /// Lines a decoder matched but failed on, or journal entries that could not be read.
    pub events_failed: IntCounterVec,
    /// Batches accepted.
    pub batches_accepted: IntCounter,
    /// Batches refused, by reason.
    pub batches_rejected: IntCounterVec,
    /// Alerts stored, by severity.
    pub alerts: IntCounterVec,
    /// Alerts stored, by rule.
    pub alerts_by_rule: IntCounterVec,
    /// Time to decode and evaluate one detection step.
    pub detection_step_seconds: Histogram,
    /// Highest journal sequence.
    pub journal_last_seq: IntGauge,
    /// Last sequence processed by detection.
    pub detection_cursor: IntGauge,
    /// Journal entries waiting for detection.
    pub detection_lag: IntGauge,
    /// Newest event time minus the newest processed event time, in seconds.
    pub ingest_lag_seconds: IntGauge,
    /// Rule state entries held.
    pub rule_state_entries: IntGauge,
    /// API and ingest requests, by route and status code.
    pub http_requests: IntCounterVec,
    /// Failed authentications, by kind (agent, token, enrollment).
    pub auth_failures: IntCounterVec,
    /// Connections closed at once because `server.max_connections` was reached.
    pub connections_refused: IntCounter,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: IntCounter,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Last batch or heartbeat per agent (Unix seconds).
    pub agent_last_seen: IntGaugeVec,
    /// Lines accepted per agent since the collector started.
    pub agent_events: IntCounterVec,
    /// Bytes behind per agent, from its last heartbeat.
    pub agent_lag_bytes: IntGaugeVec,
    free_labels: Mutex<HashSet<String>>,
    /// The responders' workflow: auth limiter, follow streams, retention, forwarding.
    pub workflow: WorkflowMetrics,
}

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
    fn new(r: &Registry) -> WorkflowMetrics {
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

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        let detection_step_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "soc_detection_step_seconds",
                "Time to decode and evaluate one step of journal entries against the rules.",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("metric definition is valid");
        r.register(Box::new(detection_step_seconds.clone()))
            .expect("metric registered once");
        let m = Metrics {
            events_received: counter_vec(
                &r,
                "soc_events_received_total",
                "Lines received, before de-duplication, by transport.",
                &["transport"],
            ),
            events_duplicate: counter(
                &r,
                "soc_events_duplicate_total",
                "Re-sent lines dropped because the journal already held them.",
            ),
            events_decoded: counter_vec(
                &r,
                "soc_events_decoded_total",
                "Lines decoded, by event.module (unknown when no decoder matched).",
                &["module"],
            ),
            events_failed: counter_vec(
                &r,
                "soc_events_failed_total",
                "Lines a decoder matched but could not decode (by decoder), or journal entries that could not be read (decoder=\"journal\"), by reason.",
                &["decoder", "reason"],
            ),
            batches_accepted: counter(
                &r,
                "soc_batches_accepted_total",
                "Agent batches made durable and acknowledged.",
            ),
            batches_rejected: counter_vec(
                &r,
                "soc_batches_rejected_total",
                "Agent batches refused, by reason.",
                &["reason"],
            ),
            alerts: counter_vec(
                &r,
                "soc_alerts_total",
                "Alerts stored, by severity.",
                &["severity"],
            ),
            alerts_by_rule: counter_vec(
                &r,
                "soc_alerts_by_rule_total",
                "Alerts stored, by rule id.",
                &["rule"],
            ),
            detection_step_seconds,
            journal_last_seq: gauge(
                &r,
                "soc_journal_last_sequence",
                "Highest journal sequence number written.",
            ),
            detection_cursor: gauge(
                &r,
                "soc_detection_cursor",
                "Last journal sequence number processed by detection.",
            ),
            detection_lag: gauge(
                &r,
                "soc_detection_lag_events",
                "Journal entries written but not yet processed by detection.",
            ),
            ingest_lag_seconds: gauge(
                &r,
                "soc_ingest_lag_seconds",
                "Receive time of the newest journal entry minus that of the newest processed one.",
            ),
            rule_state_entries: gauge(
                &r,
                "soc_rule_state_entries",
                "Rule state entries (windows, counters, sequences) held.",
            ),
            http_requests: counter_vec(
                &r,
                "soc_http_requests_total",
                "HTTPS requests, by route and status code.",
                &["route", "status"],
            ),
            auth_failures: counter_vec(
                &r,
                "soc_auth_failures_total",
                "Failed authentications, by kind (agent, token, enrollment).",
                &["kind"],
            ),
            connections_refused: counter(
                &r,
                "soc_connections_refused_total",
                "Connections closed at once because server.max_connections was reached.",
            ),
            tls_handshake_failures: counter(
                &r,
                "soc_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
            ),
            connections_open: gauge(&r, "soc_connections_open", "HTTPS connections open now."),
            agent_last_seen: gauge_vec(
                &r,
                "soc_agent_last_seen_timestamp_seconds",
                "Unix time of the last batch or heartbeat from each agent.",
                &["agent"],
            ),
            agent_events: counter_vec(
                &r,
                "soc_agent_events_received_total",
                "Lines accepted into the journal from each agent since the collector started.",
                &["agent"],
            ),
            agent_lag_bytes: gauge_vec(
                &r,
                "soc_agent_lag_bytes",
                "Bytes written to an agent's watched files and not yet acknowledged, from its last heartbeat.",
                &["agent"],
            ),
            free_labels: Mutex::new(HashSet::new()),
            workflow: WorkflowMetrics::new(&r),
            registry: r,
        };
        // Pre-create the common series so dashboards show zeros, not gaps.
        for sev in ["info", "low", "medium", "high", "critical"] {
            m.alerts.with_label_values(&[sev]);
        }
        m.events_received.with_label_values(&["agent"]);
        for kind in ["closed_alerts", "journal", "audit"] {
            m.workflow.retention_removed.with_label_values(&[kind]);
        }
        m
    }

    /// Bounds a label value that comes from content rather than code.
    pub fn bounded<'a>(&self, value: &'a str) -> &'a str {
        let Ok(mut seen) = self.free_labels.lock() else {
            return "other";
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() < MAX_FREE_LABELS {
            seen.insert(value.to_owned());
            value
        } else {
            "other"
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
