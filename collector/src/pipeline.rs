//! The detection worker: reads the journal in order, decodes each line, runs
//! the rules, and commits the alerts, the cursor and the rule state in one
//! transaction.
//!
//! That single transaction is the exactly-once promise: after a crash the
//! worker resumes at the committed cursor with the committed state, so the
//! same entries produce the same alerts and none is stored twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use soc_rules::{Detection, Engine, EngineState, EngineStats, Event, Input};
use tokio::sync::watch;

use crate::app::{App, now_ms};
use crate::db::{DbError, meta_keys};
use crate::journal::{JournalEntry, SegmentCache};
use crate::model::{Alert, AlertStatus, Evidence, HistoryEntry};

/// How long one detection step may read before it commits.
const STEP_BUDGET: Duration = Duration::from_millis(250);
/// Most journal entries one step processes before it commits.
const STEP_MAX_ENTRIES: usize = 200_000;
/// Most alerts one step holds before it commits.
const STEP_MAX_ALERTS: usize = 10_000;

/// The worker's committed position.
pub struct Detector {
    app: Arc<App>,
    cursor: u64,
    next_alert_id: u64,
    state: EngineState,
    /// Restores seen ([`App::detection_gate`]); a newer count means the
    /// committed position was replaced and must be read again.
    generation: u64,
}

fn load_state(app: &App) -> Result<EngineState, DbError> {
    match app.db.meta.get(meta_keys::ENGINE_STATE)? {
        None => Ok(EngineState::default()),
        Some(v) => match EngineState::from_bytes(&v) {
            Ok(state) => Ok(state),
            Err(e @ soc_rules::StateFormatError::Version { .. }) => {
                // An older format (format 1 was JSON and held no state):
                // start the open windows afresh rather than refuse to run.
                tracing::warn!(error = %e, "rule state of another format discarded");
                Ok(EngineState::default())
            }
            Err(e) => Err(DbError::Corrupt {
                key: "meta/detection.state".into(),
                reason: e.to_string(),
            }),
        },
    }
}

impl Detector {
    /// Resumes from the committed cursor and state.
    pub fn open(app: Arc<App>) -> Result<Detector, DbError> {
        let generation = *app.hold_detection();
        let mut d = Detector {
            app,
            cursor: 0,
            next_alert_id: 1,
            state: EngineState::default(),
            generation,
        };
        d.load()?;
        Ok(d)
    }

    /// Reads the committed position.
    fn load(&mut self) -> Result<(), DbError> {
        let app = &self.app;
        self.cursor = app.db.meta_u64(meta_keys::DETECTION_CURSOR)?;
        self.next_alert_id = app.db.meta_u64(meta_keys::NEXT_ALERT_ID)?.max(1);
        self.state = load_state(app)?;
        app.detection_cursor.store(self.cursor, Ordering::Release);
        publish_groups(app, &self.state);
        Ok(())
    }

