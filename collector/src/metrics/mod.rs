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

mod syslog;
mod workflow;

pub use syslog::SyslogMetrics;
pub use workflow::WorkflowMetrics;

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
    /// 1 per agent and software version, from its last heartbeat.
    pub agent_info: IntGaugeVec,
    /// Alerts stored, by host (bounded: past 100 hosts, `other`).
    pub alerts_by_host: IntCounterVec,
    /// Alerts currently open, by severity.
    pub alerts_open: IntGaugeVec,
    /// Size of the database on disk.
    pub db_size_bytes: IntGauge,
    /// Free space on the data folder's file system.
    pub data_dir_available_bytes: IntGauge,
    /// Size of the data folder's file system.
    pub data_dir_size_bytes: IntGauge,
    /// Unix time of the last successful backup (0 before the first).
    pub backup_last_success: IntGauge,
    /// Size of the last backup.
    pub backup_size_bytes: IntGauge,
    /// Rule state groups evicted because a bound was reached, by rule.
    pub rule_state_evicted: IntCounterVec,
    /// Detections folded into an earlier alert by `suppress:`, by rule.
    pub alerts_suppressed: IntCounterVec,
    /// Events that arrived later than `detection.allowed_lateness`.
    pub late_events: IntCounter,
    /// Events waiting for `detection.allowed_lateness`.
    pub held_back: IntGauge,
    /// Held-back events evaluated early because `detection.max_held_back`
    /// were waiting.
    pub held_back_overflow: IntCounter,
    /// Rule reloads, by result (ok, error).
    pub rule_reloads: IntCounterVec,
    /// Fields the rules in force read that no loaded decoder sets.
    pub rule_fields_unset: IntGauge,
    free_labels: Mutex<HashSet<String>>,
    /// The syslog listeners' metrics.
    pub syslog: SyslogMetrics,
    /// The responders' workflow: auth limiter, follow streams, retention, forwarding.
    pub workflow: WorkflowMetrics,
}

/// Every metric name this module defines, for the test that dashboards and
/// alerting rules only use metrics that exist.
pub const NAMES: &[&str] = &[
    "soc_events_received_total",
    "soc_events_duplicate_total",
    "soc_events_decoded_total",
    "soc_events_failed_total",
    "soc_batches_accepted_total",
    "soc_batches_rejected_total",
    "soc_alerts_total",
    "soc_alerts_by_rule_total",
    "soc_alerts_by_host_total",
    "soc_alerts_open",
    "soc_detection_step_seconds",
    "soc_journal_last_sequence",
    "soc_detection_cursor",
    "soc_detection_lag_events",
    "soc_ingest_lag_seconds",
    "soc_rule_state_entries",
    "soc_rule_state_evicted_total",
    "soc_alerts_suppressed_total",
    "soc_detection_late_events_total",
    "soc_detection_held_back_events",
    "soc_detection_held_back_overflow_total",
    "soc_rule_reloads_total",
    "soc_rule_fields_unset",
    "soc_http_requests_total",
    "soc_auth_failures_total",
    "soc_connections_refused_total",
    "soc_tls_handshake_failures_total",
    "soc_connections_open",
    "soc_agent_last_seen_timestamp_seconds",
    "soc_agent_events_received_total",
    "soc_agent_lag_bytes",
    "soc_agent_info",
    "soc_db_size_bytes",
    "soc_data_dir_available_bytes",
    "soc_data_dir_size_bytes",
    "soc_backup_last_success_timestamp_seconds",
    "soc_backup_size_bytes",
    "soc_build_info",
    // The responders' workflow.
    "soc_alert_changes_total",
    "soc_alert_streams_open",
    "soc_alert_streams_refused_total",
    "soc_audit_failures_total",
    "soc_audit_records_total",
    "soc_auth_limiter_evictions_total",
    "soc_auth_limiter_peers",
    "soc_auth_rate_limited_total",
    "soc_forward_backlog",
    "soc_forward_failures_total",
    "soc_forward_queue",
    "soc_forward_sent_total",
    "soc_forward_skipped_total",
    "soc_retention_removed_total",
    // The syslog listeners.
    "soc_syslog_backpressure_waits_total",
    "soc_syslog_connections_open",
    "soc_syslog_framing_errors_total",
    "soc_syslog_idle_closed_total",
    "soc_syslog_journal_appends_total",
    "soc_syslog_journal_errors_total",
    "soc_syslog_lost_total",
    "soc_syslog_messages_journalled_total",
    "soc_syslog_messages_received_total",
    "soc_syslog_queue_bytes",
    "soc_syslog_queue_messages",
    "soc_syslog_refused_total",
    "soc_syslog_sender_last_seen_timestamp_seconds",
    "soc_syslog_tls_handshake_failures_total",
    "soc_syslog_truncated_total",
    "soc_syslog_udp_dropped_total",
    "soc_syslog_udp_receive_buffer_drops",
    // From the process collector (Linux).
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
];

