//! The responders' API that `socctl` talks to. Every route checks a token
//! and its role; answers are JSON. Every state-changing route is audited,
//! refusals included.
//!
//! Roles: viewer reads; responder also acknowledges, closes, assigns, notes,
//! reopens (one alert or in bulk); admin also manages agents and tokens and
//! reads the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use soc_protocol::ErrorCode;

use crate::alerts::{AlertError, Change};
use crate::app::{App, now_ms};
use crate::auth::{AuthError, Role, TokenRecord};
use crate::http::{ApiError, Peer, audit, authorize, authorize_change, bearer};
use crate::model::{
    AckRequest, AgentView, Alert, AlertPage, AlertQuery, AssignRequest, AuditEntry, AuditOutcome,
    AuditQuery, BulkRequest, BulkResponse, CloseRequest, CreateTokenRequest, CreateTokenResponse,
    EnrollAgentRequest, EnrollAgentResponse, NoteRequest, SortOrder, StatusView, TokenView,
};

fn alert_error(e: AlertError) -> ApiError {
    match e {
        AlertError::NotFound(id) => not_found(id),
        e @ AlertError::BadTransition { .. } => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::BadRequest, e.to_string())
        }
        AlertError::BadRequest(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m)
        }
        AlertError::Query(q @ crate::alert_index::QueryError::BadFilter { .. })
        | AlertError::Query(q @ crate::alert_index::QueryError::TooWide { .. }) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            q.to_string(),
        ),
        AlertError::Query(e) => ApiError::internal(e),
        AlertError::Db(e) => ApiError::internal(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AlertError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(alert_error)
}

/// `GET /api/v1/alerts`.
pub async fn list_alerts(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    let store = app.alerts.clone();
    Ok(Json(blocking(move || store.list(&q)).await?))
}

fn not_found(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("alert {id} does not exist"),
    )
}

/// `GET /api/v1/alerts/{id}`.
pub async fn get_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<Alert>, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    match app.alerts.get(id).map_err(ApiError::internal)? {
        Some(a) => Ok(Json(a)),
        None => Err(not_found(id)),
    }
}

fn clean_note(note: Option<String>) -> Option<String> {
    note.filter(|n| !n.trim().is_empty())
}

/// Applies one change to one alert, audited as `alert.<verb>`.
async fn change_alert(
    app: Arc<App>,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    id: u64,
    change: Change,
    note: Option<String>,
) -> Result<Json<Alert>, ApiError> {
    let action = format!("alert.{}", change.verb());
    let target = id.to_string();
    let who = authorize_change(&app, headers, peer, Role::Responder, &action, &target)?;
    let store = app.alerts.clone();
    let by = who.name.clone();
    let ch = change.clone();
    let r = blocking(move || store.update(id, &ch, &by, clean_note(note), now_ms())).await;
    match &r {
        Ok(a) => {
            app.metrics
                .workflow
                .alert_changes
                .with_label_values(&[change.verb()])
                .inc();
            tracing::info!(alert = id, by = %who.name, action = %action, status = a.status.as_str(), "alert changed");
            audit(
                &app,
                Some(&who),
                peer,
                &action,
                &target,
                AuditOutcome::Success,
                None,
            );
        }
        Err(e) => audit(
            &app,
            Some(&who),
            peer,
            &action,
            &target,
            AuditOutcome::Failed,
            Some(e.message.clone()),
        ),
    }
    r.map(Json)
}

/// `POST /api/v1/alerts/{id}/ack`.
pub async fn ack_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Option<Json<AckRequest>>,
) -> Result<Json<Alert>, ApiError> {
    let note = body.and_then(|Json(b)| b.note);
    change_alert(app, peer, &headers, id, Change::Ack, note).await
}

/// `POST /api/v1/alerts/{id}/close`.
pub async fn close_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(b): Json<CloseRequest>,
) -> Result<Json<Alert>, ApiError> {
    change_alert(app, peer, &headers, id, Change::Close(b.reason), b.note).await
}

