//! The responders' sections of the configuration: `[api]`, `[retention]`
//! and `[forward]`, and the values they build into.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Failed authentications a peer address may make in a burst before it
    /// is refused with 429 for a while. Default 10.
    pub auth_failure_burst: Option<u32>,
    /// Time for one of those failures to be forgiven. Default `6s` (10 a minute).
    pub auth_failure_refill: Option<DurationText>,
    /// Peer addresses tracked for failures; past it the least recently seen
    /// is forgotten (soc_auth_limiter_evictions_total). Default 10000.
    pub auth_max_peers: Option<usize>,
    /// Simultaneous `socctl alerts follow` streams; more get 503. Default 64.
    pub max_followers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often the retention task runs. Default `10m`.
    pub interval: Option<DurationText>,
    /// Closed alerts are removed this long after they were closed; `off`
    /// keeps them. Default `180d`.
    pub closed_alert_max_age: Option<DurationText>,
    /// Most closed alerts kept; past it the longest-closed go first; 0 for
    /// no limit. Default 1000000.
    pub max_closed_alerts: Option<u64>,
    /// Journal entries are removed this long after they were received
    /// (never before detection has processed them); `off` keeps them.
    /// Default `30d`.
    pub journal_max_age: Option<DurationText>,
    /// Most journal entries kept; past it the oldest processed go first; 0
    /// for no limit. Default 50000000.
    pub journal_max_entries: Option<u64>,
    /// Audit records are removed this long after they were written; `off`
    /// keeps them. Default `off`.
    pub audit_max_age: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// POST each alert as JSON to a URL.
    pub webhook: Option<WebhookConfig>,
    /// Send each alert as a CEF line to a syslog receiver over TCP.
    pub syslog: Option<SyslogConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL. Required.
    pub url: Option<String>,
    /// CA certificate (PEM) to trust for an `https` URL instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Forward alerts of at least this severity. Default `low`.
    pub min_severity: Option<String>,
    /// Time one delivery may take. Default `10s`.
    pub timeout: Option<DurationText>,
    /// First wait after a failed delivery; doubles up to `retry_max`. Default `1s`.
    pub retry_initial: Option<DurationText>,
    /// Longest wait between retries. Default `60s`.
    pub retry_max: Option<DurationText>,
    /// Alerts read ahead into memory for delivery. Default 100.
    pub queue_size: Option<usize>,
    /// Undelivered alerts (by id) past which the oldest are skipped and
    /// counted in soc_forward_skipped_total. Default 100000.
    pub max_backlog: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the receiver (TCP). Required.
    pub address: Option<String>,
    /// Forward alerts of at least this severity. Default `medium`.
    pub min_severity: Option<String>,
    /// Time to connect or write. Default `10s`.
    pub timeout: Option<DurationText>,
    /// First wait after a failure; doubles up to `retry_max`. Default `1s`.
    pub retry_initial: Option<DurationText>,
    /// Longest wait between retries. Default `60s`.
    pub retry_max: Option<DurationText>,
    /// Alerts read ahead into memory for delivery. Default 100.
    pub queue_size: Option<usize>,
    /// Undelivered alerts (by id) past which the oldest are skipped. Default 100000.
    pub max_backlog: Option<u64>,
}

/// Validated `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub auth_failure_burst: u32,
    pub auth_failure_refill: Duration,
    pub auth_max_peers: usize,
    pub max_followers: usize,
}

/// Validated `[retention]`; `None` keeps forever.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub interval: Duration,
    pub closed_alert_max_age: Option<Duration>,
    pub max_closed_alerts: Option<u64>,
    pub journal_max_age: Option<Duration>,
    pub journal_max_entries: Option<u64>,
    pub audit_max_age: Option<Duration>,
}

/// Delivery settings shared by every forwarding sink.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub min_severity: crate::model::Severity,
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub queue_size: usize,
    pub max_backlog: u64,
}

/// Validated `[forward.webhook]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub delivery: DeliverySettings,
}

/// Validated `[forward.syslog]`.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    pub address: String,
    pub delivery: DeliverySettings,
}

/// Validated `[forward]`.
#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    pub webhook: Option<WebhookSettings>,
    pub syslog: Option<SyslogSettings>,
}

impl ApiConfig {
    pub(super) fn build(self, invalid: &Invalid<'_>) -> Result<ApiSettings, ConfigError> {
        Ok(ApiSettings {
            auth_failure_burst: at_least_one(
                invalid,
                "api.auth_failure_burst",
                self.auth_failure_burst.unwrap_or(10),
            )?,
            auth_failure_refill: dur(
                invalid,
                "api.auth_failure_refill",
                self.auth_failure_refill.as_deref(),
                "6s",
            )?,
            auth_max_peers: at_least_one(
                invalid,
                "api.auth_max_peers",
                self.auth_max_peers.unwrap_or(10_000),
            )?,
            max_followers: at_least_one(
                invalid,
                "api.max_followers",
                self.max_followers.unwrap_or(64),
            )?,
        })
    }
}

