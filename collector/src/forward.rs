//! Forwarding: every stored alert at or above a minimum severity is pushed
//! to a webhook (JSON POST) and/or a syslog receiver (one CEF line over TCP),
//! for a national or ministry SOC.
//!
//! The alert store is the queue: each sink keeps a cursor (the last alert id
//! it delivered) in the `meta` tree, reads ahead at most `queue_size` alerts
//! past it, delivers them in id order and moves the cursor after each
//! success. A failed delivery is retried with exponential backoff
//! (`retry_initial` doubling to `retry_max`) until it succeeds, so a
//! receiver that is down loses nothing, across collector restarts too.
//! Delivery is at least once: a receiver may see an alert twice after a
//! crash and should de-duplicate by `id` (CEF `externalId`).
//!
//! When a sink falls more than `max_backlog` alert ids behind, the oldest
//! are skipped and counted in `soc_forward_skipped_total{sink}`; this bounds
//! the catch-up after a very long outage. A sink that is configured for the
//! first time starts at the newest alert, not at the beginning of history.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::app::App;
use crate::config::{DeliverySettings, SyslogSettings, WebhookSettings};
use crate::model::{Alert, AlertQuery, Severity, SortOrder};

/// One destination.
enum Sink {
    Webhook {
        http: reqwest::Client,
        url: String,
    },
    Syslog {
        address: String,
        timeout: Duration,
        conn: Option<TcpStream>,
        hostname: String,
    },
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Webhook { .. } => "webhook",
            Sink::Syslog { .. } => "syslog",
        }
    }

    async fn send(&mut self, a: &Alert) -> Result<(), String> {
        match self {
            Sink::Webhook { http, url } => {
                let resp = http
                    .post(url.as_str())
                    .header("x-soc-alert-id", a.id.to_string())
                    .json(a)
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {}", error_chain(&e)))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("POST {url}: answered {}", resp.status()))
                }
            }
            Sink::Syslog {
                address,
                timeout,
                conn,
                hostname,
            } => {
                let line = syslog_line(a, hostname, chrono::Utc::now());
                if conn.is_none() {
                    let c = tokio::time::timeout(*timeout, TcpStream::connect(address.as_str()))
                        .await
                        .map_err(|_| format!("connecting to {address}: timed out"))?
                        .map_err(|e| format!("connecting to {address}: {e}"))?;
                    *conn = Some(c);
                }
                let Some(c) = conn.as_mut() else {
                    return Err(format!("{address}: no connection"));
                };
                let r = tokio::time::timeout(*timeout, async {
                    c.write_all(line.as_bytes()).await?;
                    c.flush().await
                })
                .await;
                match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *conn = None;
                        Err(format!("writing to {address}: {e}"))
                    }
                    Err(_) => {
                        *conn = None;
                        Err(format!("writing to {address}: timed out"))
                    }
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// CEF severity (0-10).
fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// Syslog severity code of the line's PRI.
fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 6,
        Severity::Low => 5,
        Severity::Medium => 4,
        Severity::High => 3,
        Severity::Critical => 2,
    }
}

