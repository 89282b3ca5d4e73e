//! The agent's main loop: read, batch, send, checkpoint.
//!
//! One task owns the files, the batch being built and the checkpoints; only
//! the HTTP requests and the encoding of batches run in their own tasks.
//! Up to `shipping.max_in_flight` batches are in flight at once, so the
//! collector journals one while the next travels; each names the batch
//! before it while that one is unacknowledged ([`soc_protocol::AFTER_HEADER`]),
//! so the collector journals each stream's lines in order. One more batch is
//! taken and encoded on another thread while they are, and reading goes on
//! only until the batch after it is full, so memory is bounded
//! (`max_in_flight` + 2 batches) however long the collector is away.
//! Acknowledgements are applied in the order the batches were sent, and
//! checkpoints move only past acknowledged lines.
//!
//! Shutdown: the in-flight requests get [`SHUTDOWN_GRACE`] to finish (a
//! batch still waiting to retry is abandoned at once, and so are those sent
//! after it), the checkpoints are saved, and [`run`] returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use soc_protocol::{Batch, BatchAck, Limits, PROTOCOL_VERSION, ProtocolError, encode_batch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::batch::{Building, Line, Mark};
use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::config::Config;
use crate::discover::Waker;
use crate::enroll::{self, EnrollError};
use crate::files::Files;
use crate::heartbeat;
use crate::ship::{self, Predecessor, Shipper, TlsError};
use crate::stats::Stats;

/// How long an in-flight request may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Fewest time between two scans triggered by file notifications.
const MIN_WAKE_SCAN: Duration = Duration::from_millis(250);

/// Why the agent could not start (once running, it does not stop on errors).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
}

/// The next batch, taken from the building one and encoded on a blocking
/// thread.
struct Preparing {
    task: JoinHandle<Encoded>,
    marks: Vec<Mark>,
    batch_id: u64,
}

/// A batch's encoding, or the batch and why it could not be encoded.
/// The lines are dropped once encoded, on the encoding thread: a batch
/// waiting for room to be sent holds only its (compressed) body.
type Encoded = Result<Vec<u8>, (Batch<Arc<str>>, ProtocolError)>;

/// A batch being sent.
struct InFlight {
    task: JoinHandle<Option<BatchAck>>,
    marks: Vec<Mark>,
    batch_id: u64,
    /// Set by the sending task once the collector acknowledged the batch.
    acked: Arc<AtomicBool>,
}

/// Runs the agent until `shutdown` becomes true.
pub async fn run(cfg: Config, shutdown: watch::Receiver<bool>) -> Result<(), StartError> {
    let data_dir = &cfg.agent.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let checkpoints = Checkpoints::load(data_dir)?;
    let first_start = !checkpoints.existed();
    let client = ship::client(&cfg.collector.ca_file, cfg.shipping.request_timeout)?;
    let mut shipper = Shipper {
        client,
        base: cfg.collector.url.clone(),
        agent: cfg.agent.name.clone(),
        key: None,
        retry_initial: cfg.shipping.retry_initial,
        retry_max: cfg.shipping.retry_max,
    };
    let key = match enroll::ensure_key(
        &shipper,
        &cfg.collector.key_file,
        cfg.collector.secret.as_ref(),
        shutdown.clone(),
    )
    .await
    {
        Err(EnrollError::Interrupted) => return Ok(()),
        r => r?,
    };
    shipper.key = Some(key);
    let shipper = Arc::new(shipper);

    let stats = Arc::new(Stats::default());
    let mut files = Files::new(
        cfg.sources.clone(),
        cfg.agent.max_open_files,
        checkpoints,
        stats.clone(),
    );
    if files.scan(Instant::now(), true).all_tracked {
        files.prune_absent();
    }
    files.save()?;
    tracing::info!(
        agent = %cfg.agent.name,
        version = env!("CARGO_PKG_VERSION"),
        collector = %cfg.collector.url,
        sources = cfg.sources.len(),
        files = files.open_count(),
        data_dir = %data_dir.display(),
        config = %cfg.path.display(),
        first_start,
        "agent started"
    );
    Loop {
        cfg: &cfg,
        files,
        shipper,
        stats,
        shutdown,
        last_save: Instant::now(),
    }
    .run()
    .await;
    Ok(())
}