impl RetentionConfig {
    pub(super) fn build(self, invalid: &Invalid<'_>) -> Result<RetentionSettings, ConfigError> {
        let interval = dur(
            invalid,
            "retention.interval",
            self.interval.as_deref(),
            "10m",
        )?;
        if interval.is_zero() {
            return Err(invalid(
                "retention.interval",
                "must be longer than 0s".into(),
            ));
        }
        Ok(RetentionSettings {
            interval,
            closed_alert_max_age: dur_or_off(
                invalid,
                "retention.closed_alert_max_age",
                self.closed_alert_max_age.as_deref(),
                "180d",
            )?,
            max_closed_alerts: Some(self.max_closed_alerts.unwrap_or(1_000_000)).filter(|n| *n > 0),
            journal_max_age: dur_or_off(
                invalid,
                "retention.journal_max_age",
                self.journal_max_age.as_deref(),
                "30d",
            )?,
            journal_max_entries: Some(self.journal_max_entries.unwrap_or(50_000_000))
                .filter(|n| *n > 0),
            audit_max_age: dur_or_off(
                invalid,
                "retention.audit_max_age",
                self.audit_max_age.as_deref(),
                "off",
            )?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn delivery(
    invalid: &Invalid<'_>,
    keys: [&'static str; 6],
    min_severity: Option<&str>,
    default_severity: &str,
    timeout: Option<&str>,
    retry_initial: Option<&str>,
    retry_max: Option<&str>,
    queue_size: Option<usize>,
    max_backlog: Option<u64>,
) -> Result<DeliverySettings, ConfigError> {
    let sev = min_severity.unwrap_or(default_severity);
    Ok(DeliverySettings {
        min_severity: sev.parse().map_err(|_| {
            invalid(
                keys[0],
                format!("`{sev}` is not a severity (info, low, medium, high, critical)"),
            )
        })?,
        timeout: dur(invalid, keys[1], timeout, "10s")?,
        retry_initial: dur(invalid, keys[2], retry_initial, "1s")?,
        retry_max: dur(invalid, keys[3], retry_max, "60s")?,
        queue_size: at_least_one(invalid, keys[4], queue_size.unwrap_or(100))?,
        max_backlog: at_least_one(invalid, keys[5], max_backlog.unwrap_or(100_000))?,
    })
}

impl ForwardConfig {
    pub(super) fn build(
        self,
        invalid: &Invalid<'_>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<ForwardSettings, ConfigError> {
        let webhook = match self.webhook {
            None => None,
            Some(w) => {
                let Some(url) = w.url else {
                    return Err(invalid(
                        "forward.webhook.url",
                        "is required in [forward.webhook]".into(),
                    ));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        "forward.webhook.url",
                        format!("`{url}` is not an http:// or https:// URL"),
                    ));
                }
                Some(WebhookSettings {
                    url,
                    ca_file: w.ca_file.map(resolve),
                    delivery: delivery(
                        invalid,
                        [
                            "forward.webhook.min_severity",
                            "forward.webhook.timeout",
                            "forward.webhook.retry_initial",
                            "forward.webhook.retry_max",
                            "forward.webhook.queue_size",
                            "forward.webhook.max_backlog",
                        ],
                        w.min_severity.as_deref(),
                        "low",
                        w.timeout.as_deref(),
                        w.retry_initial.as_deref(),
                        w.retry_max.as_deref(),
                        w.queue_size,
                        w.max_backlog,
                    )?,
                })
            }
        };
        let syslog = match self.syslog {
            None => None,
            Some(s) => {
                let Some(address) = s.address else {
                    return Err(invalid(
                        "forward.syslog.address",
                        "is required in [forward.syslog]".into(),
                    ));
                };
                if address
                    .rsplit_once(':')
                    .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                {
                    return Err(invalid(
                        "forward.syslog.address",
                        format!("`{address}` is not host:port"),
                    ));
                }
                Some(SyslogSettings {
                    address,
                    delivery: delivery(
                        invalid,
                        [
                            "forward.syslog.min_severity",
                            "forward.syslog.timeout",
                            "forward.syslog.retry_initial",
                            "forward.syslog.retry_max",
                            "forward.syslog.queue_size",
                            "forward.syslog.max_backlog",
                        ],
                        s.min_severity.as_deref(),
                        "medium",
                        s.timeout.as_deref(),
                        s.retry_initial.as_deref(),
                        s.retry_max.as_deref(),
                        s.queue_size,
                        s.max_backlog,
                    )?,
                })
            }
        };
        Ok(ForwardSettings { webhook, syslog })
    }
}
