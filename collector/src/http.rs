//! What every HTTPS handler shares: the error answer, credentials, and the
//! request counter.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use soc_protocol::{ErrorBody, ErrorCode};
use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::{App, now_ms};
use crate::audit::Action;
use crate::auth::{Role, TokenRecord};
use crate::model::AuditOutcome;
use crate::ratelimit::Verdict;
use crate::server::PeerAddr;

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
/// Without the peer address failures are counted but not rate-limited; use
/// [`authorize`] where the handler has a [`Peer`].
pub fn require(app: &App, headers: &HeaderMap, min: Role) -> Result<TokenRecord, ApiError> {
    authorize(app, headers, None, min).map_err(|r| r.error)
}

/// The caller's address, from the [`PeerAddr`] the TLS server attaches to
/// each request (absent in router tests).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<PeerAddr>().map(|p| p.0)))
    }
}

/// A refused authorisation: the answer, and who it was when the token was
/// valid but its role too low.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub who: Option<TokenRecord>,
    /// Refused by the failure limiter (not worth an audit record each).
    pub rate_limited: bool,
}

fn unauthorized(app: &App, peer: Option<SocketAddr>) -> Refusal {
    app.metrics
        .auth_failures
        .with_label_values(&["token"])
        .inc();
    note_failure(app, peer);
    if let Some(p) = peer {
        tracing::warn!(peer = %p, "refused an API request with a missing, unknown or revoked token");
    }
    Refusal {
        error: ApiError::unauthorized(),
        who: None,
        rate_limited: false,
    }
}

/// Refuses (429) a peer that failed to authenticate too often recently.
pub fn check_failures(app: &App, peer: Option<SocketAddr>) -> Result<(), ApiError> {
    if let Some(p) = peer
        && let Verdict::Limited(secs) = app.auth_limiter.check(p.ip(), Instant::now())
    {
        app.metrics.workflow.auth_rate_limited.inc();
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded,
            "too many failed authentications from this address; wait and check the credentials",
        )
        .retry(secs));
    }
    Ok(())
}

/// Counts a failed authentication against `peer` in the limiter.
pub fn note_failure(app: &App, peer: Option<SocketAddr>) {
    if let Some(p) = peer {
        if app.auth_limiter.failed(p.ip(), Instant::now()) {
            app.metrics.workflow.auth_limiter_evictions.inc();
        }
        app.metrics
            .workflow
            .auth_limiter_peers
            .set(app.auth_limiter.tracked() as i64);
    }
}

/// Checks the token and role of a request from `peer`. A peer that failed
/// too often recently is refused with 429 before its token is looked at.
pub fn authorize(
    app: &App,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    min: Role,
) -> Result<TokenRecord, Refusal> {
    if let Err(error) = check_failures(app, peer) {
        return Err(Refusal {
            error,
            who: None,
            rate_limited: true,
        });
    }
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(app, peer));
    };
    let rec = match app.auth.verify_token(token) {
        Ok(rec) => rec,
        Err(_) => return Err(unauthorized(app, peer)),
    };
    if rec.role < min {
        app.metrics.auth_failures.with_label_values(&["role"]).inc();
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "token `{}` has role {}; this needs {}",
                rec.name,
                rec.role.as_str(),
                min.as_str()
            ),
        );
        return Err(Refusal {
            error,
            who: Some(rec),
            rate_limited: false,
        });
    }
    Ok(rec)
}

/// Records one audited call; a failure to write is logged and counted, and
/// never changes the answer.
pub fn audit(
    app: &App,
    who: Option<&TokenRecord>,
    peer: Option<SocketAddr>,
    action: &str,
    target: &str,
    outcome: AuditOutcome,
    message: Option<String>,
) {
    let act = Action {
        who,
        peer,
        action,
        target,
    };
    match app.audit.record(&act, outcome, message, now_ms()) {
        Ok(_) => app
            .metrics
            .workflow
            .audit_records
            .with_label_values(&[outcome.as_str()])
            .inc(),
        Err(e) => {
            app.metrics.workflow.audit_failures.inc();
            tracing::error!(error = %e, action, target, "could not write an audit record");
        }
    }
}

/// [`authorize`] for a state-changing call: a refusal (other than by the
/// rate limiter) is audited as `refused` under `action` and `target`.
/// Engine handlers (rule reload, restore) call this, then [`audit`] with the
/// outcome.
pub fn authorize_change(
    app: &App,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    min: Role,
    action: &str,
    target: &str,
) -> Result<TokenRecord, ApiError> {
    authorize(app, headers, peer, min).map_err(|r| {
        if !r.rate_limited {
            audit(
                app,
                r.who.as_ref(),
                peer,
                action,
                target,
                AuditOutcome::Refused,
                Some(r.error.message.clone()),
            );
        }
        r.error
    })
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