pub(crate) fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

pub(crate) fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

pub(crate) fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

pub(crate) fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
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
            agent_info: gauge_vec(
                &r,
                "soc_agent_info",
                "1 for each agent and the software version of its last heartbeat.",
                &["agent", "version"],
            ),
            alerts_by_host: counter_vec(
                &r,
                "soc_alerts_by_host_total",
                "Alerts stored, by host (at most 100 distinct hosts; the rest as other).",
                &["host"],
            ),
            alerts_open: gauge_vec(
                &r,
                "soc_alerts_open",
                "Alerts currently open, by severity.",
                &["severity"],
            ),
            db_size_bytes: gauge(
                &r,
                "soc_db_size_bytes",
                "Size of the collector's database on disk, in bytes.",
            ),
            data_dir_available_bytes: gauge(
                &r,
                "soc_data_dir_available_bytes",
                "Free bytes on the file system holding the data folder.",
            ),
            data_dir_size_bytes: gauge(
                &r,
                "soc_data_dir_size_bytes",
                "Size in bytes of the file system holding the data folder.",
            ),
            backup_last_success: gauge(
                &r,
                "soc_backup_last_success_timestamp_seconds",
                "Unix time of the last successful backup; 0 before the first.",
            ),
            backup_size_bytes: gauge(
                &r,
                "soc_backup_size_bytes",
                "Size in bytes of the last backup.",
            ),
            rule_state_evicted: counter_vec(
                &r,
                "soc_rule_state_evicted_total",
                "Rule state groups evicted (oldest first) because detection.max_groups_per_rule or max_total_groups was reached, by rule.",
                &["rule"],
            ),
            alerts_suppressed: counter_vec(
                &r,
                "soc_alerts_suppressed_total",
                "Detections suppressed by a rule's suppress: period, by rule.",
                &["rule"],
            ),
            late_events: counter(
                &r,
                "soc_detection_late_events_total",
                "Events older than the newest minus detection.allowed_lateness, evaluated out of order.",
            ),
            held_back: gauge(
                &r,
                "soc_detection_held_back_events",
                "Events waiting for detection.allowed_lateness before rules see them.",
            ),
            held_back_overflow: counter(
                &r,
                "soc_detection_held_back_overflow_total",
                "Held-back events evaluated before their lateness passed because detection.max_held_back were waiting.",
            ),
            rule_reloads: counter_vec(
                &r,
                "soc_rule_reloads_total",
                "Reloads of decoder, rule and list files, by result (ok, error).",
                &["result"],
            ),
            rule_fields_unset: gauge(
                &r,
                "soc_rule_fields_unset",
                "Fields the rules in force read that no loaded decoder sets: a rule reading one never fires (the collector's log and `socctl rules lint` name them).",
            ),
            free_labels: Mutex::new(HashSet::new()),
            syslog: SyslogMetrics::new(&r),
            workflow: WorkflowMetrics::new(&r),
            registry: r,
        };
        let build = gauge_vec(
            &m.registry,
            "soc_build_info",
            "1, labelled with the collector's version.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Pre-create the common series so dashboards show zeros, not gaps.
        for sev in ["info", "low", "medium", "high", "critical"] {
            m.alerts.with_label_values(&[sev]);
        }
        m.events_received.with_label_values(&["agent"]);
        for sev in ["info", "low", "medium", "high", "critical"] {
            m.alerts_open.with_label_values(&[sev]);
        }
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

    /// Names of the metric families registered (all of them, even those
    /// with no series yet).
    pub fn registered_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// NAMES lists exactly the metric names this module registers: every
    /// quoted `soc_` name in the registration code is in NAMES and the
    /// reverse, and each one renders with help text once it has a series.
    #[test]
    fn names_lists_exactly_the_metrics_defined() {
        let src = include_str!("mod.rs");
        let code = &src[..src.find("#[cfg(test)]").expect("test module")];
        let start = code.find("pub const NAMES").expect("NAMES");
        let end = start + code[start..].find("];").expect("end of NAMES");
        let all_code = format!(
            "{}{}{}{}",
            &code[..start],
            &code[end..],
            include_str!("syslog.rs"),
            include_str!("workflow.rs")
        );
        let registered: BTreeSet<String> = regex_lite_names()(&all_code)
            .into_iter()
            .filter(|n| n.starts_with("soc_"))
            .collect();
        let listed: BTreeSet<String> = NAMES
            .iter()
            .filter(|n| n.starts_with("soc_"))
            .map(|n| (*n).to_owned())
            .collect();
        assert!(
            registered.len() > 40,
            "found {} registered names",
            registered.len()
        );
        let missing: Vec<_> = registered.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&registered).collect();
        assert!(
            missing.is_empty(),
            "registered but missing from NAMES: {missing:?}"
        );
        assert!(extra.is_empty(), "in NAMES but never registered: {extra:?}");
        // Metrics without labels render at once, with their help text.
        let text = Metrics::new().render();
        for name in [
            "soc_events_duplicate_total",
            "soc_journal_last_sequence",
            "soc_build_info",
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} renders with help"
            );
        }
    }

    /// Every `soc_*` / `process_*` name used in a dashboard panel or a
    /// Prometheus alerting rule must be a metric this module defines.
    #[test]
    fn dashboards_and_alert_rules_use_only_defined_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let re = regex_lite_names();
        let mut files = Vec::new();
        for dir in ["dashboards", "deploy/prometheus"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("folder exists") {
                let p = entry.expect("entry").path();
                if p.extension()
                    .is_some_and(|e| e == "json" || e == "yml" || e == "yaml")
                {
                    files.push(p);
                }
            }
        }
        assert!(files.len() >= 4, "dashboards and rules found: {files:?}");
        let known: BTreeSet<&str> = NAMES.iter().copied().collect();
        let mut used = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            for name in re(&text) {
                // Histogram series carry suffixes.
                let base = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .unwrap_or(&name);
                assert!(
                    known.contains(base) || known.contains(name.as_str()),
                    "{}: uses {name}, which the collector does not export",
                    f.display()
                );
                used += 1;
            }
        }
        assert!(used > 20, "only {used} metric uses found");
    }

    /// Finds metric-like identifiers (`soc_...`, `process_...`).
    fn regex_lite_names() -> impl Fn(&str) -> Vec<String> {
        |text: &str| {
            let mut out = Vec::new();
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let starts = text[i..].starts_with("soc_") || text[i..].starts_with("process_");
                let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
                if starts && boundary {
                    let end = text[i..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(text.len(), |e| i + e);
                    out.push(text[i..end].to_owned());
                    i = end;
                } else {
                    i += 1;
                }
            }
            out
        }
    }
}
