//! The UDP listener (RFC 5426): one datagram is one message.
//!
//! UDP has no flow control, so nothing can slow a sender down: when the
//! queue is full the message is dropped and counted in
//! `soc_syslog_udp_dropped_total{sender}`. Datagrams the kernel itself
//! dropped because the socket's receive buffer was full never reach the
//! collector; their count is read from `/proc/net/udp` and exported as
//! `soc_syslog_udp_receive_buffer_drops`, so no loss is silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::queue::Message;
use super::{Ctx, Transport};
use crate::app::now_ms;

/// Largest UDP payload there can be.
const MAX_DATAGRAM: usize = 65_535;

/// Serves the UDP socket until `shutdown`.
pub async fn serve(ctx: Arc<Ctx>, sock: UdpSocket, mut shutdown: watch::Receiver<bool>) {
    let app = ctx.app.clone();
    let s = &app.settings.syslog;
    let m = &app.metrics.syslog;
    let max = s.max_message_bytes;
    // One byte more than the limit tells a cut message from one exactly at it.
    let mut buf = vec![0u8; (max + 1).min(MAX_DATAGRAM)];
    let local = sock.local_addr().ok();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "syslog UDP receive failed");
                    continue;
                }
            },
            _ = tick.tick() => {
                if let Some(drops) = local.and_then(kernel_drops) {
                    m.udp_receive_buffer_drops.set(drops as i64);
                }
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let Some(sender) = s.senders.identify(peer.ip()) else {
            m.refused
                .with_label_values(&["udp", "unknown_sender"])
                .inc();
            tracing::debug!(%peer, "refused a UDP message from a sender not in [[syslog.senders]]");
            continue;
        };
        let mut data = &buf[..n];
        while let Some((last, init)) = data.split_last()
            && matches!(last, b'\n' | b'\r' | b'\0')
        {
            data = init;
        }
        if data.is_empty() {
            continue;
        }
        let truncated = data.len() > max;
        let data = &data[..data.len().min(max)];
        m.received.with_label_values(&["udp", &sender.label]).inc();
        if truncated {
            m.truncated.with_label_values(&["udp"]).inc();
        }
        let label = sender.label.clone();
        let msg = Message {
            sender,
            transport: Transport::Udp,
            peer: peer.ip().to_canonical(),
            raw: data.to_vec(),
            truncated,
            received_ms: now_ms(),
        };
        if ctx.queue.try_push(msg).is_err() {
            m.udp_dropped.with_label_values(&[&label]).inc();
            tracing::debug!(%peer, "dropped a UDP message: the syslog queue is full");
        }
    }
    tracing::info!("syslog UDP listener stopped");
}

/// Datagrams the kernel dropped on the socket bound to `local` (the `drops`
/// column of `/proc/net/udp` and `/proc/net/udp6`); `None` where that file
/// does not exist.
pub fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let port = format!(":{:04X}", local.port());
    let mut found = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(1).is_some_and(|a| a.ends_with(&port))
                && let Some(d) = cols.last().and_then(|d| d.parse::<u64>().ok())
            {
                *found.get_or_insert(0) += d;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_drops_reads_the_socket_of_its_port() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        if std::path::Path::new("/proc/net/udp").exists() {
            assert_eq!(super::kernel_drops(addr), Some(0));
        }
    }
}
