//! The rules in force (`GET /api/v1/rules`), and reloading the detection
//! content: the admin API route and the SIGHUP handler share [`reload`].
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
use crate::http::{ApiError, Peer, audit, authorize, authorize_change};
use crate::model::{AlertQuery, AuditOutcome, LastAlert, RuleView};

/// What a successful reload loaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadView {
    /// Decoders now in force.
    pub decoders: usize,
    /// Rules now in force (enabled or not).
    pub rules: usize,
    /// Fields a rule reads that no decoder sets, one sentence each (a rule
    /// reading one never fires); the rules are in force all the same.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `GET /api/v1/rules` (viewer): the rules in force, in load order, each
/// with the groups it holds open and its newest alert.
pub async fn list_rules(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Vec<RuleView>>, ApiError> {
    authorize(&app, &headers, peer, Role::Viewer).map_err(|r| r.error)?;
    let reader = app.clone();
    let views = tokio::task::spawn_blocking(move || rule_views(&reader))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(views))
}

fn rule_views(app: &App) -> Result<Vec<RuleView>, ApiError> {
    let content = app.content();
    let groups = app.rule_groups();
    let mut views = Vec::with_capacity(content.rules.rules().len());
    for r in content.rules.rules() {
        // The newest alert: one page of one, from the rule index.
        let newest = app
            .alerts
            .list(&AlertQuery {
                rule: Some(r.id.clone()),
                limit: Some(1),
                ..AlertQuery::default()
            })
            .map_err(ApiError::internal)?;
        views.push(RuleView {
            id: r.id.clone(),
            title: r.title.clone(),
            severity: r.severity,
            kind: r.kind().as_str().into(),
            enabled: r.enabled,
            owner: r.owner.clone(),
            tags: r.tags.clone(),
            version: r.version,
            file: r.file.clone(),
            line: r.line,
            open_groups: groups.get(&r.id).copied().unwrap_or(0),
            last_alert: newest.alerts.first().map(|a| LastAlert {
                id: a.id,
                created_ms: a.created_ms,
                status: a.status,
            }),
        });
    }
    Ok(views)
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
                warnings: c.warnings(),
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
