//! Reloading the detection content: the admin API route and the SIGHUP
//! handler share [`reload`].
//!
//! A reload reads every decoder, rule and list file again and swaps the whole
//! set in at once; the detection worker picks it up at its next step, and
//! rules whose text did not change keep their open windows and sequences. A
//! broken file leaves the running set untouched and the answer lists every
//! error with its file and line.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use soc_protocol::ErrorCode;

use crate::app::{App, ContentError};
use crate::auth::Role;
use crate::http::{ApiError, Peer, audit, authorize_change};
use crate::model::AuditOutcome;

/// What a successful reload loaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadView {
    /// Decoders now in force.
    pub decoders: usize,
    /// Rules now in force (enabled or not).
    pub rules: usize,
}

/// Reloads the content, logging and counting the outcome. `by` names who
/// asked (a token name, or `SIGHUP`).
pub fn reload(app: &App, by: &str) -> Result<ReloadView, ContentError> {
    match app.reload_content() {
        Ok(c) => {
            app.metrics.rule_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(by, rules = c.rules.rules().len(), "rules reloaded");
            Ok(ReloadView {
                decoders: c.decoders.names().len(),
                rules: c.rules.rules().len(),
            })
        }
        Err(e) => {
            app.metrics.rule_reloads.with_label_values(&["error"]).inc();
            tracing::error!(by, error = %e, "rule reload failed; the previous rules stay in force");
            Err(e)
        }
    }
}

/// `POST /api/v1/rules/reload` (admin). 422 with every error on failure.
pub async fn post_reload(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<ReloadView>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "rules.reload", "rules")?;
    let name = who.name.clone();
    let worker = app.clone();
    let result = tokio::task::spawn_blocking(move || reload(&worker, &name))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(v) => {
            audit(
                &app,
                Some(&who),
                peer,
                "rules.reload",
                "rules",
                AuditOutcome::Success,
                None,
            );
            Ok(Json(v))
        }
        Err(e) => {
            let msg = format!("the previous rules stay in force; fix these and reload again:\n{e}");
            audit(
                &app,
                Some(&who),
                peer,
                "rules.reload",
                "rules",
                AuditOutcome::Failed,
                Some(msg.clone()),
            );
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadRequest,
                msg,
            ))
        }
    }
}