/// `POST /api/v1/alerts/{id}/assign`.
pub async fn assign_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(b): Json<AssignRequest>,
) -> Result<Json<Alert>, ApiError> {
    change_alert(app, peer, &headers, id, Change::Assign(b.assignee), b.note).await
}

/// `POST /api/v1/alerts/{id}/note`.
pub async fn note_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(b): Json<NoteRequest>,
) -> Result<Json<Alert>, ApiError> {
    change_alert(app, peer, &headers, id, Change::Note, b.note).await
}

/// `POST /api/v1/alerts/{id}/reopen`.
pub async fn reopen_alert(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Option<Json<NoteRequest>>,
) -> Result<Json<Alert>, ApiError> {
    let note = body.and_then(|Json(b)| b.note);
    change_alert(app, peer, &headers, id, Change::Reopen, note).await
}

/// `POST /api/v1/alerts/bulk`: one action on every alert a filter selects.
/// A dry run only counts; it is not audited.
pub async fn bulk_alerts(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(req): Json<BulkRequest>,
) -> Result<Json<BulkResponse>, ApiError> {
    let action = format!("alerts.bulk_{}", req.action.as_str());
    let target = serde_json::to_string(&req.filter).unwrap_or_default();
    let who = if req.dry_run {
        authorize(&app, &headers, peer, Role::Responder).map_err(|r| r.error)?
    } else {
        authorize_change(&app, &headers, peer, Role::Responder, &action, &target)?
    };
    let store = app.alerts.clone();
    let by = who.name.clone();
    let dry = req.dry_run;
    let mut req = req;
    req.note = clean_note(req.note);
    let r = blocking(move || store.bulk(&req, &by, now_ms())).await;
    if !dry {
        match &r {
            Ok(b) => audit(
                &app,
                Some(&who),
                peer,
                &action,
                &target,
                AuditOutcome::Success,
                Some(format!("{} matched, {} changed", b.matched, b.changed)),
            ),
            Err(e) => audit(
                &app,
                Some(&who),
                peer,
                &action,
                &target,
                AuditOutcome::Failed,
                Some(e.message.clone()),
            ),
        }
    }
    r.map(Json)
}

/// Releases a follow permit and the gauge when the stream is dropped.
struct StreamGuard {
    app: Arc<App>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.app.metrics.workflow.alert_streams_open.dec();
    }
}

struct StreamState {
    guard: StreamGuard,
    token: String,
    q: AlertQuery,
    cursor: u64,
    pending: std::collections::VecDeque<Alert>,
    last_sent: Instant,
    done: bool,
}

/// How often a follow stream looks for new alerts (polling is the truth).
const STREAM_POLL: Duration = Duration::from_millis(250);
/// An empty line at least this often, so both ends notice a dead peer.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(10);
/// Alerts fetched per look.
const STREAM_BATCH: usize = 100;

