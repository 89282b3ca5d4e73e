//! The responders' API that `socctl` talks to. Every route checks a token
//! and its role; answers are JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use soc_protocol::ErrorCode;

use crate::alerts::AlertError;
use crate::app::{App, now_ms};
use crate::auth::{AuthError, Role};
use crate::http::{ApiError, require};
use crate::model::{
    AckRequest, AgentView, Alert, AlertPage, AlertQuery, EnrollAgentRequest, EnrollAgentResponse,
    StatusView,
};

/// `GET /api/v1/alerts`.
pub async fn list_alerts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    require(&app, &headers, Role::Viewer)?;
    let store = app.alerts.clone();
    let page = tokio::task::spawn_blocking(move || store.list(&q))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(page))
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
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<Alert>, ApiError> {
    require(&app, &headers, Role::Viewer)?;
    match app.alerts.get(id).map_err(ApiError::internal)? {
        Some(a) => Ok(Json(a)),
        None => Err(not_found(id)),
    }
}

/// `POST /api/v1/alerts/{id}/ack`.
pub async fn ack_alert(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Option<Json<AckRequest>>,
) -> Result<Json<Alert>, ApiError> {
    let who = require(&app, &headers, Role::Responder)?;
    let note = body
        .and_then(|Json(b)| b.note)
        .filter(|n| !n.trim().is_empty());
    match app.alerts.acknowledge(id, &who.name, note, now_ms()) {
        Ok(a) => {
            tracing::info!(alert = id, by = %who.name, "alert acknowledged");
            Ok(Json(a))
        }
        Err(AlertError::NotFound(id)) => Err(not_found(id)),
        Err(e @ AlertError::BadTransition { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::BadRequest,
            e.to_string(),
        )),
        Err(AlertError::Db(e)) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/agents`.
pub async fn list_agents(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    require(&app, &headers, Role::Viewer)?;
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

/// `POST /api/v1/agents`: register an agent and issue its enrolment secret.
pub async fn enroll_agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<EnrollAgentRequest>,
) -> Result<Json<EnrollAgentResponse>, ApiError> {
    let who = require(&app, &headers, Role::Admin)?;
    let ttl = app.settings.enrollment_ttl.as_millis() as i64;
    let now = now_ms();
    match app.auth.enroll_agent(&req.name, ttl, now) {
        Ok(secret) => {
            tracing::info!(agent = %req.name, by = %who.name, "issued an enrolment secret");
            Ok(Json(EnrollAgentResponse {
                name: req.name,
                secret,
                expires_ms: now + ttl,
            }))
        }
        Err(
            e @ (AuthError::AlreadyEnrolled(_) | AuthError::BadName(_) | AuthError::NameTaken(_)),
        ) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::BadRequest,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/status`.
pub async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<StatusView>, ApiError> {
    require(&app, &headers, Role::Viewer)?;
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
    headers: HeaderMap,
    Query(q): Query<crate::model::JournalQuery>,
) -> Result<Json<crate::model::JournalPage>, ApiError> {
    use crate::model::{JournalEntryView, JournalPage};
    require(&app, &headers, Role::Admin)?;
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
