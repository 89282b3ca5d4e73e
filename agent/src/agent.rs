//! The agent's main loop: read, batch, send, checkpoint.
//!
//! One task owns the files, the batch being built and the checkpoints; only
//! the HTTP requests run in their own tasks. At most one batch is in flight,
//! so the collector sees each stream's lines in order. While it is, the next
//! batch is taken and encoded on another thread (sent the moment the
//! previous one is acknowledged), and reading goes on only until the batch
//! after it is full, so memory is bounded (three batches) however long the
//! collector is away. Checkpoints move only when the collector acknowledged
//! a batch.
//!
//! Shutdown: the in-flight request gets [`SHUTDOWN_GRACE`] to finish (a
//! batch still waiting to retry is abandoned at once), the checkpoints are
//! saved, and [`run`] returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use soc_protocol::{
    Batch, BatchAck, Limits, PROTOCOL_VERSION, ProtocolError, Record, encode_batch,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::batch::{Building, Mark};
use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::config::Config;
use crate::discover::Waker;
use crate::enroll::{self, EnrollError};
use crate::files::Files;
use crate::heartbeat;
use crate::ship::{self, Shipper, TlsError};
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
/// thread while the previous batch is in flight.
struct Preparing {
    task: JoinHandle<(Batch, Result<Vec<u8>, ProtocolError>)>,
    marks: Vec<Mark>,
    batch_id: u64,
}

/// The batch being sent.
struct InFlight {
    task: JoinHandle<Option<BatchAck>>,
    marks: Vec<Mark>,
    batch_id: u64,
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
        let mut in_flight: Option<InFlight> = None;
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
        // Batch ids only label logs; starting from the clock keeps them
        // distinct across restarts.
        let mut next_batch_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() << 20);
        let mut shutdown = self.shutdown.clone();

        loop {
            let now = Instant::now();
            self.files.fill(&mut building, now);
            if in_flight.is_none() {
                if building.ready(now, s.flush_interval) {
                    next_batch_id += 1;
                    in_flight = self.start_send(&mut building, next_batch_id, now);
                }
                self.files.release_drained(now);
            } else if preparing.is_none() && building.ready(now, s.flush_interval) {
                next_batch_id += 1;
                preparing = Some(self.prepare(&mut building, next_batch_id));
                self.files.fill(&mut building, now);
            }
            if now.duration_since(self.last_save) >= CHECKPOINT_EVERY {
                self.save();
                self.last_save = now;
            }
            let flush_at = match in_flight {
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
                done = join(in_flight.as_mut().map(|f| &mut f.task)) => {
                    if let Some(f) = in_flight.take() {
                        let ok = matches!(done, Ok(Some(_)));
                        // The next batch leaves first; the acknowledgement
                        // is recorded while it travels.
                        if ok && let Some(p) = preparing.take() {
                            in_flight = self.send_prepared(p, &mut building, Instant::now()).await;
                        }
                        self.finish_send(f, done, &mut building);
                        if let Some(p) = preparing.take() {
                            // Its files were read again from their
                            // acknowledged offsets: so are its lines.
                            let marks = p.finish().await;
                            self.read_again(&marks, &mut building);
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
        if let Some(mut f) = in_flight.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut f.task).await {
                Ok(done) => self.finish_send(f, done, &mut building),
                Err(_) => {
                    f.task.abort();
                    tracing::info!(
                        batch_id = f.batch_id,
                        lines = f.marks.len(),
                        "In-flight batch abandoned; it is sent again at the next start."
                    );
                }
            }
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
    fn take_batch(&self, building: &mut Building, n: usize, batch_id: u64) -> (Batch, Vec<Mark>) {
        let (records, marks): (Vec<Record>, Vec<Mark>) = building
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
            let r = encode_batch(&batch, &Limits::V1);
            (batch, r)
        });
        Preparing {
            task,
            marks,
            batch_id,
        }
    }

    /// Sends a prepared batch; one that did not encode (too big, or a line
    /// the collector would refuse) goes back to the front of the building
    /// batch, for [`Loop::start_send`] to halve or skip.
    async fn send_prepared(
        &mut self,
        p: Preparing,
        building: &mut Building,
        now: Instant,
    ) -> Option<InFlight> {
        let batch_id = p.batch_id;
        let (batch, body) = match p.task.await {
            Ok((batch, Ok(body))) => (batch, body),
            Ok((batch, Err(_))) => {
                restore(building, batch, p.marks);
                return self.start_send(building, batch_id, now);
            }
            Err(e) => {
                // The encoding thread died (a bug): read its lines again.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(batch_id, error = %e, "Encoding a batch failed; its lines are read again.");
                self.read_again(&p.marks, building);
                return None;
            }
        };
        Some(self.deliver(body, p.marks, batch_id, batch.records.len()))
    }

    /// Starts the request that delivers an encoded batch.
    fn deliver(&self, body: Vec<u8>, marks: Vec<Mark>, batch_id: u64, lines: usize) -> InFlight {
        let shipper = self.shipper.clone();
        let stats = self.stats.clone();
        let shutdown = self.shutdown.clone();
        tracing::debug!(batch_id, lines, bytes = body.len(), "Sending batch.");
        let task = tokio::spawn(async move {
            shipper
                .deliver(body, batch_id, lines, &stats, shutdown)
                .await
        });
        InFlight {
            task,
            marks,
            batch_id,
        }
    }

    /// Encodes the front of the batch and starts sending it. A batch too
    /// big once encoded is halved until it fits.
    fn start_send(
        &mut self,
        building: &mut Building,
        batch_id: u64,
        now: Instant,
    ) -> Option<InFlight> {
        let mut n = building.len();
        while n > 0 {
            let (batch, marks) = self.take_batch(building, n, batch_id);
            match encode_batch(&batch, &Limits::V1) {
                Ok(body) => {
                    let lines = marks.len();
                    return Some(self.deliver(body, marks, batch_id, lines));
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
                    tracing::error!(error = %e, path = %batch.records.first().map_or("", |r| r.path.as_str()), "Cannot encode a line for the collector; it is skipped.");
                    if let Err(e) = self.files.commit(&marks, now) {
                        tracing::error!(error = %e, "Cannot save checkpoints; will try again.");
                    }
                    return None;
                }
            }
        }
        None
    }

    fn finish_send(
        &mut self,
        f: InFlight,
        done: Result<Option<BatchAck>, tokio::task::JoinError>,
        building: &mut Building,
    ) {
        match done {
            Ok(Some(ack)) => {
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
            Ok(None) => {} // abandoned at shutdown
            Err(e) => {
                // The send task died (a bug): nothing was acknowledged, so
                // its files are read again from their acknowledged offsets.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(batch_id = f.batch_id, error = %e, "Send task failed; its lines are read again.");
                self.read_again(&f.marks, building);
            }
        }
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
fn restore(building: &mut Building, batch: Batch, marks: Vec<Mark>) {
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
