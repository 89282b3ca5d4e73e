//! Syslog from devices that cannot run an agent (firewall appliances,
//! antivirus management servers): UDP (RFC 5426), TCP (RFC 6587) and TLS
//! (RFC 5425) listeners feeding the same journal as agent batches.
//!
//! A message is never parsed here: the journal keeps it byte-exact and the
//! decoders (`soc-rules`) read its header. What this module adds is framing,
//! attribution (which configured device sent it, and so which decoder it is
//! meant for), and the load behaviour:
//!
//! ```text
//!  udp ─┐  try_push (full → counted drop)
//!  tcp ─┼─▶ FairQueue (bounded bytes, a lane per sender) ─▶ writer ─▶ Journal
//!  tls ─┘  push (full → stop reading: TCP backpressure)      batches of N or 50 ms
//! ```
//!
//! # Layout
//!
//! * [`config`]: the `[syslog]` section and its validation.
//! * [`senders`]: who sent a message (address/CIDR → name, decoder hint).
//! * [`framing`]: cutting a TCP/TLS stream into messages (octet counting or newline).
//! * [`queue`]: the bounded fair queue between listeners and writer.
//! * [`udp`], [`tcp`]: the listeners (`tcp` also serves TLS).
//! * [`writer`]: the journal writer (offsets, batching, metrics).

pub mod config;
pub mod framing;
pub mod queue;
pub mod senders;
pub mod tcp;
pub mod udp;
pub mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{SenderConfig, SyslogConfig, SyslogSettings};

use crate::app::App;
use queue::FairQueue;

/// The journal's `agent` for every syslog message.
pub const AGENT: &str = "syslog";

/// How a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The value of `soc_events_received_total{transport}`.
    pub fn events_label(self) -> &'static str {
        match self {
            Transport::Udp => "syslog_udp",
            Transport::Tcp => "syslog_tcp",
            Transport::Tls => "syslog_tls",
        }
    }
}

/// Why the syslog listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("binding {key} {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the listeners, their connections and the writer share.
pub struct Ctx {
    pub app: Arc<App>,
    pub queue: FairQueue,
    /// Connection handlers still running; the writer drains the queue on
    /// shutdown until they are gone, so nothing read is left behind.
    handlers: AtomicUsize,
}

/// Held by each connection handler.
pub(crate) struct HandlerGuard(Arc<Ctx>);

impl Ctx {
    pub(crate) fn handler(self: &Arc<Ctx>) -> HandlerGuard {
        self.handlers.fetch_add(1, Ordering::AcqRel);
        HandlerGuard(self.clone())
    }

    pub(crate) fn handlers(&self) -> usize {
        self.handlers.load(Ordering::Acquire)
    }
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.0.handlers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bound, not yet serving, listeners.
pub struct Listeners {
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct BoundAddrs {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

impl Listeners {
    /// Binds every configured listener. TLS uses the collector's server
    /// certificate, without the HTTP ALPN.
    pub async fn bind(
        s: &SyslogSettings,
        tls: &Arc<rustls::ServerConfig>,
    ) -> Result<Listeners, SyslogError> {
        let bind_err = |key, addr| move |source| SyslogError::Bind { key, addr, source };
        let udp = match s.udp_listen {
            Some(a) => Some(
                UdpSocket::bind(a)
                    .await
                    .map_err(bind_err("syslog.udp_listen", a))?,
            ),
            None => None,
        };
        let tcp = match s.tcp_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(bind_err("syslog.tcp_listen", a))?,
            ),
            None => None,
        };
        let tls = match s.tls_listen {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .await
                    .map_err(bind_err("syslog.tls_listen", a))?;
                let mut cfg = (**tls).clone();
                cfg.alpn_protocols.clear();
                Some((l, tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
            }
            None => None,
        };
        Ok(Listeners { udp, tcp, tls })
    }

    pub fn addrs(&self) -> BoundAddrs {
        BoundAddrs {
            udp: self.udp.as_ref().and_then(|u| u.local_addr().ok()),
            tcp: self.tcp.as_ref().and_then(|l| l.local_addr().ok()),
            tls: self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        }
    }

    /// Starts the listeners and the journal writer on `tasks`; they stop when
    /// `shutdown` turns true, the writer last, after draining the queue.
    pub fn spawn(self, app: Arc<App>, shutdown: watch::Receiver<bool>, tasks: &mut JoinSet<()>) {
        if self.udp.is_none() && self.tcp.is_none() && self.tls.is_none() {
            return;
        }
        let s = &app.settings.syslog;
        let m = &app.metrics.syslog;
        for name in s.senders.names() {
            m.journalled.with_label_values(&[name]);
            m.last_seen.with_label_values(&[name]);
            m.udp_dropped.with_label_values(&[name]);
        }
        let ctx = Arc::new(Ctx {
            queue: FairQueue::new(s.queue_max_bytes),
            handlers: AtomicUsize::new(0),
            app: app.clone(),
        });
        let addrs = self.addrs();
        if let Some(u) = self.udp {
            tasks.spawn(udp::serve(ctx.clone(), u, shutdown.clone()));
        }
        if let Some(l) = self.tcp {
            tasks.spawn(tcp::serve(ctx.clone(), l, None, shutdown.clone()));
        }
        if let Some((l, acceptor)) = self.tls {
            tasks.spawn(tcp::serve(ctx.clone(), l, Some(acceptor), shutdown.clone()));
        }
        tasks.spawn(writer::run(ctx, shutdown));
        tracing::info!(
            udp = ?addrs.udp,
            tcp = ?addrs.tcp,
            tls = ?addrs.tls,
            senders = s.senders.names().count(),
            "syslog listeners started"
        );
    }
}
