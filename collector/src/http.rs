//! What every HTTPS handler shares: the error answer, credentials, and the
//! request counter.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use soc_protocol::{ErrorBody, ErrorCode};
use std::sync::Arc;

use crate::app::App;
use crate::auth::{Role, TokenRecord};

/// A refused request: status, machine-readable code, a sentence, and for
/// overload a `Retry-After`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing, unknown or revoked credentials",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed on a storage error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("storage error: {e}"),
        )
        .retry(5)
    }

    pub fn retry(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Checks the request's API token and that its role is at least `min`.
pub fn require(app: &App, headers: &HeaderMap, min: Role) -> Result<TokenRecord, ApiError> {
    let Some(token) = bearer(headers) else {
        app.metrics
            .auth_failures
            .with_label_values(&["token"])
            .inc();
        return Err(ApiError::unauthorized());
    };
    let rec = app.auth.verify_token(token).map_err(|_| {
        app.metrics
            .auth_failures
            .with_label_values(&["token"])
            .inc();
        ApiError::unauthorized()
    })?;
    if rec.role < min {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "token `{}` has role {}; this needs {}",
                rec.name,
                rec.role.as_str(),
                min.as_str()
            ),
        ));
    }
    Ok(rec)
}

/// Counts every request by its route pattern (never the raw path) and status.
pub async fn count_requests(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    app.metrics
        .http_requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}
