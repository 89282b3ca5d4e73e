//! The admin routes for backups: create, list, restore. Create and restore
//! are audited (`backup.create`, `backup.restore`), refusals included.
//!
//! A restore takes the backup file as the request body, so a collector on
//! another machine can be restored from a copy. The whole file is verified
//! before anything changes; a refused file leaves the collector as it was.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use soc_protocol::ErrorCode;

use crate::app::App;
use crate::auth::Role;
use crate::backup::{self, BackupError, BackupInfo, Reason, RestoreView};
use crate::http::{ApiError, Peer, audit, authorize, authorize_change};
use crate::model::AuditOutcome;

/// Largest backup a restore accepts in its body.
pub const MAX_RESTORE_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// `?name=` of a restore: the file name, for messages and the audit log.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct RestoreQuery {
    pub name: Option<String>,
}

/// The answer to a failed backup request. `refused` is what a refused file
/// means for the request ("nothing was changed" for a restore, which
/// verifies the whole file before it changes anything).
fn answer(e: BackupError, refused: Option<&str>) -> ApiError {
    if e.is_bad_file() {
        let message = match refused {
            Some(what) => format!("{e}; {what}"),
            None => e.to_string(),
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            message,
        )
    } else {
        ApiError::internal(e)
    }
}

/// `POST /api/v1/backups` (admin): writes a backup now.
pub async fn post_create(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<BackupInfo>, ApiError> {
    let who = authorize_change(&app, &headers, peer, Role::Admin, "backup.create", "backup")?;
    let worker = app.clone();
    let r = tokio::task::spawn_blocking(move || backup::create(&worker, Reason::Manual))
        .await
        .map_err(ApiError::internal)?;
    match r {
        Ok(info) => {
            audit(
                &app,
                Some(&who),
                peer,
                "backup.create",
                &info.name,
                AuditOutcome::Success,
                None,
            );
            Ok(Json(info))
        }
        Err(e) => {
            audit(
                &app,
                Some(&who),
                peer,
                "backup.create",
                "backup",
                AuditOutcome::Failed,
                Some(e.to_string()),
            );
            Err(answer(e, None))
        }
    }
}

/// `GET /api/v1/backups` (admin): the backups in the folder, newest first.
pub async fn get_list(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Json<Vec<BackupInfo>>, ApiError> {
    authorize(&app, &headers, peer, Role::Admin).map_err(|r| r.error)?;
    let dir = app.settings.backup.dir.clone();
    let r = tokio::task::spawn_blocking(move || backup::list(&dir))
        .await
        .map_err(ApiError::internal)?;
    r.map(Json).map_err(|e| answer(e, None))
}

/// `POST /api/v1/backups/restore?name=FILE` (admin): the body is a backup
/// file; it is verified whole, then restored in one transaction.
pub async fn post_restore(
    State(app): State<Arc<App>>,
    Peer(peer): Peer,
    Query(q): Query<RestoreQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RestoreView>, ApiError> {
    let name = q.name.unwrap_or_else(|| "uploaded backup".into());
    let who = authorize_change(&app, &headers, peer, Role::Admin, "backup.restore", &name)?;
    let worker = app.clone();
    let label = name.clone();
    let r = tokio::task::spawn_blocking(move || {
        let snap = backup::verify_bytes(&label, &body)?;
        backup::restore(&worker, &snap)
    })
    .await
    .map_err(ApiError::internal)?;
    match r {
        Ok(view) => {
            audit(
                &app,
                Some(&who),
                peer,
                "backup.restore",
                &name,
                AuditOutcome::Success,
                Some(format!(
                    "cursor {}, next alert id {}, {} alerts, sha256 {}",
                    view.cursor, view.next_alert_id, view.alerts, view.sha256
                )),
            );
            Ok(Json(view))
        }
        Err(e) => {
            audit(
                &app,
                Some(&who),
                peer,
                "backup.restore",
                &name,
                AuditOutcome::Failed,
                Some(e.to_string()),
            );
            Err(answer(e, Some("nothing was changed")))
        }
    }
}
