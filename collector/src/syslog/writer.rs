//! The journal writer: takes batches from the fair queue and appends them to
//! the journal as agent `syslog`, stream `syslog:<sender>`.
//!
//! Syslog has no offsets, so the writer numbers each stream's messages
//! itself. The journal's de-duplication mark for a stream is the next offset
//! it accepts; the writer starts each stream's counter there (read once,
//! after a restart too), so a number is never reused and de-duplication
//! never drops a syslog message. The writer is the only one appending to
//! these streams, and it appends one batch at a time, in order.
//!
//! A batch is up to `syslog.batch_max_messages` messages or whatever arrived
//! within `syslog.batch_max_wait` of the first, so many messages share one
//! fsync. While detection is more than `ingest.max_detection_lag` entries
//! behind, the writer waits: the queue fills and the listeners apply their
//! full-queue behaviour (TCP backpressure, counted UDP drops).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::queue::Message;
use super::{AGENT, Ctx, Transport};
use crate::app::now_ms;
use crate::db::DbError;
use crate::journal::JournalEntry;

/// How long shutdown waits for connections to hand over what they read.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs until `shutdown`, then drains the queue.
pub async fn run(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let app = ctx.app.clone();
    let s = &app.settings.syslog;
    let m = &app.metrics.syslog;
    let mut offsets: HashMap<String, u64> = HashMap::new();
    let mut drain_until: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            let deadline = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_DEADLINE);
            let depth = ctx.queue.depth();
            if depth.messages == 0 && ctx.handlers() == 0 {
                break;
            }
            if Instant::now() > deadline {
                m.lost
                    .with_label_values(&["shutdown"])
                    .inc_by(depth.messages as u64);
                tracing::error!(
                    messages = depth.messages,
                    "syslog messages left unjournalled at shutdown"
                );
                break;
            }
            if depth.messages == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        } else {
            tokio::select! {
                _ = ctx.queue.wait_data() => {}
                _ = shutdown.changed() => continue,
            }
            // Let the batch fill, so that its messages share one fsync.
            let start = Instant::now();
            while ctx.queue.depth().messages < s.batch_max_messages
                && start.elapsed() < s.batch_max_wait
                && !*shutdown.borrow()
            {
                tokio::time::sleep(Duration::from_millis(5).min(s.batch_max_wait)).await;
            }
            // Detection too far behind: hold on, let the queue apply backpressure.
            while app.journal.last_seq().await.saturating_sub(app.cursor())
                >= app.settings.max_detection_lag
                && !*shutdown.borrow()
            {
                set_depth(&ctx);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let batch = ctx.queue.pop_batch(s.batch_max_messages);
        set_depth(&ctx);
        if batch.is_empty() {
            continue;
        }
        write(&ctx, &mut offsets, &batch, &mut shutdown).await;
    }
    set_depth(&ctx);
    tracing::info!("syslog journal writer stopped");
}

fn set_depth(ctx: &Ctx) {
    let d = ctx.queue.depth();
    let m = &ctx.app.metrics.syslog;
    m.queue_messages.set(d.messages as i64);
    m.queue_bytes.set(d.bytes as i64);
}

/// Appends one batch, retrying storage errors (the listeners are held back
/// by the full queue meanwhile). Gives up only when shutting down.
async fn write(
    ctx: &Ctx,
    offsets: &mut HashMap<String, u64>,
    batch: &[Message],
    shutdown: &mut watch::Receiver<bool>,
) {
    let app = &ctx.app;
    let m = &app.metrics.syslog;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match append(ctx, offsets, batch).await {
            Ok(()) => return,
            Err(e) => {
                m.journal_errors.inc();
                tracing::error!(error = %e, messages = batch.len(), attempt, "could not journal syslog messages; retrying");
                if *shutdown.borrow() && attempt >= 3 {
                    m.lost
                        .with_label_values(&["journal_error"])
                        .inc_by(batch.len() as u64);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn append(
    ctx: &Ctx,
    offsets: &mut HashMap<String, u64>,
    batch: &[Message],
) -> Result<(), DbError> {
    let app = &ctx.app;
    // Offsets move only once the batch is durable, so a retry reuses them.
    let mut next: HashMap<&str, u64> = HashMap::new();
    let mut entries = Vec::with_capacity(batch.len());
    for msg in batch {
        let stream = msg.sender.stream.as_str();
        let offset = match next.get(stream) {
            Some(o) => *o,
            None => match offsets.get(stream) {
                Some(o) => *o,
                None => app.journal.next_offset(AGENT, stream)?,
            },
        };
        next.insert(stream, offset + 1);
        entries.push(JournalEntry {
            agent: AGENT.to_owned(),
            stream: msg.sender.stream.clone(),
            source: msg.sender.name.clone(),
            source_type: msg.sender.source_type.clone(),
            path: format!("{}://{}", msg.transport.as_str(), msg.peer),
            offset,
            read_time_ms: msg.received_ms,
            received_ms: msg.received_ms,
            raw: msg.raw.clone(),
            truncated: msg.truncated,
            labels: msg.sender.labels.clone(),
        });
    }
    let outcome = app.journal.append(AGENT, entries, now_ms()).await?;
    for (stream, o) in next {
        offsets.insert(stream.to_owned(), o);
    }
    let m = &app.metrics;
    if outcome.duplicates > 0 {
        // Cannot happen while this writer is the streams' only writer.
        m.events_duplicate.inc_by(outcome.duplicates);
        tracing::error!(
            duplicates = outcome.duplicates,
            "the journal dropped syslog messages as duplicates"
        );
    }
    let mut by_sender: HashMap<&str, (u64, i64)> = HashMap::new();
    let mut by_transport = [0u64; 3];
    for msg in batch {
        let e = by_sender.entry(msg.sender.label.as_str()).or_default();
        e.0 += 1;
        e.1 = e.1.max(msg.received_ms);
        by_transport[msg.transport as usize] += 1;
    }
    for (label, (n, last)) in by_sender {
        m.syslog.journalled.with_label_values(&[label]).inc_by(n);
        m.syslog
            .last_seen
            .with_label_values(&[label])
            .set(last / 1000);
    }
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        let n = by_transport[t as usize];
        if n > 0 {
            m.events_received
                .with_label_values(&[t.events_label()])
                .inc_by(n);
        }
    }
    m.syslog.journal_appends.inc();
    m.journal_last_seq.set(app.journal.last_seq().await as i64);
    Ok(())
}