    /// Processes journal entries for up to 250 ms (`STEP_BUDGET`) and commits
    /// them. Returns how many. After an error the in-memory rule state may
    /// be ahead of what was committed: drop the detector and open a new one.
    pub fn step(&mut self) -> Result<usize, DbError> {
        let app = self.app.clone();
        // Backups and restores wait for the step to finish.
        let gate = app.hold_detection();
        if *gate != self.generation {
            self.load()?;
            self.generation = *gate;
            tracing::info!(
                cursor = self.cursor,
                next_alert_id = self.next_alert_id,
                "detection continues from a restored position"
            );
        }
        // One step commits once. Under load it reads batch after batch
        // until STEP_BUDGET has passed, so the cost of writing the rule
        // state (which grows with open windows) is paid a few times a
        // second, not once per batch; a quiet journal is committed at once.
        let started = Instant::now();
        let content = app.content();
        // Alerts' earlier evidence lines are read from the journal through
        // this, so a segment is decoded once for all of them, not once per
        // line.
        let mut segments = SegmentCache::default();
        let engine = Engine::with_options(content.rules.clone(), app.engine_options());
        // The state is changed in place: a step that fails is not
        // committed, and the caller then opens a new detector from the
        // committed position. Only the counters are kept to count growth.
        let stats_before = self.state.stats.clone();
        let mut alerts = Vec::new();
        let mut next_id = self.next_alert_id;
        let mut newest_received = 0i64;
        let mut last_seq = self.cursor;
        let mut processed = 0usize;
        let now = now_ms();
        loop {
            let entries = app
                .journal
                .read_after(last_seq, app.settings.detection_batch_size)?;
            let Some(&(last, _)) = entries.last() else {
                break;
            };
            last_seq = last;
            processed += entries.len();
            for (seq, entry) in &entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(reason) => {
                        app.metrics
                            .events_failed
                            .with_label_values(&["journal", "corrupt_entry"])
                            .inc();
                        tracing::error!(seq, %reason, "skipped a journal entry that cannot be read");
                        continue;
                    }
                };
                newest_received = newest_received.max(entry.received_ms);
                let event = decode(&content.decoders, *seq, entry);
                count_decoded(&app, &event);
                for mut d in engine.process(&mut self.state, &event) {
                    let window = d.window.take();
                    alerts.push(self.alert(next_id, d, &event, entry, now, &mut segments));
                    // The window's repeats are counted on this alert.
                    if let Some(w) = window {
                        engine.tag_window(&mut self.state, &w, next_id);
                    }
                    next_id += 1;
                }
            }
            if entries.len() < app.settings.detection_batch_size
                || started.elapsed() >= STEP_BUDGET
                || processed >= STEP_MAX_ENTRIES
                || alerts.len() >= STEP_MAX_ALERTS
            {
                break;
            }
        }
        if processed == 0 {
            return Ok(0);
        }
        // Repeats for the alerts of this step are counted before they are
        // stored; those for earlier alerts, in the transaction.
        let first_id = self.next_alert_id;
        let mut repeats = self.state.take_repeats();
        repeats.retain(|r| match r.tag.checked_sub(first_id) {
            Some(i) if (i as usize) < alerts.len() => {
                crate::alerts::note_repeats(&mut alerts[i as usize], r);
                false
            }
            _ => true,
        });
        let state_bytes = self.state.to_bytes();
        (&app.db.alerts, &app.db.meta, app.alerts.index_tree()).transaction(|(a, m, ix)| {
            for alert in &alerts {
                crate::alerts::insert_in(a, ix, alert)?;
            }
            for r in &repeats {
                crate::alerts::note_repeats_in(a, r)?;
            }
            m.insert(meta_keys::DETECTION_CURSOR, &last_seq.to_be_bytes())?;
            m.insert(meta_keys::NEXT_ALERT_ID, &next_id.to_be_bytes())?;
            m.insert(meta_keys::ENGINE_STATE, state_bytes.as_slice())?;
            Ok::<_, ConflictableTransactionError<String>>(())
        })?;
        // Committed: only now does the in-memory position move.
        self.cursor = last_seq;
        self.next_alert_id = next_id;
        count_state(&app, &stats_before, &self.state);
        app.detection_cursor.store(last_seq, Ordering::Release);

        let m = &app.metrics;
        for a in &alerts {
            m.alerts.with_label_values(&[a.severity.as_str()]).inc();
            m.alerts_by_rule
                .with_label_values(&[m.bounded(&a.rule_id)])
                .inc();
            m.alerts_by_host
                .with_label_values(&[m.bounded(&a.host)])
                .inc();
            m.alerts_open
                .with_label_values(&[a.severity.as_str()])
                .inc();
            tracing::info!(alert = a.id, rule = %a.rule_id, severity = a.severity.as_str(), host = %a.host, "alert raised");
        }
        m.detection_step_seconds
            .observe(started.elapsed().as_secs_f64());
        m.detection_cursor.set(last_seq as i64);
        // How far behind the newest received line detection is, in seconds of receive time.
        let newest = app.newest_received_ms.load(Ordering::Acquire);
        let behind = app.journal.last_seq_now().saturating_sub(last_seq);
        let lag = if behind == 0 {
            0
        } else {
            (newest - newest_received).max(0) / 1000
        };
        m.ingest_lag_seconds.set(lag);
        Ok(processed)
    }

    fn alert(
        &self,
        id: u64,
        d: Detection,
        event: &Event,
        entry: &JournalEntry,
        now: i64,
        segments: &mut SegmentCache,
    ) -> Alert {
        let max = self.app.settings.max_evidence;
        let mut evidence = Vec::new();
        // The alert is about the line that completed it, its last evidence:
        // not always the line being evaluated (a silence is noticed on
        // another source's line; with a lateness, a held-back line is
        // evaluated when a later one arrives).
        let last = d.evidence.last().copied();
        let mut subject = None;
        for seq in d.evidence.iter().rev().take(max).rev() {
            if *seq == event.id {
                evidence.push(evidence_of(*seq, entry, event));
                if last == Some(*seq) {
                    subject = Some(subject_of(entry, event));
                }
            } else if let Ok(Some(e)) = self.app.journal.get_cached(*seq, segments) {
                let ev = decode(&self.app.content().decoders, *seq, &e);
                evidence.push(evidence_of(*seq, &e, &ev));
                if last == Some(*seq) {
                    subject = Some(subject_of(&e, &ev));
                }
            }
        }
        if evidence.is_empty() {
            evidence.push(evidence_of(event.id, entry, event));
        }
        let (host, agent, labels) = subject.unwrap_or_else(|| subject_of(entry, event));
        Alert {
            id,
            rule_id: d.rule_id.to_string(),
            rule_title: d.rule_title.to_string(),
            rule_version: d.rule_version,
            severity: d.severity,
            tags: d.tags.to_vec(),
            summary: d.summary,
            group_key: d.group_key.to_string(),
            status: AlertStatus::Open,
            created_ms: now,
            event_time_ms: d.timestamp_ms,
            host,
            agent,
            labels,
            evidence_omitted: (d.evidence.len() as u64).saturating_sub(evidence.len() as u64),
            suppressed: 0,
            last_repeat_ms: None,
            evidence,
            history: vec![HistoryEntry {
                at_ms: now,
                by: "soc".into(),
                action: "created".into(),
                // Repeats of a window opened before the collector counted
                // them on its alert (a rule state saved by an older
                // version) come with the next detection.
                note: (d.suppressed > 0).then(|| {
                    format!(
                        "{} repeats suppressed since the previous alert for this key",
                        d.suppressed
                    )
                }),
                detail: None,
            }],
            assignee: None,
            close_reason: None,
            closed_ms: None,
        }
    }
}

