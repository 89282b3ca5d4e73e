//! The TCP and TLS listeners (RFC 6587, RFC 5425).
//!
//! Each connection is checked against the sender table before anything is
//! read (and before a TLS handshake), capped by `syslog.max_connections`,
//! given `syslog.handshake_timeout` to finish TLS and closed after
//! `syslog.idle_timeout` without data. Its messages are pushed into the fair
//! queue one by one; when the queue refuses, the handler waits and does not
//! read the socket, so the kernel's receive window fills and the sender is
//! slowed by TCP flow control instead of losing messages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::framing::{Frame, Framer};
use super::queue::Message;
use super::senders::Sender;
use super::{Ctx, Transport};
use crate::app::now_ms;

/// Bytes read from a connection at a time.
const READ_BUFFER: usize = 64 * 1024;

/// How long a connection still pushes what it read after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves a TCP listener, with TLS when `tls` is set, until `shutdown`.
pub async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = ctx.app.clone();
    let s = &app.settings.syslog;
    let m = &app.metrics.syslog;
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let t = transport.as_str();
    let limit = Arc::new(Semaphore::new(s.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(transport = t, error = %e, "syslog accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(sender) = s.senders.identify(peer.ip()) else {
            m.refused.with_label_values(&[t, "unknown_sender"]).inc();
            tracing::debug!(%peer, transport = t, "refused a connection from a sender not in [[syslog.senders]]");
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            m.refused.with_label_values(&[t, "max_connections"]).inc();
            tracing::debug!(%peer, transport = t, "refused a connection: syslog.max_connections reached");
            continue;
        };
        let ctx = ctx.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = ctx.handler();
            let app = ctx.app.clone();
            let m = &app.metrics.syslog;
            let _ = stream.set_nodelay(true);
            match tls {
                None => handle(&ctx, stream, sender, transport, peer, shutdown).await,
                Some(acceptor) => {
                    let mut sd = shutdown.clone();
                    let accepted = tokio::select! {
                        r = tokio::time::timeout(app.settings.syslog.handshake_timeout, acceptor.accept(stream)) => r,
                        _ = sd.changed() => return,
                    };
                    match accepted {
                        Ok(Ok(tls)) => handle(&ctx, tls, sender, transport, peer, shutdown).await,
                        Ok(Err(e)) => {
                            m.tls_handshake_failures.with_label_values(&["error"]).inc();
                            tracing::warn!(%peer, sender = %sender.name, error = %e, "syslog TLS handshake failed");
                        }
                        Err(_) => {
                            m.tls_handshake_failures
                                .with_label_values(&["timeout"])
                                .inc();
                            tracing::warn!(%peer, sender = %sender.name, "syslog TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    tracing::info!(transport = t, "syslog listener stopped");
}

/// Reads, frames and queues one connection's messages until it ends.
async fn handle<S: AsyncRead + Unpin>(
    ctx: &Arc<Ctx>,
    mut stream: S,
    sender: Arc<Sender>,
    transport: Transport,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = &ctx.app;
    let s = &app.settings.syslog;
    let m = &app.metrics.syslog;
    let t = transport.as_str();
    let open = m.connections_open.with_label_values(&[t]);
    open.inc();
    let received = m.received.with_label_values(&[t, &sender.label]);
    let truncated = m.truncated.with_label_values(&[t]);
    let last_seen = m.last_seen.with_label_values(&[&sender.label]);
    let ip: IpAddr = peer.ip().to_canonical();
    let mut framer = Framer::new(s.max_message_bytes);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut frames: Vec<Frame> = Vec::new();
    tracing::debug!(%peer, sender = %sender.name, transport = t, "syslog connection opened");
    'conn: loop {
        let read = tokio::select! {
            r = tokio::time::timeout(s.idle_timeout, stream.read(&mut buf)) => r,
            _ = shutdown.changed() => break,
        };
        let mut last = false;
        let n = match read {
            Err(_) => {
                m.idle_closed.with_label_values(&[t]).inc();
                tracing::debug!(%peer, sender = %sender.name, transport = t, "closed an idle syslog connection");
                break;
            }
            Ok(Ok(0)) => {
                framer.finish(&mut frames);
                last = true;
                0
            }
            // A TLS peer that closes without close_notify: what it sent still counts.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                framer.finish(&mut frames);
                last = true;
                0
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, sender = %sender.name, transport = t, error = %e, "syslog connection ended with an error");
                break;
            }
            Ok(Ok(n)) => n,
        };
        if n > 0
            && let Err(e) = framer.push(&buf[..n], &mut frames)
        {
            m.framing_errors.with_label_values(&[t]).inc();
            tracing::warn!(%peer, sender = %sender.name, transport = t, error = %e, "closing a syslog connection that cannot be framed");
            last = true;
        }
        if frames.is_empty() {
            if last {
                break;
            }
            continue;
        }
        let now = now_ms();
        received.inc_by(frames.len() as u64);
        last_seen.set(now / 1000);
        for f in frames.drain(..) {
            if f.truncated {
                truncated.inc();
            }
            let msg = Message {
                sender: sender.clone(),
                transport,
                peer: ip,
                raw: f.bytes,
                truncated: f.truncated,
                received_ms: now,
            };
            let msg = match ctx.queue.try_push(msg) {
                Ok(()) => continue,
                Err(msg) => msg,
            };
            m.backpressure_waits.with_label_values(&[t]).inc();
            let mut sd = shutdown.clone();
            let cancel = async move {
                let _ = sd.wait_for(|stop| *stop).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            if ctx.queue.push(msg, cancel).await.is_err() {
                m.lost.with_label_values(&["shutdown"]).inc();
                tracing::error!(%peer, sender = %sender.name, "shutting down with syslog messages read but not journalled");
                break 'conn;
            }
        }
        if last {
            break;
        }
    }
    open.dec();
    tracing::debug!(%peer, sender = %sender.name, transport = t, "syslog connection closed");
}
