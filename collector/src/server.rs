//! The listeners: HTTPS for agents and socctl, plain HTTP for Prometheus.
//!
//! Connections are capped by a semaphore (further ones are closed at once and
//! counted), TLS handshakes have a deadline, and shutdown is a broadcast: the
//! accept loops stop, open connections finish their request and close.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::{api, http, ingest};

/// The HTTPS routes.
pub fn router(app: Arc<App>) -> Router {
    let limits = soc_protocol::Limits::V1;
    Router::new()
        .route(
            soc_protocol::BATCH_PATH,
            post(ingest::post_batch).layer(DefaultBodyLimit::max(limits.max_compressed_bytes)),
        )
        .route(soc_protocol::HEARTBEAT_PATH, post(ingest::post_heartbeat))
        .route(soc_protocol::ENROLL_PATH, post(ingest::post_enroll))
        .route("/api/v1/alerts", get(api::list_alerts))
        .route("/api/v1/alerts/{id}", get(api::get_alert))
        .route("/api/v1/alerts/{id}/ack", post(api::ack_alert))
        .route(
            "/api/v1/agents",
            get(api::list_agents).post(api::enroll_agent),
        )
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/journal", get(api::journal))
        .route("/api/v1/rules", get(crate::rules_api::list_rules))
        .route("/api/v1/rules/reload", post(crate::rules_api::post_reload))
        .route("/api/v1/alerts/stream", get(api::stream_alerts))
        .route("/api/v1/alerts/bulk", post(api::bulk_alerts))
        .route("/api/v1/alerts/{id}/close", post(api::close_alert))
        .route("/api/v1/alerts/{id}/assign", post(api::assign_alert))
        .route("/api/v1/alerts/{id}/note", post(api::note_alert))
        .route("/api/v1/alerts/{id}/reopen", post(api::reopen_alert))
        .route("/api/v1/agents/{name}/revoke", post(api::revoke_agent))
        .route(
            "/api/v1/tokens",
            get(api::list_tokens).post(api::create_token),
        )
        .route("/api/v1/tokens/{name}/revoke", post(api::revoke_token))
        .route("/api/v1/audit", get(api::list_audit))
        .route(
            "/api/v1/backups",
            get(crate::backup_api::get_list).post(crate::backup_api::post_create),
        )
        .route(
            "/api/v1/backups/restore",
            post(crate::backup_api::post_restore)
                .layer(DefaultBodyLimit::max(crate::backup_api::MAX_RESTORE_BYTES)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http::count_requests,
        ))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(app)
}

/// The plain-HTTP routes Prometheus scrapes.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(app): axum::extract::State<Arc<App>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        app.metrics.render(),
                    )
                },
            ),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// Serves HTTPS until `shutdown` turns true.
pub async fn serve_tls(
    app: Arc<App>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(app.settings.max_connections));
    let router = router(app.clone());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            app.metrics.connections_refused.inc();
            tracing::warn!(%peer, "connection refused: server.max_connections reached");
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(app.settings.handshake_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        app.metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        app.metrics.tls_handshake_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            app.metrics.connections_open.inc();
            let svc = TowerToHyperService::new(router.layer(axum::Extension(PeerAddr(peer))));
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(app.settings.handshake_timeout)
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            app.metrics.connections_open.dec();
        });
    }
}

/// The address of the peer, for handlers that log or audit it.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serves the metrics listener until `shutdown` turns true.
pub async fn serve_metrics(
    app: Arc<App>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let r = axum::serve(listener, metrics_router(app))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