fn cef_header(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn cef_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// The CEF record of an alert (without the syslog header).
pub fn cef(a: &Alert) -> String {
    let first = |field: &str| {
        a.evidence.iter().find_map(|e| {
            e.fields
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
    };
    let mut ext = vec![
        format!("externalId={}", a.id),
        format!("rt={}", a.event_time_ms),
        format!("dvchost={}", cef_value(&a.host)),
        format!("cs1Label=rule cs1={}", cef_value(&a.rule_id)),
        format!("cs2Label=agent cs2={}", cef_value(&a.agent)),
        format!("cs3Label=tags cs3={}", cef_value(&a.tags.join(","))),
        format!("cs4Label=status cs4={}", a.status.as_str()),
    ];
    if let Some(ip) = first("source.ip") {
        ext.push(format!("src={}", cef_value(&ip)));
    }
    if let Some(ip) = first("destination.ip") {
        ext.push(format!("dst={}", cef_value(&ip)));
    }
    if let Some(agency) = a.labels.get("agency") {
        ext.push(format!("cs5Label=agency cs5={}", cef_value(agency)));
    }
    ext.push(format!("msg={}", cef_value(&a.summary)));
    format!(
        "CEF:0|soc|soc-collector|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&a.rule_id),
        cef_header(&a.rule_title),
        cef_severity(a.severity),
        ext.join(" ")
    )
}

/// One RFC 5424 line (facility local4) carrying the CEF record, newline-framed.
pub fn syslog_line(a: &Alert, hostname: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let pri = 20 * 8 + u32::from(syslog_severity(a.severity));
    format!(
        "<{pri}>1 {} {} soc-collector - alert - {}\n",
        now.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        if hostname.is_empty() { "-" } else { hostname },
        cef(a)
    )
}

fn cursor_key(sink: &str) -> Vec<u8> {
    format!("forward.{sink}.cursor").into_bytes()
}

fn webhook_sink(w: &WebhookSettings) -> Result<Sink, String> {
    let b = reqwest::Client::builder()
        .timeout(w.delivery.timeout)
        .user_agent(concat!("soc-collector/", env!("CARGO_PKG_VERSION")));
    let b = match &w.ca_file {
        Some(ca) => b.tls_backend_preconfigured(
            crate::client::rustls_config_for_ca(ca).map_err(|e| e.to_string())?,
        ),
        None => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            b.tls_backend_rustls()
        }
    };
    Ok(Sink::Webhook {
        http: b.build().map_err(|e| e.to_string())?,
        url: w.url.clone(),
    })
}

/// Starts a task per configured sink and waits for them.
pub async fn run(app: Arc<App>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(w) = app.settings.forward.webhook.clone() {
        match webhook_sink(&w) {
            Ok(sink) => {
                tasks.spawn(run_sink(app.clone(), sink, w.delivery, shutdown.clone()));
            }
            Err(e) => tracing::error!(error = %e, url = %w.url, "webhook forwarding disabled"),
        }
    }
    if let Some(s) = app.settings.forward.syslog.clone() {
        let SyslogSettings { address, delivery } = s;
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let sink = Sink::Syslog {
            address,
            timeout: delivery.timeout,
            conn: None,
            hostname,
        };
        tasks.spawn(run_sink(app.clone(), sink, delivery, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// Sleeps `d` or until shutdown; returns whether shutdown came.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

async fn run_sink(
    app: Arc<App>,
    mut sink: Sink,
    d: DeliverySettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = sink.name();
    let m = &app.metrics.workflow;
    let key = cursor_key(name);
    let persist = |c: u64| {
        if let Err(e) = app.db.meta.insert(&key, &c.to_be_bytes()) {
            tracing::error!(sink = name, error = %e, "could not store the forwarding cursor");
        }
    };
    let mut cursor = match app.db.meta.get(&key) {
        Ok(Some(v)) => crate::db::be_u64(&v).unwrap_or(0),
        Ok(None) => {
            let newest = app.alerts.last_id().unwrap_or(0);
            persist(newest);
            newest
        }
        Err(e) => {
            tracing::error!(sink = name, error = %e, "cannot read the forwarding cursor; forwarding stopped");
            return;
        }
    };
    tracing::info!(
        sink = name,
        cursor,
        min_severity = d.min_severity.as_str(),
        "forwarding alerts"
    );
    let mut backoff = d.retry_initial;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let newest = app.alerts.last_id().unwrap_or(0);
        if newest.saturating_sub(cursor) > d.max_backlog {
            let to = newest - d.max_backlog;
            m.forward_skipped
                .with_label_values(&[name])
                .inc_by(to - cursor);
            tracing::warn!(
                sink = name,
                from = cursor,
                to,
                "forwarding backlog passed max_backlog; skipped the oldest alerts"
            );
            cursor = to;
            persist(cursor);
        }
        m.forward_backlog
            .with_label_values(&[name])
            .set(newest.saturating_sub(cursor) as i64);
        let q = AlertQuery {
            severity: Some(d.min_severity),
            after_id: Some(cursor),
            sort: Some(SortOrder::Oldest),
            limit: Some(d.queue_size.min(1000)),
            ..Default::default()
        };
        let store = app.alerts.clone();
        let page = match tokio::task::spawn_blocking(move || store.list(&q)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(sink = name, error = %e, "reading alerts to forward failed");
                if pause(Duration::from_secs(1), &mut shutdown).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(sink = name, error = %e, "reading alerts to forward panicked");
                return;
            }
        };
        if page.alerts.is_empty() {
            // Nothing at or above the severity up to `newest`: skip past it.
            let next = page.next_after_id.unwrap_or(newest).max(cursor);
            if next != cursor {
                cursor = next;
                persist(cursor);
            }
            if page.next_after_id.is_none()
                && pause(Duration::from_millis(500), &mut shutdown).await
            {
                return;
            }
            continue;
        }
        let queue = m.forward_queue.with_label_values(&[name]);
        queue.set(page.alerts.len() as i64);
        for a in &page.alerts {
            loop {
                match sink.send(a).await {
                    Ok(()) => {
                        m.forward_sent.with_label_values(&[name]).inc();
                        backoff = d.retry_initial;
                        cursor = a.id;
                        persist(cursor);
                        queue.dec();
                        break;
                    }
                    Err(e) => {
                        m.forward_failures.with_label_values(&[name]).inc();
                        tracing::warn!(sink = name, alert = a.id, error = %e, retry_in = ?backoff, "alert delivery failed; will retry");
                        if pause(backoff, &mut shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(d.retry_max);
                    }
                }
            }
        }
        m.forward_backlog
            .with_label_values(&[name])
            .set(newest.saturating_sub(cursor) as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertStatus, Evidence};

    fn alert() -> Alert {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("source.ip".to_owned(), serde_json::json!("203.0.113.7"));
        Alert {
            id: 42,
            rule_id: "fw|x".into(),
            rule_title: "Blocked = bad".into(),
            rule_version: 1,
            severity: Severity::High,
            tags: vec!["attack.t1133".into()],
            summary: "line one\nkey=value".into(),
            group_key: String::new(),
            status: AlertStatus::Open,
            created_ms: 1,
            event_time_ms: 2,
            host: "web-01".into(),
            agent: "a1".into(),
            labels: [("agency".to_owned(), "finance".to_owned())].into(),
            evidence: vec![Evidence {
                seq: 1,
                agent: "a1".into(),
                source: "ufw".into(),
                path: "/var/log/ufw.log".into(),
                offset: 0,
                line: "x".into(),
                line_b64: None,
                fields: fields.into(),
            }],
            evidence_omitted: 0,
            suppressed: 0,
            last_repeat_ms: None,
            history: vec![],
            assignee: None,
            close_reason: None,
            closed_ms: None,
        }
    }

    #[test]
    fn cef_escapes_headers_and_extensions() {
        let line = cef(&alert());
        assert!(line.starts_with("CEF:0|soc|soc-collector|"), "{line}");
        assert!(line.contains("|fw\\|x|Blocked = bad|8|"), "{line}");
        assert!(line.contains("externalId=42 "), "{line}");
        assert!(line.contains("src=203.0.113.7"), "{line}");
        assert!(line.contains("cs5=finance"), "{line}");
        assert!(line.ends_with("msg=line one\\nkey\\=value"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[tokio::test]
    async fn syslog_sink_writes_one_line_per_alert_and_reconnects() {
        use tokio::io::AsyncBufReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mut sink = Sink::Syslog {
            address: addr,
            timeout: Duration::from_secs(5),
            conn: None,
            hostname: "prov".into(),
        };
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let mut lines = tokio::io::BufReader::new(s).lines();
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(lines.next_line().await.expect("read").expect("line"));
            }
            got
        });
        let a = alert();
        sink.send(&a).await.expect("send");
        let mut b = alert();
        b.id = 43;
        sink.send(&b).await.expect("send");
        let got = server.await.expect("server");
        assert!(got[0].starts_with("<163>1 "), "{}", got[0]);
        assert!(got[0].contains(" prov soc-collector - alert - CEF:0|"));
        assert!(got[1].contains("externalId=43 "));
    }
}