fn decode(decoders: &soc_rules::Decoders, seq: u64, e: &JournalEntry) -> Event {
    let mut ev = decoders.decode(&Input {
        raw: &e.raw,
        source_type: &e.source_type,
        agent: &e.agent,
        source: &e.source,
        path: &e.path,
        received_ms: e.read_time_ms,
    });
    ev.id = seq;
    ev
}

/// Tells the API the groups each rule holds open (`socctl rules list`): the
/// state as loaded (a restart, a restore) and after each step that changed
/// them (a new map only then: most steps of a quiet collector change none).
fn publish_groups(app: &App, state: &EngineState) {
    let published = app.rule_groups();
    let groups = state.groups_by_rule();
    if published.len() == groups.len()
        && groups
            .iter()
            .all(|(rule, n)| published.get(*rule) == Some(n))
    {
        return;
    }
    app.set_rule_groups(
        groups
            .into_iter()
            .map(|(rule, n)| (rule.to_owned(), n))
            .collect(),
    );
}

/// Turns the growth of the engine's counters over one step into metrics.
fn count_state(app: &App, before: &EngineStats, after: &EngineState) {
    let m = &app.metrics;
    m.rule_state_entries.set(after.group_count() as i64);
    publish_groups(app, after);
    for (rule, n) in &after.stats.evicted {
        let was = before.evicted.get(rule).copied().unwrap_or(0);
        if *n > was {
            m.rule_state_evicted
                .with_label_values(&[m.bounded(rule)])
                .inc_by(n - was);
        }
    }
    for (rule, n) in &after.stats.suppressed {
        let was = before.suppressed.get(rule).copied().unwrap_or(0);
        if *n > was {
            m.alerts_suppressed
                .with_label_values(&[m.bounded(rule)])
                .inc_by(n - was);
        }
    }
    m.late_events
        .inc_by(after.stats.late_events.saturating_sub(before.late_events));
    m.held_back.set(after.pending.len() as i64);
    m.held_back_overflow.inc_by(
        after
            .stats
            .pending_overflow
            .saturating_sub(before.pending_overflow),
    );
}

