//! The agent-facing endpoints: batches, heartbeats and enrolment.
//!
//! A batch is answered 200 only once it is durable in the journal; every
//! refusal is a JSON [`soc_protocol::ErrorBody`] whose code tells the agent
//! whether to retry. A batch carrying [`AFTER_HEADER`] is journalled only
//! after the batch it names ([`BatchOrder`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use soc_protocol::{
    AFTER_HEADER, AGENT_HEADER, BATCH_CONTENT_ENCODING, BATCH_CONTENT_TYPE, BatchAck,
    EnrollRequest, EnrollResponse, ErrorCode, Heartbeat, Limits, PROTOCOL_VERSION,
};

use crate::app::{App, now_ms};
use crate::http::{ApiError, Peer, bearer};
use crate::journal::JournalEntry;
use std::net::SocketAddr;
use tokio::sync::{SemaphorePermit, watch};

/// Journalled batch ids remembered per agent. An agent names a predecessor
/// only while that batch is unacknowledged, and has at most
/// `shipping.max_in_flight` (16 at most) batches in flight, so the last few
/// ids are all a waiting batch can need.
const RECENT_BATCHES: usize = 64;

/// The batch ids each agent had journalled lately, so that a batch sent
/// with [`AFTER_HEADER`] waits until the batch it follows is journalled.
/// One entry per agent that sent a batch since the collector started (only
/// enrolled agents get this far, so it is as long as the enrolment list),
/// each holding at most 64 ids (`RECENT_BATCHES`). It lives in memory only: after
/// a restart a batch whose predecessor was journalled before it waits out
/// `ingest.queue_timeout` and is refused with 503; by then the agent has
/// the predecessor's acknowledgement (or has sent it again, a duplicate that
/// is journalled at once), and sends the batch again without the header.
#[derive(Debug, Default)]
pub struct BatchOrder {
    agents: Mutex<HashMap<String, Arc<watch::Sender<VecDeque<u64>>>>>,
}

impl BatchOrder {
    fn of(&self, agent: &str) -> Arc<watch::Sender<VecDeque<u64>>> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = agents.get(agent) {
            return tx.clone();
        }
        let tx = Arc::new(watch::channel(VecDeque::new()).0);
        agents.insert(agent.to_owned(), tx.clone());
        tx
    }

    /// Waits up to `timeout` for `agent`'s batch `after` to be journalled;
    /// whether it was.
    pub async fn wait_for(&self, agent: &str, after: u64, timeout: Duration) -> bool {
        let mut rx = self.of(agent).subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|recent| recent.contains(&after))).await,
            Ok(Ok(_))
        )
    }

    /// Records that `agent`'s batch `batch_id` is journalled.
    pub fn journalled(&self, agent: &str, batch_id: u64) {
        self.of(agent).send_modify(|recent| {
            if recent.len() >= RECENT_BATCHES {
                recent.pop_front();
            }
            recent.push_back(batch_id);
        });
    }
}

/// A permit to journal a batch, or 429 when none comes within `queue_timeout`.
async fn ingest_slot(app: &App) -> Result<SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(app.settings.queue_timeout, app.ingest_slots.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(reject(
            app,
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Overloaded,
                "all journal writers are busy; retry later",
            )
            .retry(app.settings.retry_after_secs),
        )),
    }
}

fn reject(app: &App, err: ApiError) -> ApiError {
    app.metrics
        .batches_rejected
        .with_label_values(&[err.code.as_str()])
        .inc();
    err
}

/// Authenticates an agent from its name header and bearer key.
fn agent_of(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<String, ApiError> {
    crate::http::check_failures(app, peer)?;
    let name = headers.get(AGENT_HEADER).and_then(|v| v.to_str().ok());
    let key = bearer(headers);
    match (name, key) {
        (Some(name), Some(key)) if app.auth.verify_agent(name, key).is_ok() => Ok(name.to_owned()),
        _ => {
            app.metrics
                .auth_failures
                .with_label_values(&["agent"])
                .inc();
            crate::http::note_failure(app, peer);
            tracing::warn!(
                agent = name.unwrap_or("-"),
                "refused an agent with missing or wrong credentials"
            );
            Err(ApiError::unauthorized())
        }
    }
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
        })
}

