//! Talking to the collector over HTTPS.
//!
//! TLS is rustls with the `ring` provider and a root store built only from
//! `ca_file`: the agent trusts the collector's CA and nothing else.
//! [`Shipper::deliver`] sends one batch until the collector acknowledges it:
//! exponential backoff with jitter while the collector is unreachable, the
//! collector's `Retry-After` when it says it is overloaded, and the longest
//! backoff after a refusal (logged as an error naming the code). It never
//! gives up on a batch: lines are never dropped. A batch sent while the one
//! before it is unacknowledged names that one in [`AFTER_HEADER`], at each
//! attempt until it is acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use soc_protocol::{
    AFTER_HEADER, AGENT_HEADER, BATCH_CONTENT_ENCODING, BATCH_CONTENT_TYPE, BATCH_PATH, BatchAck,
    ErrorBody, ErrorCode,
};
use tokio::sync::watch;

use crate::stats::Stats;

/// Longest `Retry-After` honoured, so a broken proxy cannot park the agent for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why the HTTPS client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer (connection refused, timeout, TLS failure): retry.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// The collector asked to come back later.
    #[error("collector busy (HTTP {status}): {message}")]
    Busy {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The collector refused the request; retrying the same request will
    /// not help until an operator acts.
    #[error("collector refused the request (HTTP {status}, {}): {message}", code.map_or("no code", ErrorCode::as_str))]
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// A 2xx answer whose body is not what the protocol says.
    #[error("collector answered HTTP {status} with an unreadable body: {reason}")]
    BadAnswer { status: u16, reason: String },
}