fn count_decoded(app: &App, event: &Event) {
    let m = &app.metrics;
    if event.fields.contains_key("decode.error") {
        let decoder = event
            .fields
            .get("decoder.name")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        // `decode.reason` takes a handful of fixed values (no_match, malformed, conversion).
        let reason = event
            .fields
            .get("decode.reason")
            .and_then(|v| v.as_str())
            .unwrap_or("decode_error");
        m.events_failed
            .with_label_values(&[m.bounded(decoder), m.bounded(reason)])
            .inc();
    }
    let module = event
        .fields
        .get("event.module")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    m.events_decoded
        .with_label_values(&[m.bounded(module)])
        .inc();
}

/// The host (its `host.name`, else the agent), agent and labels an alert
/// raised by the line `e`, decoded as `ev`, is filed under.
fn subject_of(e: &JournalEntry, ev: &Event) -> (String, String, BTreeMap<String, String>) {
    let host = ev
        .fields
        .get("host.name")
        .and_then(|v| v.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or(&e.agent)
        .to_owned();
    (host, e.agent.clone(), e.labels.clone())
}

fn evidence_of(seq: u64, e: &JournalEntry, ev: &Event) -> Evidence {
    use base64::Engine as _;
    let line_b64 = std::str::from_utf8(&e.raw)
        .is_err()
        .then(|| base64::engine::general_purpose::STANDARD.encode(&e.raw));
    Evidence {
        seq,
        agent: e.agent.clone(),
        source: e.source.clone(),
        path: e.path.clone(),
        offset: e.offset,
        line: String::from_utf8_lossy(&e.raw).into_owned(),
        line_b64,
        fields: ev.fields.clone(),
    }
}

/// Runs the detector until `shutdown`, waking on every append and at least
/// once a second.
/// One detection step asked of the worker thread, and where its answer goes.
type StepJob = (
    Detector,
    tokio::sync::oneshot::Sender<(Detector, Result<usize, DbError>)>,
);

/// The thread detection steps run on: its own, so that its priority can be
/// lowered (`detection.nice`) without touching the threads that accept and
/// journal agents' lines.
fn spawn_worker(nice: i32) -> std::io::Result<std::sync::mpsc::Sender<StepJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<StepJob>();
    std::thread::Builder::new()
        .name("soc-detection".into())
        .spawn(move || {
            lower_priority(nice);
            while let Ok((mut d, reply)) = rx.recv() {
                let r = d.step();
                if reply.send((d, r)).is_err() {
                    return;
                }
            }
        })?;
    Ok(tx)
}

/// Sets the calling thread's niceness (Linux: per thread).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // On Linux a thread id names one thread for setpriority.
    let tid = rustix::thread::gettid();
    let rc = rustix::process::setpriority_process(Some(tid), nice);
    if let Err(e) = rc {
        tracing::warn!(nice, error = %e, "cannot lower the detection thread's priority; it runs at the collector's");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut det = Some(Detector::open(app.clone())?);
    let worker = spawn_worker(app.settings.detection_nice)?;
    let appended = app.journal.appended();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let notified = appended.notified();
        let Some(d) = det.take() else {
            anyhow::bail!("detector lost after a panic");
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if worker.send((d, reply)).is_err() {
            anyhow::bail!("the detection thread is gone");
        }
        let Ok((d, result)) = answer.await else {
            anyhow::bail!("the detection thread stopped (panicked) during a step");
        };
        det = Some(d);
        let last = app.journal.last_seq().await;
        app.metrics.journal_last_seq.set(last as i64);
        app.metrics
            .detection_lag
            .set(last.saturating_sub(app.cursor()) as i64);
        match result {
            Ok(0) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "detection step failed; retrying from the committed cursor");
                det = Some(Detector::open(app.clone())?);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