/// `POST /v1/batches`.
pub async fn post_batch(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchAck>, ApiError> {
    let agent = agent_of(&app, &headers, peer).map_err(|e| reject(&app, e))?;
    if !header_is(&headers, header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
        || !header_is(&headers, header::CONTENT_ENCODING, BATCH_CONTENT_ENCODING)
    {
        return Err(reject(
            &app,
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedVersion,
                format!(
                    "a batch must be sent as {BATCH_CONTENT_TYPE} with Content-Encoding {BATCH_CONTENT_ENCODING}"
                ),
            ),
        ));
    }
    let limits = Limits::V1;
    let body = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        reject(
            &app,
            ApiError::new(status, code, format!("reading the batch body: {e}")),
        )
    })?;

    // Refuse early when detection is too far behind: the journal must not grow without bound.
    let lag = app.journal.last_seq().await.saturating_sub(app.cursor());
    if lag >= app.settings.max_detection_lag {
        return Err(reject(
            &app,
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("detection is {lag} entries behind; retry later"),
            )
            .retry(app.settings.retry_after_secs),
        ));
    }
    let after = match headers.get(AFTER_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    reject(
                        &app,
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::BadRequest,
                            format!("agent {agent}: {AFTER_HEADER} must be a batch id"),
                        ),
                    )
                })?,
        ),
    };
    let mut permit = ingest_slot(&app).await?;

    let decoded = tokio::task::spawn_blocking(move || soc_protocol::decode_batch(&body, &limits))
        .await
        .map_err(ApiError::internal)?;
    let batch = decoded.map_err(|e| {
        let status = match e.code() {
            ErrorCode::PayloadTooLarge | ErrorCode::DecompressedTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ErrorCode::UnsupportedVersion => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        tracing::warn!(agent = %agent, error = %e, "refused a malformed batch");
        reject(
            &app,
            ApiError::new(status, e.code(), format!("agent {agent}: {e}")),
        )
    })?;
    if batch.agent != agent {
        return Err(reject(
            &app,
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "batch names agent `{}` but the key is `{agent}`'s",
                    batch.agent
                ),
            ),
        ));
    }
    if let Some(after) = after {
        // Decoded while the batch before it was being journalled; the
        // permit goes back while it waits, so waiting batches cannot hold
        // every writer.
        drop(permit);
        if !app
            .batch_order
            .wait_for(&agent, after, app.settings.queue_timeout)
            .await
        {
            return Err(reject(
                &app,
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    format!(
                        "agent {agent}: batch {} follows batch {after}, which is not journalled; send them again in order",
                        batch.batch_id
                    ),
                )
                .retry(app.settings.retry_after_secs),
            ));
        }
        permit = ingest_slot(&app).await?;
    }
    let received_ms = now_ms();
    let mut entries = Vec::with_capacity(batch.records.len());
    for r in batch.records {
        let raw = r.raw().map_err(|e| {
            reject(
                &app,
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedBatch,
                    format!("agent {agent}: {e}"),
                ),
            )
        })?;
        entries.push(JournalEntry {
            agent: agent.clone(),
            stream: r.stream,
            source: r.source,
            source_type: r.source_type,
            path: r.path,
            offset: r.offset,
            read_time_ms: r.read_time_ms,
            received_ms,
            raw,
            truncated: r.truncated,
            labels: batch.labels.clone(),
        });
    }
    let n = entries.len() as u64;
    let outcome = app
        .journal
        .write(&agent, entries, received_ms)
        .await
        .map_err(ApiError::internal)?;
    // The next batch may be written now; it is acknowledged only after its
    // own flush, which makes this one durable too.
    app.batch_order.journalled(&agent, batch.batch_id);
    app.journal
        .make_durable(&outcome)
        .await
        .map_err(ApiError::internal)?;
    drop(permit);

    let m = &app.metrics;
    m.events_received.with_label_values(&["agent"]).inc_by(n);
    m.events_duplicate.inc_by(outcome.duplicates);
    m.batches_accepted.inc();
    m.agent_events
        .with_label_values(&[&agent])
        .inc_by(outcome.accepted);
    m.agent_last_seen
        .with_label_values(&[&agent])
        .set(received_ms / 1000);
    m.journal_last_seq.set(app.journal.last_seq().await as i64);
    app.newest_received_ms
        .fetch_max(received_ms, std::sync::atomic::Ordering::AcqRel);
    tracing::debug!(agent = %agent, batch = batch.batch_id, accepted = outcome.accepted, duplicates = outcome.duplicates, "batch journalled");
    Ok(Json(BatchAck {
        version: PROTOCOL_VERSION,
        batch_id: batch.batch_id,
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
    }))
}

/// `POST /v1/heartbeat`.
pub async fn post_heartbeat(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(hb): Json<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    let agent = agent_of(&app, &headers, peer)?;
    if hb.agent != agent {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "heartbeat names another agent",
        ));
    }
    let now = now_ms();
    let lag: u64 = hb.lag.iter().map(|l| l.bytes_behind).sum();
    app.metrics
        .agent_lag_bytes
        .with_label_values(&[&agent])
        .set(lag as i64);
    // One series per agent: drop the one of a previous version.
    if let Ok(Some(old)) = app.auth.agent(&agent)
        && let Some(prev) = old
            .heartbeat
            .filter(|h| h.agent_version != hb.agent_version)
    {
        let _ = app
            .metrics
            .agent_info
            .remove_label_values(&[agent.as_str(), app.metrics.bounded(&prev.agent_version)]);
    }
    app.metrics
        .agent_info
        .with_label_values(&[agent.as_str(), app.metrics.bounded(&hb.agent_version)])
        .set(1);
    app.metrics
        .agent_last_seen
        .with_label_values(&[&agent])
        .set(now / 1000);
    app.auth
        .record_heartbeat(&agent, hb, now)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/enroll`: trade a one-time secret for the agent's key.
pub async fn post_enroll(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    crate::http::check_failures(&app, peer)?;
    match app
        .auth
        .exchange_enrollment(&req.agent, &req.secret, req.key.as_deref(), now_ms())
    {
        Ok(key) => {
            tracing::info!(agent = %req.agent, "agent enrolled");
            Ok(Json(EnrollResponse {
                version: PROTOCOL_VERSION,
                key,
            }))
        }
        Err(e) => {
            app.metrics
                .auth_failures
                .with_label_values(&["enrollment"])
                .inc();
            crate::http::note_failure(&app, peer);
            tracing::warn!(agent = %req.agent, error = %e, "refused an enrolment");
            // Slow down guessing without holding a lock.
            tokio::time::sleep(Duration::from_millis(250)).await;
            Err(ApiError::unauthorized())
        }
    }
}