/// Builds the HTTPS client that trusts only the CA in `ca_file`.
pub fn client(ca_file: &Path, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    let ca_err = |reason: String| TlsError::CaFile {
        path: ca_file.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| ca_err(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca_file.to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("soc-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// Exponential backoff with jitter: each wait is drawn between half and
/// all of `initial * 2^attempt`, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// The batch sent just before another one, which the collector must
/// journal first.
#[derive(Debug, Clone)]
pub struct Predecessor {
    pub batch_id: u64,
    /// Set once the collector acknowledged it; from then on it need not be named.
    pub acked: Arc<AtomicBool>,
}

/// Everything needed to send to one collector as one agent.
#[derive(Debug, Clone)]
pub struct Shipper {
    pub client: reqwest::Client,
    pub base: reqwest::Url,
    pub agent: String,
    /// The agent's key; `None` only while enrolling.
    pub key: Option<String>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Shipper {
    fn url(&self, path: &str) -> Result<reqwest::Url, SendError> {
        self.base
            .join(path)
            .map_err(|e| SendError::Unreachable(format!("bad URL: {e}")))
    }

    fn request(&self, path: &str) -> Result<reqwest::RequestBuilder, SendError> {
        let mut req = self
            .client
            .post(self.url(path)?)
            .header(AGENT_HEADER, &self.agent);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        Ok(req)
    }

    /// POSTs `body` as JSON and reads a JSON answer.
    pub async fn post_json<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, SendError> {
        let json = serde_json::to_vec(body).map_err(|e| SendError::BadAnswer {
            status: 0,
            reason: e.to_string(),
        })?;
        let req = self
            .request(path)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        answer(req).await
    }

    /// POSTs one encoded batch once, to be journalled after batch `after`.
    pub async fn post_batch(
        &self,
        body: Vec<u8>,
        after: Option<u64>,
    ) -> Result<BatchAck, SendError> {
        let mut req = self
            .request(BATCH_PATH)?
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header(reqwest::header::CONTENT_ENCODING, BATCH_CONTENT_ENCODING);
        if let Some(after) = after {
            req = req.header(AFTER_HEADER, after);
        }
        answer(req.body(body)).await
    }

    /// Sends one batch until it is acknowledged, after `before` while that
    /// one is not. Returns `None` only when `shutdown` fires first (the batch
    /// is then abandoned: it is re-read from the checkpoint at the next start).
    pub async fn deliver(
        &self,
        body: Vec<u8>,
        batch_id: u64,
        lines: usize,
        before: Option<Predecessor>,
        stats: &Stats,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<BatchAck> {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            let after = before
                .as_ref()
                .filter(|b| !b.acked.load(Ordering::Acquire))
                .map(|b| b.batch_id);
            let sent = tokio::select! {
                r = self.post_batch(body.clone(), after) => r,
                _ = shutdown.wait_for(|s| *s) => return None,
            };
            let err = match sent {
                Ok(ack) => {
                    if ack.batch_id != batch_id {
                        tracing::warn!(
                            batch_id,
                            ack_batch_id = ack.batch_id,
                            "Collector acknowledged a different batch id; taking it as this batch's acknowledgement."
                        );
                    }
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            batch_id,
                            attempts = backoff.attempts() + 1,
                            "Collector reachable again; batch delivered."
                        );
                    }
                    return Some(ack);
                }
                Err(e) => e,
            };
            stats.errors.fetch_add(1, Ordering::Relaxed);
            if matches!(err, SendError::Refused { .. }) {
                tracing::error!(batch_id, lines, error = %err, retry_in = ?self.retry_max, "Collector refused the batch; it is kept and retried.");
            }
            let wait = wait_after(&err, &mut backoff, self.retry_max);
            if !matches!(err, SendError::Refused { .. }) {
                let n = backoff.attempts();
                if n <= 1 || n.checked_rem(10) == Some(0) {
                    tracing::warn!(batch_id, lines, attempts = n, error = %err, retry_in = ?wait, "Cannot deliver batch; will retry.");
                } else {
                    tracing::debug!(batch_id, attempts = n, error = %err, retry_in = ?wait, "Cannot deliver batch; will retry.");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
        }
    }
}

/// Sends `req` and sorts the answer into success or a [`SendError`].
async fn answer<R: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<R, SendError> {
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Unreachable(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = resp
        .bytes()
        .await
        .map_err(|e| SendError::Unreachable(error_chain(&e)))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|e| SendError::BadAnswer {
            status,
            reason: e.to_string(),
        });
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let code = parsed.as_ref().map(|b| b.code);
    let message = parsed.map_or_else(
        || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        |b| b.message,
    );
    let retryable = code.is_some_and(ErrorCode::is_retryable)
        || matches!(status, 408 | 429 | 503)
        || (status >= 500 && code.is_none());
    if retryable {
        Err(SendError::Busy {
            status,
            retry_after,
            message,
        })
    } else {
        Err(SendError::Refused {
            status,
            code,
            message,
        })
    }
}

/// The `Retry-After` header: delta-seconds (what soc-collector sends) or
/// an HTTP-date (what a proxy in front of it may send), as a wait from
/// `now`. A date already past, or anything unreadable, leaves the wait to
/// the backoff (so a proxy with a wrong clock cannot make the agent retry
/// in a tight loop).
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate ("Wed, 21 Oct 2026 07:28:00 GMT") is an RFC 2822 date.
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now)
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
}

/// How long to wait before sending again after `err`: the collector's
/// `Retry-After` when it is busy (capped), the longest backoff after a
/// refusal, the next backoff otherwise.
fn wait_after(err: &SendError, backoff: &mut Backoff, retry_max: Duration) -> Duration {
    match err {
        SendError::Busy {
            retry_after: Some(d),
            ..
        } => (*d).min(MAX_RETRY_AFTER),
        SendError::Refused { .. } => {
            backoff.next_delay();
            retry_max
        }
        _ => backoff.next_delay(),
    }
}

/// The error and its causes on one line (reqwest hides the useful part).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[2] >= Duration::from_millis(200) && d[2] <= Duration::from_millis(400));
        for x in &d[4..] {
            assert!(*x >= Duration::from_millis(500) && *x <= Duration::from_secs(1));
        }
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn retry_after_is_honoured_for_429_and_503() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:27:30Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            None,
            "a date already past: the backoff decides"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let busy = |retry_after| SendError::Busy {
            status: 503,
            retry_after,
            message: String::new(),
        };
        let max = Duration::from_secs(60);
        assert_eq!(
            wait_after(&busy(Some(Duration::from_secs(7))), &mut b, max),
            Duration::from_secs(7)
        );
        assert_eq!(
            wait_after(&busy(Some(Duration::from_secs(999_999))), &mut b, max),
            MAX_RETRY_AFTER
        );
        assert!(
            wait_after(&busy(None), &mut b, max) <= Duration::from_secs(1),
            "backoff without it"
        );
        let refused = SendError::Refused {
            status: 403,
            code: None,
            message: String::new(),
        };
        assert_eq!(wait_after(&refused, &mut b, max), max);
    }

    #[test]
    fn ca_file_errors_name_the_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nope.pem");
        let msg = client(&missing, Duration::from_secs(1))
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("nope.pem")));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"not a pem\n")?;
        let msg = client(&empty, Duration::from_secs(1))
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("no PEM certificate")));
        Ok(())
    }
}