/// `GET /api/v1/alerts/stream`: NDJSON, one alert per line, as they are
/// stored, from `after_id` (default: the newest now). The same filters as a
/// listing apply. Empty lines are keep-alives. The stream ends when the
/// token is revoked.
pub async fn stream_alerts(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    let Ok(permit) = app.followers.clone().try_acquire_owned() else {
        app.metrics.workflow.alert_streams_refused.inc();
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            format!(
                "{} follow streams are open (api.max_followers); retry later",
                app.settings.api.max_followers
            ),
        )
        .retry(app.settings.retry_after_secs));
    };
    let cursor = match q.after_id {
        Some(a) => a,
        None => app.alerts.last_id().map_err(ApiError::internal)?,
    };
    app.metrics.workflow.alert_streams_open.inc();
    let state = StreamState {
        guard: StreamGuard {
            app: app.clone(),
            _permit: permit,
        },
        token: bearer(&headers).unwrap_or_default().to_owned(),
        q,
        cursor,
        pending: Default::default(),
        last_sent: Instant::now(),
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some(a) = st.pending.pop_front() {
                st.last_sent = Instant::now();
                let mut line = serde_json::to_vec(&a).unwrap_or_default();
                line.push(b'\n');
                return Some((Ok::<_, std::io::Error>(Bytes::from(line)), st));
            }
            let app = st.guard.app.clone();
            if app.auth.verify_token(&st.token).is_err() {
                st.done = true;
                return Some((
                    Ok(Bytes::from_static(b"{\"error\":\"token revoked\"}\n")),
                    st,
                ));
            }
            let mut q = st.q.clone();
            q.after_id = Some(st.cursor);
            q.before_id = None;
            q.sort = Some(SortOrder::Oldest);
            q.limit = Some(STREAM_BATCH);
            let store = app.alerts.clone();
            match tokio::task::spawn_blocking(move || store.list(&q)).await {
                Ok(Ok(page)) => {
                    if let Some(last) = page.alerts.last() {
                        st.cursor = last.id;
                    } else if let Some(next) = page.next_after_id {
                        st.cursor = next;
                    }
                    st.pending.extend(page.alerts);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "alert stream query failed");
                    st.done = true;
                    let line = serde_json::json!({ "error": e.to_string() }).to_string() + "\n";
                    return Some((Ok(Bytes::from(line)), st));
                }
                Err(e) => {
                    st.done = true;
                    let line = serde_json::json!({ "error": e.to_string() }).to_string() + "\n";
                    return Some((Ok(Bytes::from(line)), st));
                }
            }
            if st.pending.is_empty() {
                if st.last_sent.elapsed() >= STREAM_KEEPALIVE {
                    st.last_sent = Instant::now();
                    return Some((Ok(Bytes::from_static(b"\n")), st));
                }
                tokio::time::sleep(STREAM_POLL).await;
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/v1/agents`.
pub async fn list_agents(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    let agents = app.auth.agents().map_err(ApiError::internal)?;
    Ok(Json(
        agents
            .into_iter()
            .map(|a| AgentView {
                state: if a.revoked {
                    "revoked"
                } else if a.key_hash.is_some() {
                    "active"
                } else {
                    "pending"
                }
                .into(),
                last_seen_ms: a.last_seen_ms,
                events_received: a.events_received,
                agent_version: a.heartbeat.as_ref().map(|h| h.agent_version.clone()),
                hostname: a.heartbeat.as_ref().map(|h| h.hostname.clone()),
                files_watched: a.heartbeat.as_ref().map(|h| h.files_watched),
                lag_bytes: a
                    .heartbeat
                    .as_ref()
                    .map(|h| h.lag.iter().map(|l| l.bytes_behind).sum()),
                name: a.name,
            })
            .collect(),
    ))
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        e @ (AuthError::AlreadyEnrolled(_) | AuthError::NameTaken(_) | AuthError::LastAdmin(_)) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::BadRequest, e.to_string())
        }
        e @ AuthError::BadName(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.to_string(),
        ),
        e @ AuthError::Unknown { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string())
        }
        e => ApiError::internal(e),
    }
}

/// Audits the end of an admin change and passes its answer on.
fn finish<T>(
    app: &App,
    who: &TokenRecord,
    peer: Option<std::net::SocketAddr>,
    action: &str,
    target: &str,
    r: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &r {
        Ok(_) => audit(
            app,
            Some(who),
            peer,
            action,
            target,
            AuditOutcome::Success,
            None,
        ),
        Err(e) => audit(
            app,
            Some(who),
            peer,
            action,
            target,
            AuditOutcome::Failed,
            Some(e.message.clone()),
        ),
    }
    r
}

/// `POST /api/v1/agents`: register an agent and issue its enrolment secret.
pub async fn enroll_agent(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(req): Json<EnrollAgentRequest>,
) -> Result<Json<EnrollAgentResponse>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "agent.enroll", &req.name)?;
    let ttl = app.settings.enrollment_ttl.as_millis() as i64;
    let now = now_ms();
    let r = app
        .auth
        .enroll_agent(&req.name, ttl, now)
        .map_err(auth_error)
        .map(|secret| {
            tracing::info!(agent = %req.name, by = %who.name, "issued an enrolment secret");
            Json(EnrollAgentResponse {
                name: req.name.clone(),
                secret,
                expires_ms: now + ttl,
            })
        });
    finish(&app, &who, peer, "agent.enroll", &req.name, r)
}

/// `POST /api/v1/agents/{name}/revoke`: the agent's key stops working now.
pub async fn revoke_agent(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "agent.revoke", &name)?;
    let r = app.auth.revoke_agent(&name).map_err(auth_error).map(|a| {
        tracing::info!(agent = %name, by = %who.name, "agent revoked");
        Json(serde_json::json!({ "name": a.name, "state": "revoked" }))
    });
    finish(&app, &who, peer, "agent.revoke", &name, r)
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    authorize(&app, &headers, peer, Role::Admin).map_err(|r| r.error)?;
    let tokens = app.auth.tokens().map_err(auth_error)?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenView {
                name: t.name,
                role: t.role,
                created_ms: t.created_ms,
                revoked: t.revoked,
            })
            .collect(),
    ))
}

/// `POST /api/v1/tokens`: the token is in the answer and nowhere else.
pub async fn create_token(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(req): Json<CreateTokenRequest>,
) -> Result<Json<CreateTokenResponse>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "token.create", &req.name)?;
    let r = app
        .auth
        .create_token(&req.name, req.role, now_ms())
        .map_err(auth_error)
        .map(|token| {
            tracing::info!(token = %req.name, role = req.role.as_str(), by = %who.name, "token created");
            Json(CreateTokenResponse {
                name: req.name.clone(),
                role: req.role,
                token,
            })
        });
    let target = format!("{} ({})", req.name, req.role.as_str());
    finish(&app, &who, peer, "token.create", &target, r)
}

/// `POST /api/v1/tokens/{name}/revoke`.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "token.revoke", &name)?;
    let r = app.auth.revoke_token(&name).map_err(auth_error).map(|t| {
        tracing::info!(token = %name, by = %who.name, "token revoked");
        Json(TokenView {
            name: t.name,
            role: t.role,
            created_ms: t.created_ms,
            revoked: t.revoked,
        })
    });
    finish(&app, &who, peer, "token.revoke", &name, r)
}

/// `GET /api/v1/audit`: read only; there is no route that changes a record.
pub async fn list_audit(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    authorize(&app, &headers, peer, Role::Admin).map_err(|r| r.error)?;
    let log = app.audit.clone();
    let entries = tokio::task::spawn_blocking(move || log.list(&q))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(entries))
}

/// `GET /api/v1/status`.
pub async fn status(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<StatusView>, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    let content = app.content();
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        journal_last_seq: app.journal.last_seq().await,
        detection_cursor: app.cursor(),
        alerts_stored: app.alerts.count(),
        rules_loaded: content.rules.rules().len(),
        decoders_loaded: content.decoders.names().len(),
    }))
}

/// `GET /api/v1/journal`: the raw journalled lines in sequence order, for
/// audits ("what exactly did this agent send?") and for the end-to-end tests
/// that compare what was written with what was journalled. Admin only: the
/// lines are unfiltered evidence.
pub async fn journal(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<crate::model::JournalQuery>,
) -> Result<Json<crate::model::JournalPage>, ApiError> {
    use crate::model::{JournalEntryView, JournalPage};
    authorize(&app, &headers, peer, Role::Admin).map_err(|r| r.error)?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let reader = app.clone();
    let rows = tokio::task::spawn_blocking(move || reader.journal.read_after(after, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let full = rows.len() == limit;
    let entries: Vec<JournalEntryView> = rows
        .into_iter()
        .map(|(seq, e)| match e {
            Ok(e) => JournalEntryView {
                seq,
                line: String::from_utf8_lossy(&e.raw).into_owned(),
                agent: e.agent,
                stream: e.stream,
                source: e.source,
                path: e.path,
                offset: e.offset,
                truncated: e.truncated,
                corrupt: false,
            },
            Err(why) => JournalEntryView {
                seq,
                agent: String::new(),
                stream: String::new(),
                source: String::new(),
                path: String::new(),
                offset: 0,
                line: why,
                truncated: false,
                corrupt: true,
            },
        })
        .collect();
    let next_after = full.then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(Json(JournalPage {
        entries,
        next_after,
    }))
}
