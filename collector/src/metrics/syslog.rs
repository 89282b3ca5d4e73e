//! The syslog listeners' metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::{counter, counter_vec, gauge, gauge_vec};

/// The syslog listeners' metrics. The `sender` label is a configured sender
/// name or `unknown`, never an address; `transport` is `udp`, `tcp` or `tls`.
pub struct SyslogMetrics {
    /// Messages received, before queueing.
    pub received: IntCounterVec,
    /// Messages made durable in the journal.
    pub journalled: IntCounterVec,
    /// Unix time of the newest message from each sender.
    pub last_seen: IntGaugeVec,
    /// UDP messages dropped because the queue was full.
    pub udp_dropped: IntCounterVec,
    /// The kernel's count of datagrams dropped on the UDP socket (receive buffer full).
    pub udp_receive_buffer_drops: IntGauge,
    /// Connections or datagrams refused, by transport and reason.
    pub refused: IntCounterVec,
    /// Messages cut at `syslog.max_message_bytes`.
    pub truncated: IntCounterVec,
    /// Connections closed because their stream could not be framed.
    pub framing_errors: IntCounterVec,
    /// TLS handshakes that failed (`error`) or did not finish in time (`timeout`).
    pub tls_handshake_failures: IntCounterVec,
    /// Stream connections open now.
    pub connections_open: IntGaugeVec,
    /// Connections closed after `syslog.idle_timeout` without data.
    pub idle_closed: IntCounterVec,
    /// Times a stream connection stopped reading because the queue was full.
    pub backpressure_waits: IntCounterVec,
    /// Messages waiting for the journal writer.
    pub queue_messages: IntGauge,
    /// Bytes waiting for the journal writer (bounded by `syslog.queue_max_bytes`).
    pub queue_bytes: IntGauge,
    /// Journal appends (each one fsync) by the syslog writer.
    pub journal_appends: IntCounter,
    /// Journal appends that failed and were retried.
    pub journal_errors: IntCounter,
    /// Messages received but never journalled, by reason.
    pub lost: IntCounterVec,
}

impl SyslogMetrics {
    pub(super) fn new(r: &Registry) -> SyslogMetrics {
        let m = SyslogMetrics {
            received: counter_vec(
                r,
                "soc_syslog_messages_received_total",
                "Syslog messages received, by transport and sender.",
                &["transport", "sender"],
            ),
            journalled: counter_vec(
                r,
                "soc_syslog_messages_journalled_total",
                "Syslog messages made durable in the journal, by sender.",
                &["sender"],
            ),
            last_seen: gauge_vec(
                r,
                "soc_syslog_sender_last_seen_timestamp_seconds",
                "Unix time of the newest syslog message from each sender (0: none since start).",
                &["sender"],
            ),
            udp_dropped: counter_vec(
                r,
                "soc_syslog_udp_dropped_total",
                "UDP syslog messages dropped because the syslog queue was full, by sender.",
                &["sender"],
            ),
            udp_receive_buffer_drops: gauge(
                r,
                "soc_syslog_udp_receive_buffer_drops",
                "Datagrams the kernel dropped on the syslog UDP socket because its receive buffer was full (from /proc/net/udp).",
            ),
            refused: counter_vec(
                r,
                "soc_syslog_refused_total",
                "Syslog connections or datagrams refused, by transport and reason (unknown_sender, max_connections).",
                &["transport", "reason"],
            ),
            truncated: counter_vec(
                r,
                "soc_syslog_truncated_total",
                "Syslog messages cut at syslog.max_message_bytes, by transport.",
                &["transport"],
            ),
            framing_errors: counter_vec(
                r,
                "soc_syslog_framing_errors_total",
                "Syslog connections closed because their stream could not be framed, by transport.",
                &["transport"],
            ),
            tls_handshake_failures: counter_vec(
                r,
                "soc_syslog_tls_handshake_failures_total",
                "Syslog TLS handshakes that failed or timed out, by reason (error, timeout).",
                &["reason"],
            ),
            connections_open: gauge_vec(
                r,
                "soc_syslog_connections_open",
                "Syslog stream connections open now, by transport.",
                &["transport"],
            ),
            idle_closed: counter_vec(
                r,
                "soc_syslog_idle_closed_total",
                "Syslog connections closed after syslog.idle_timeout without data, by transport.",
                &["transport"],
            ),
            backpressure_waits: counter_vec(
                r,
                "soc_syslog_backpressure_waits_total",
                "Times a syslog connection stopped reading because the queue was full, by transport.",
                &["transport"],
            ),
            queue_messages: gauge(
                r,
                "soc_syslog_queue_messages",
                "Syslog messages waiting for the journal writer.",
            ),
            queue_bytes: gauge(
                r,
                "soc_syslog_queue_bytes",
                "Bytes of syslog messages waiting for the journal writer.",
            ),
            journal_appends: counter(
                r,
                "soc_syslog_journal_appends_total",
                "Journal appends (one fsync each) made by the syslog writer.",
            ),
            journal_errors: counter(
                r,
                "soc_syslog_journal_errors_total",
                "Syslog journal appends that failed and were retried.",
            ),
            lost: counter_vec(
                r,
                "soc_syslog_lost_total",
                "Syslog messages received but never journalled, by reason (shutdown, journal_error).",
                &["reason"],
            ),
        };
        for t in ["udp", "tcp", "tls"] {
            m.truncated.with_label_values(&[t]);
            m.refused.with_label_values(&[t, "unknown_sender"]);
        }
        m.connections_open.with_label_values(&["tcp"]);
        m.connections_open.with_label_values(&["tls"]);
        m.udp_dropped.with_label_values(&["unknown"]);
        m
    }
}