struct Loop<'a> {
    cfg: &'a Config,
    files: Files,
    shipper: Arc<Shipper>,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
    /// When checkpoints were last written (see [`CHECKPOINT_EVERY`]).
    last_save: Instant,
}

/// Checkpoints are written at most this often while shipping (and always at
/// shutdown). A checkpoint that lags the acknowledgements costs only re-sent
/// lines after a crash, which the collector drops as duplicates; writing it
/// after every batch cost an fsync per batch and halved throughput.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl Loop<'_> {
    async fn run(mut self) {
        let s = &self.cfg.shipping;
        let mut building = Building::new(s.batch_max_lines, s.batch_max_bytes);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut preparing: Option<Preparing> = None;
        let mut heartbeat_task: Option<JoinHandle<()>> = None;
        let poll = self
            .cfg
            .sources
            .iter()
            .map(|s| s.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1));
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hb_tick = tokio::time::interval(s.heartbeat_interval);
        hb_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (wake_tx, mut wake_rx) = mpsc::channel(1);
        let _waker = Waker::start(&self.cfg.sources, wake_tx);
        let mut last_wake_scan = Instant::now();
        let mut next_batch_id = first_batch_id();
        let mut shutdown = self.shutdown.clone();

        loop {
            let now = Instant::now();
            self.files.fill(&mut building, now);
            if preparing.is_none() && building.ready(now, s.flush_interval) {
                next_batch_id += 1;
                preparing = Some(self.prepare(&mut building, next_batch_id));
                self.files.fill(&mut building, now);
            }
            if in_flight.is_empty() {
                self.files.release_drained(now);
            }
            if now.duration_since(self.last_save) >= CHECKPOINT_EVERY {
                self.save();
                self.last_save = now;
            }
            let room = in_flight.len() < s.max_in_flight;
            let flush_at = match preparing {
                None => building.deadline(s.flush_interval),
                Some(_) => None,
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = tick.tick() => {
                    self.files.scan(Instant::now(), false);
                }
                Some(()) = wake_rx.recv() => {
                    if last_wake_scan.elapsed() >= MIN_WAKE_SCAN {
                        last_wake_scan = Instant::now();
                        self.files.scan(last_wake_scan, true);
                    }
                }
                encoded = join(preparing.as_mut().map(|p| &mut p.task)), if room => {
                    if let Some(p) = preparing.take()
                        && let Some(f) = self.send_prepared(p, encoded, &mut building, in_flight.back(), Instant::now())
                    {
                        in_flight.push_back(f);
                    }
                }
                done = join(in_flight.front_mut().map(|f| &mut f.task)) => {
                    if let Some(f) = in_flight.pop_front() {
                        match done {
                            Ok(Some(ack)) => self.finish_send(f, ack),
                            Ok(None) => {} // abandoned at shutdown
                            Err(e) => {
                                let later = in_flight.drain(..).collect();
                                self.send_task_died(f, e, later, preparing.take(), &mut building).await;
                            }
                        }
                    }
                }
                _ = sleep_until(flush_at) => {}
                _ = hb_tick.tick() => {
                    if heartbeat_task.as_ref().is_none_or(|t| t.is_finished()) {
                        let hb = heartbeat::build(&self.cfg.agent.name, &self.stats, self.files.open_count(), self.files.lag());
                        let shipper = self.shipper.clone();
                        heartbeat_task = Some(tokio::spawn(async move { heartbeat::send(&shipper, hb).await }));
                    }
                }
            }
        }

        tracing::info!("Shutting down.");
        if let Some(p) = preparing.take() {
            p.task.abort(); // never sent: read again at the next start
        }
        // In order: once one batch is abandoned, later acknowledgements
        // are not applied (their lines are sent again, and dropped by the
        // collector as duplicates).
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut abandoned = false;
        for mut f in in_flight.drain(..) {
            if !abandoned {
                match tokio::time::timeout_at(deadline, &mut f.task).await {
                    Ok(Ok(Some(ack))) => {
                        self.finish_send(f, ack);
                        continue;
                    }
                    Ok(_) => {}
                    Err(_) => f.task.abort(),
                }
                abandoned = true;
            } else {
                f.task.abort();
            }
            tracing::info!(
                batch_id = f.batch_id,
                lines = f.marks.len(),
                "In-flight batch abandoned; it is sent again at the next start."
            );
        }
        if let Some(t) = heartbeat_task {
            t.abort();
        }
        self.save();
        tracing::info!(
            lines_sent = self.stats.lines_sent.load(Ordering::Relaxed),
            lines_truncated = self.stats.lines_truncated.load(Ordering::Relaxed),
            lines_split = self.stats.lines_split.load(Ordering::Relaxed),
            truncations = self.stats.truncations.load(Ordering::Relaxed),
            "agent stopped"
        );
    }

    fn save(&mut self) {
        if let Err(e) = self.files.save() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "Cannot save checkpoints; will try again.");
        }
    }

    /// Lines taken but never to be acknowledged: their files are read again
    /// from their acknowledged offsets, and what was read of those files
    /// after them leaves the building batch.
    fn read_again(&mut self, marks: &[Mark], building: &mut Building) {
        let files = self.files.rewind(marks);
        building.retain(|m| !files.contains(&m.file));
    }

    /// The first `n` lines of the building batch, as a batch to send and
    /// the marks of its lines.
    fn take_batch(
        &self,
        building: &mut Building,
        n: usize,
        batch_id: u64,
    ) -> (Batch<Arc<str>>, Vec<Mark>) {
        let (records, marks): (Vec<Line>, Vec<Mark>) = building
            .take(n)
            .into_iter()
            .map(|p| (p.record, p.mark))
            .unzip();
        let batch = Batch {
            version: PROTOCOL_VERSION,
            agent: self.cfg.agent.name.clone(),
            batch_id,
            labels: self.cfg.agent.labels.clone(),
            records,
        };
        (batch, marks)
    }

    /// Takes the front of the batch and encodes it on a blocking thread.
    fn prepare(&mut self, building: &mut Building, batch_id: u64) -> Preparing {
        let (batch, marks) = self.take_batch(building, building.len(), batch_id);
        let task = tokio::task::spawn_blocking(move || {
            encode_batch(&batch, &Limits::V1).map_err(|e| (batch, e))
        });
        Preparing {
            task,
            marks,
            batch_id,
        }
    }

    /// Sends a prepared batch after `before` (the batch sent last, if one
    /// is still in flight); one that did not encode (too big, or a line the
    /// collector would refuse) goes back to the front of the building
    /// batch, for [`Loop::start_send`] to halve or skip.
    fn send_prepared(
        &mut self,
        p: Preparing,
        encoded: Result<Encoded, tokio::task::JoinError>,
        building: &mut Building,
        before: Option<&InFlight>,
        now: Instant,
    ) -> Option<InFlight> {
        let batch_id = p.batch_id;
        let body = match encoded {
            Ok(Ok(body)) => body,
            Ok(Err((batch, _))) => {
                restore(building, batch, p.marks);
                return self.start_send(building, batch_id, before, now);
            }
            Err(e) => {
                // The encoding thread died (a bug): read its lines again.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(batch_id, error = %e, "Encoding a batch failed; its lines are read again.");
                self.read_again(&p.marks, building);
                return None;
            }
        };
        let lines = p.marks.len();
        Some(self.deliver(body, p.marks, batch_id, lines, before))
    }

    /// Starts the request that delivers an encoded batch after `before`.
    fn deliver(
        &self,
        body: Vec<u8>,
        marks: Vec<Mark>,
        batch_id: u64,
        lines: usize,
        before: Option<&InFlight>,
    ) -> InFlight {
        let shipper = self.shipper.clone();
        let stats = self.stats.clone();
        let shutdown = self.shutdown.clone();
        let acked = Arc::new(AtomicBool::new(false));
        let after = before.map(|b| Predecessor {
            batch_id: b.batch_id,
            acked: b.acked.clone(),
        });
        tracing::debug!(batch_id, lines, bytes = body.len(), after = ?after.as_ref().map(|a| a.batch_id), "Sending batch.");
        let done = acked.clone();
        let task = tokio::spawn(async move {
            let ack = shipper
                .deliver(body, batch_id, lines, after, &stats, shutdown)
                .await;
            if ack.is_some() {
                done.store(true, Ordering::Release);
            }
            ack
        });
        InFlight {
            task,
            marks,
            batch_id,
            acked,
        }
    }

    /// Encodes the front of the batch and starts sending it. A batch too
    /// big once encoded is halved until it fits.
    fn start_send(
        &mut self,
        building: &mut Building,
        batch_id: u64,
        before: Option<&InFlight>,
        now: Instant,
    ) -> Option<InFlight> {
        let mut n = building.len();
        while n > 0 {
            let (batch, marks) = self.take_batch(building, n, batch_id);
            match encode_batch(&batch, &Limits::V1) {
                Ok(body) => {
                    let lines = marks.len();
                    return Some(self.deliver(body, marks, batch_id, lines, before));
                }
                Err(
                    ProtocolError::PayloadTooLarge { .. }
                    | ProtocolError::DecompressedTooLarge { .. }
                    | ProtocolError::TooManyRecords { .. },
                ) if n > 1 => {
                    restore(building, batch, marks);
                    n /= 2;
                }
                Err(e) => {
                    // Cannot happen with lines cut by the tailer; never loop on it.
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, path = %batch.records.first().map_or("", |r| &*r.path), "Cannot encode a line for the collector; it is skipped.");
                    if let Err(e) = self.files.commit(&marks, now) {
                        tracing::error!(error = %e, "Cannot save checkpoints; will try again.");
                    }
                    return None;
                }
            }
        }
        None
    }

    /// The task sending the oldest batch in flight died (a bug): nothing
    /// after it may be acknowledged before it, so every batch taken since is
    /// dropped and their lines are read again.
    async fn send_task_died(
        &mut self,
        f: InFlight,
        error: tokio::task::JoinError,
        later: Vec<InFlight>,
        preparing: Option<Preparing>,
        building: &mut Building,
    ) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(batch_id = f.batch_id, %error, "Send task failed; its lines and those taken after them are read again.");
        let mut marks = f.marks;
        for l in later {
            l.task.abort();
            marks.extend(l.marks);
        }
        if let Some(p) = preparing {
            marks.extend(p.finish().await);
        }
        self.read_again(&marks, building);
    }

    /// Applies the acknowledgement of the oldest batch in flight.
    fn finish_send(&mut self, f: InFlight, ack: BatchAck) {
        self.stats
            .lines_sent
            .fetch_add(f.marks.len() as u64, Ordering::Relaxed);
        tracing::debug!(
            batch_id = f.batch_id,
            accepted = ack.accepted,
            duplicates = ack.duplicates,
            "Batch acknowledged."
        );
        // Saved with the next periodic save (CHECKPOINT_EVERY).
        self.files.acknowledge(&f.marks, Instant::now());
    }
}

impl Preparing {
    /// Waits for the encoding to end; the marks of its lines.
    async fn finish(self) -> Vec<Mark> {
        let _ = self.task.await;
        self.marks
    }
}

/// Puts a batch that was not sent back in front of the building one.
fn restore(building: &mut Building, batch: Batch<Arc<str>>, marks: Vec<Mark>) {
    building.restore(
        batch
            .records
            .into_iter()
            .zip(marks)
            .map(|(record, mark)| crate::batch::Pending { record, mark })
            .collect(),
    );
}

async fn join<T>(task: Option<&mut JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Where this run of the agent starts numbering its batches: a random
/// 62-bit number, so that no two runs of an agent use the same ids.
///
/// The collector journals a batch that names its predecessor
/// ([`soc_protocol::AFTER_HEADER`]) as soon as it holds a batch of that id
/// from the agent. Were a restarted agent to reuse the ids of the run
/// before it, its second batch could follow the killed run's first, be
/// journalled ahead of its own first, and that one's lines would be
/// dropped as already held. Two runs share an id only if their ranges
/// overlap: about one chance in 2^41 for runs of a million batches each.
fn first_batch_id() -> u64 {
    rand::random::<u64>() >> 2
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_number_their_batches_apart() {
        let ids: Vec<u64> = (0..1000).map(|_| super::first_batch_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        // A million batches a run, and room to count them without wrapping.
        assert!(
            sorted.windows(2).all(|w| w[1] - w[0] > 1 << 20),
            "{sorted:?}"
        );
        assert!(ids.iter().all(|&id| id < u64::MAX - (1 << 40)));
    }
}
