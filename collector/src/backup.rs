//! Backups of the detection state: the rule state (open thresholds,
//! sequences, suppressions), the detection cursor, the next alert id and the
//! alert store with its index, in one checksummed, versioned file.
//!
//! # File format
//!
//! ```text
//! magic  "SOCBKUP\n"                      8 bytes
//! format u32 LE (FORMAT)                  4 bytes
//! body   zstd stream of records           ...
//! sha256 of every byte before it          32 bytes
//! record = tag u8 | length u32 LE | bytes
//!   'H' the header (postcard [`Header`]), first
//!   'A' one alert: id u64 BE | the stored JSON
//!   'I' one index key of the alert before it (all of them, in order)
//!   'E' the end (postcard [`Counts`]), last
//! ```
//!
//! A reader checks the magic and format first (a file of another format is
//! refused by name, not misread), then the checksum, then every record: the
//! engine state must decode in this build's format, every alert must decode
//! and be followed by exactly its index keys, the counts must match and the
//! next alert id must exceed every id. Only a file that passes all of it is
//! restored, in one transaction.
//!
//! # Consistency
//!
//! A backup holds the detection worker between two steps
//! ([`App::hold_detection`]) while it reads the cursor, the state and the
//! alerts, so no alert raised after the cursor is in it and none before is
//! missing. Responders' changes go on meanwhile: each alert is read whole,
//! and its index keys are derived from the version read, so the two always
//! agree.
//!
//! # Restore
//!
//! The journal is not in a backup. After a restore the worker continues from
//! the restored cursor: entries after it that this collector's journal still
//! holds are processed again (their alerts get new ids), and on another
//! collector the journal's numbering is moved past the cursor so new lines
//! are processed. The next alert id is the highest of the backup's, this
//! collector's and every stored id plus one, so no id is ever handed out
//! twice.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sled::Transactional as _;
use sled::transaction::ConflictableTransactionError;
use tokio::sync::watch;

use crate::app::{App, now_ms};
use crate::db::{DbError, be_u64, meta_keys};
use crate::model::Alert;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"SOCBKUP\n";
/// The file format this build writes and reads.
pub const FORMAT: u32 = 1;
/// File names are `soc-backup-<UTC time>-<reason>.socbak`.
const PREFIX: &str = "soc-backup-";
const SUFFIX: &str = ".socbak";
/// Largest record; a longer length field means a damaged file.
const MAX_RECORD: u32 = 1 << 30;
const ENVELOPE: usize = MAGIC.len() + 4 + 32;

/// Why a backup could not be written, read or restored. Every variant names
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a soc backup (it does not start with the backup marker)")]
    NotABackup { path: String },
    #[error(
        "{path} is a backup of format {found}; this collector reads format {FORMAT}: use a collector of the version that wrote it"
    )]
    Version { path: String, found: u32 },
    #[error(
        "{path} is corrupt: its checksum does not match its contents (damaged or truncated copy)"
    )]
    Checksum { path: String },
    #[error("{path} is corrupt: {reason}")]
    Malformed { path: String, reason: String },
    #[error(
        "{path} holds rule state of format {found}; this collector reads formats {} to {}",
        soc_rules::ENGINE_STATE_OLDEST_FORMAT,
        soc_rules::ENGINE_STATE_FORMAT
    )]
    StateVersion { path: String, found: u32 },
    #[error("backup: {0}")]
    Db(#[from] DbError),
}

impl From<sled::Error> for BackupError {
    fn from(e: sled::Error) -> Self {
        BackupError::Db(DbError::Sled(e))
    }
}

impl BackupError {
    /// True when the file itself was refused (as opposed to a failure of
    /// this collector's disk or database).
    pub fn is_bad_file(&self) -> bool {
        !matches!(self, BackupError::Io { .. } | BackupError::Db(_))
    }
}

/// What started a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Scheduled,
    Shutdown,
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Scheduled => "scheduled",
            Reason::Shutdown => "shutdown",
            Reason::Manual => "manual",
        }
    }
}

/// The first record: where detection stood.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Wall-clock time of the backup (ms since epoch).
    pub created_ms: i64,
    /// `scheduled`, `shutdown` or `manual`.
    pub reason: String,
    /// Version of the collector that wrote it.
    pub collector_version: String,
    /// The journal the cursor counts in ([`meta_keys::JOURNAL_ID`]).
    pub journal_id: String,
    /// Last journal sequence processed.
    pub cursor: u64,
    /// Next alert id to hand out.
    pub next_alert_id: u64,
    /// `soc_rules::EngineState::to_bytes`.
    pub engine_state: Vec<u8>,
}

/// The last record: how many of each came before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub alerts: u64,
    pub index_keys: u64,
}

/// One backup file, as `socctl backup list` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupInfo {
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub created_ms: i64,
    pub reason: String,
    pub cursor: u64,
    pub next_alert_id: u64,
    /// Filled in when the whole file was read (create, verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<u64>,
    /// SHA-256 of the file (hex), when the whole file was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A backup read and verified in full.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub header: Header,
    pub state: soc_rules::EngineState,
    /// (id, stored JSON, index keys), by id.
    pub alerts: Vec<(u64, Vec<u8>, Vec<Vec<u8>>)>,
    pub sha256: String,
}

impl Snapshot {
    /// Highest alert id it holds (0 when none).
    pub fn max_alert_id(&self) -> u64 {
        self.alerts.last().map_or(0, |a| a.0)
    }
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestoreView {
    /// When the backup was taken.
    pub created_ms: i64,
    /// The detection cursor now in force.
    pub cursor: u64,
    /// The next alert id now in force.
    pub next_alert_id: u64,
    /// Alerts now stored.
    pub alerts: u64,
    /// Whether the backup came from this collector's journal.
    pub same_journal: bool,
    /// Journal entries after the cursor that will be processed again.
    pub reprocess: u64,
    /// SHA-256 of the restored file.
    pub sha256: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This database's journal id, created on first use.
pub fn journal_id(app: &App) -> Result<String, DbError> {
    if let Some(v) = app.db.meta.get(meta_keys::JOURNAL_ID)? {
        return Ok(String::from_utf8_lossy(&v).into_owned());
    }
    let id = hex(&rand::random::<[u8; 16]>());
    // Two first users race: the first one wins, both read it back.
    let _ = app.db.meta.compare_and_swap(
        meta_keys::JOURNAL_ID,
        None as Option<&[u8]>,
        Some(id.as_bytes()),
    )?;
    let v = app.db.meta.get(meta_keys::JOURNAL_ID)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// A writer that hashes what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn record(w: &mut impl Write, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| std::io::Error::other(format!("a record of {len} bytes is too large")))?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// Writes a backup of `app` into the configured folder, then deletes the
/// oldest beyond `backup.keep`, and sets the backup metrics.
pub fn create(app: &App, reason: Reason) -> Result<BackupInfo, BackupError> {
    let dir = &app.settings.backup.dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let created_ms = now_ms();
    let stamp = chrono::DateTime::from_timestamp_millis(created_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ");
    let name = format!("{PREFIX}{stamp}-{}{SUFFIX}", reason.as_str());
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = write_file(app, &tmp, created_ms, reason);
    let (header, counts, sha) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::error!(error = %e, "backup failed");
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let size = std::fs::metadata(&path).map_err(io(&path))?.len();
    let m = &app.metrics;
    m.backup_last_success.set(created_ms / 1000);
    m.backup_size_bytes.set(size as i64);
    tracing::info!(
        file = %path.display(),
        reason = reason.as_str(),
        size,
        cursor = header.cursor,
        alerts = counts.alerts,
        "backup written"
    );
    if let Err(e) = prune(dir, app.settings.backup.keep) {
        tracing::warn!(error = %e, "could not delete old backups");
    }
    Ok(BackupInfo {
        name,
        path: path.display().to_string(),
        size_bytes: size,
        created_ms,
        reason: reason.as_str().to_owned(),
        cursor: header.cursor,
        next_alert_id: header.next_alert_id,
        alerts: Some(counts.alerts),
        sha256: Some(sha),
    })
}

fn write_file(
    app: &App,
    tmp: &Path,
    created_ms: i64,
    reason: Reason,
) -> Result<(Header, Counts, String), BackupError> {
    let journal_id = journal_id(app)?;
    let file = std::fs::File::create(tmp).map_err(io(tmp))?;
    let mut out = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
    };
    out.write_all(MAGIC).map_err(io(tmp))?;
    out.write_all(&FORMAT.to_le_bytes()).map_err(io(tmp))?;
    let mut z = zstd::Encoder::new(out, 3).map_err(io(tmp))?;
    let mut counts = Counts::default();
    // Between two detection steps from here to the end of the alerts.
    let gate = app.hold_detection();
    let header = Header {
        created_ms,
        reason: reason.as_str().to_owned(),
        collector_version: env!("CARGO_PKG_VERSION").to_owned(),
        journal_id,
        cursor: app.db.meta_u64(meta_keys::DETECTION_CURSOR)?,
        next_alert_id: app.db.meta_u64(meta_keys::NEXT_ALERT_ID)?.max(1),
        engine_state: app
            .db
            .meta
            .get(meta_keys::ENGINE_STATE)?
            .map(|v| v.to_vec())
            .unwrap_or_else(|| soc_rules::EngineState::default().to_bytes()),
    };
    let bytes = postcard::to_stdvec(&header).map_err(|e| BackupError::Malformed {
        path: tmp.display().to_string(),
        reason: format!("header: {e}"),
    })?;
    record(&mut z, b'H', &[&bytes]).map_err(io(tmp))?;
    for item in app.db.alerts.iter() {
        let (k, v) = item.map_err(DbError::from)?;
        let id = be_u64(&k).ok_or_else(|| DbError::Corrupt {
            key: "alerts key".into(),
            reason: "not 8 bytes".into(),
        })?;
        let alert: Alert = serde_json::from_slice(&v).map_err(|e| DbError::Corrupt {
            key: format!("alerts/{id}"),
            reason: e.to_string(),
        })?;
        record(&mut z, b'A', &[k.as_ref(), v.as_ref()]).map_err(io(tmp))?;
        counts.alerts += 1;
        for key in crate::alert_index::keys(&alert) {
            record(&mut z, b'I', &[&key]).map_err(io(tmp))?;
            counts.index_keys += 1;
        }
    }
    drop(gate);
    let end = postcard::to_stdvec(&counts).map_err(|e| BackupError::Malformed {
        path: tmp.display().to_string(),
        reason: format!("counts: {e}"),
    })?;
    record(&mut z, b'E', &[&end]).map_err(io(tmp))?;
    let out = z.finish().map_err(io(tmp))?;
    let Hashing { inner, hash } = out;
    let digest = hash.finalize();
    let mut file = inner.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    file.write_all(&digest).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))?;
    let mut whole = Sha256::new();
    // The file's own hash (what `sha256sum` prints) for the listing.
    let mut f = std::fs::File::open(tmp).map_err(io(tmp))?;
    std::io::copy(&mut f, &mut whole).map_err(io(tmp))?;
    Ok((header, counts, hex(&whole.finalize())))
}

/// Deletes the oldest backups in `dir` beyond `keep`.
pub fn prune(dir: &Path, keep: usize) -> Result<usize, BackupError> {
    let mut names = backup_names(dir)?;
    let excess = names.len().saturating_sub(keep);
    let mut removed = 0;
    for name in names.drain(..excess) {
        let p = dir.join(&name);
        std::fs::remove_file(&p).map_err(io(&p))?;
        tracing::info!(file = %p.display(), "old backup deleted");
        removed += 1;
    }
    Ok(removed)
}

/// Backup file names in `dir`, oldest first (the names sort by time).
fn backup_names(dir: &Path) -> Result<Vec<String>, BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names = Vec::new();
    for item in rd {
        let name = item.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            names.push(name.into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The backups in the configured folder, newest first, from their headers.
/// A file whose header cannot be read is listed with `reason` saying so.
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>, BackupError> {
    let mut out = Vec::new();
    for name in backup_names(dir)?.into_iter().rev() {
        let path = dir.join(&name);
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        let mut info = BackupInfo {
            name,
            path: path.display().to_string(),
            size_bytes: size,
            created_ms: 0,
            reason: String::new(),
            cursor: 0,
            next_alert_id: 0,
            alerts: None,
            sha256: None,
        };
        match read_header(&path) {
            Ok(h) => {
                info.created_ms = h.created_ms;
                info.reason = h.reason;
                info.cursor = h.cursor;
                info.next_alert_id = h.next_alert_id;
            }
            Err(e) => info.reason = format!("unreadable: {e}"),
        }
        out.push(info);
    }
    Ok(out)
}

/// Reads only the header of a backup file (no checksum: for listings).
pub fn read_header(path: &Path) -> Result<Header, BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let name = path.display().to_string();
    let mut head = [0u8; 12];
    f.read_exact(&mut head)
        .map_err(|_| BackupError::NotABackup { path: name.clone() })?;
    check_head(&name, &head)?;
    let mut z = zstd::Decoder::new(f).map_err(io(path))?;
    match next_record(&name, &mut z)? {
        Some((b'H', bytes)) => decode_header(&name, &bytes),
        _ => Err(malformed(&name, "the first record is not the header")),
    }
}

fn malformed(path: &str, reason: impl Into<String>) -> BackupError {
    BackupError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn check_head(path: &str, head: &[u8]) -> Result<(), BackupError> {
    if head.len() < 12 || &head[..8] != MAGIC {
        return Err(BackupError::NotABackup {
            path: path.to_owned(),
        });
    }
    let mut f = [0u8; 4];
    f.copy_from_slice(&head[8..12]);
    let found = u32::from_le_bytes(f);
    if found != FORMAT {
        return Err(BackupError::Version {
            path: path.to_owned(),
            found,
        });
    }
    Ok(())
}

fn decode_header(path: &str, bytes: &[u8]) -> Result<Header, BackupError> {
    postcard::from_bytes(bytes).map_err(|e| malformed(path, format!("header: {e}")))
}

/// The next record, or `None` at the end of the stream.
fn next_record(path: &str, r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, BackupError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(malformed(path, "a record is cut short")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(malformed(path, format!("decompressing: {e}"))),
        }
    }
    let mut l = [0u8; 4];
    l.copy_from_slice(&head[1..5]);
    let len = u32::from_le_bytes(l);
    if len > MAX_RECORD {
        return Err(malformed(path, format!("a record claims {len} bytes")));
    }
    // Read as the bytes come, not into a buffer of the claimed size: a
    // short stream must not cost what its length field claims.
    let mut bytes = Vec::new();
    Read::by_ref(r)
        .take(u64::from(len))
        .read_to_end(&mut bytes)
        .map_err(|e| malformed(path, format!("decompressing: {e}")))?;
    if bytes.len() != len as usize {
        return Err(malformed(
            path,
            format!("a record is cut short: {} of its {len} bytes", bytes.len()),
        ));
    }
    Ok(Some((head[0], bytes)))
}

/// Reads and verifies a whole backup held in memory; `name` is used in
/// messages. Nothing is changed anywhere.
pub fn verify_bytes(name: &str, bytes: &[u8]) -> Result<Snapshot, BackupError> {
    if bytes.len() < ENVELOPE {
        check_head(name, bytes)?;
        return Err(malformed(name, "the file is too short"));
    }
    check_head(name, &bytes[..12])?;
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != trailer {
        return Err(BackupError::Checksum {
            path: name.to_owned(),
        });
    }
    let mut z = zstd::Decoder::new(&body[12..]).map_err(|e| malformed(name, e.to_string()))?;
    let header = match next_record(name, &mut z)? {
        Some((b'H', b)) => decode_header(name, &b)?,
        _ => return Err(malformed(name, "the first record is not the header")),
    };
    let state = match soc_rules::EngineState::from_bytes(&header.engine_state) {
        Ok(s) => s,
        Err(soc_rules::StateFormatError::Version { found }) => {
            return Err(BackupError::StateVersion {
                path: name.to_owned(),
                found,
            });
        }
        Err(e) => return Err(malformed(name, format!("rule state: {e}"))),
    };
    let mut alerts: Vec<(u64, Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    let mut index_keys = 0u64;
    // The keys the current alert must be followed by, in order.
    let mut expected: std::collections::VecDeque<Vec<u8>> = Default::default();
    let counts = loop {
        let Some((tag, b)) = next_record(name, &mut z)? else {
            return Err(malformed(name, "the end record is missing"));
        };
        if tag != b'I' && !expected.is_empty() {
            return Err(malformed(
                name,
                format!(
                    "alert {} lacks {} of its index keys",
                    alerts.last().map_or(0, |a| a.0),
                    expected.len()
                ),
            ));
        }
        match tag {
            b'A' => {
                let id = b
                    .get(..8)
                    .and_then(be_u64)
                    .ok_or_else(|| malformed(name, "an alert record is shorter than its id"))?;
                let json = b[8..].to_vec();
                let a: Alert = serde_json::from_slice(&json)
                    .map_err(|e| malformed(name, format!("alert {id}: {e}")))?;
                if a.id != id {
                    return Err(malformed(
                        name,
                        format!("alert {} stored under id {id}", a.id),
                    ));
                }
                if alerts.last().is_some_and(|l| l.0 >= id) {
                    return Err(malformed(name, format!("alert {id} is out of order")));
                }
                expected = crate::alert_index::keys(&a).into();
                alerts.push((id, json, Vec::new()));
            }
            b'I' => {
                let Some(want) = expected.pop_front() else {
                    return Err(malformed(name, "an index key belongs to no alert"));
                };
                if want != b {
                    return Err(malformed(
                        name,
                        format!(
                            "an index key of alert {} does not match the alert",
                            alerts.last().map_or(0, |a| a.0)
                        ),
                    ));
                }
                if let Some(last) = alerts.last_mut() {
                    last.2.push(b);
                }
                index_keys += 1;
            }
            b'E' => {
                break postcard::from_bytes::<Counts>(&b)
                    .map_err(|e| malformed(name, format!("end record: {e}")))?;
            }
            b'H' => return Err(malformed(name, "a second header")),
            other => return Err(malformed(name, format!("unknown record type {other}"))),
        }
    };
    if next_record(name, &mut z)?.is_some() {
        return Err(malformed(name, "records after the end record"));
    }
    if counts.alerts != alerts.len() as u64 || counts.index_keys != index_keys {
        return Err(malformed(
            name,
            format!(
                "it says {} alerts and {} index keys but holds {} and {index_keys}",
                counts.alerts,
                counts.index_keys,
                alerts.len()
            ),
        ));
    }
    let snap = Snapshot {
        header,
        state,
        alerts,
        sha256: hex(&Sha256::digest(bytes)),
    };
    if snap.header.next_alert_id <= snap.max_alert_id() {
        return Err(malformed(
            name,
            format!(
                "its next alert id {} is not above its alert {}",
                snap.header.next_alert_id,
                snap.max_alert_id()
            ),
        ));
    }
    Ok(snap)
}

/// Reads and verifies a backup file.
pub fn verify_file(path: &Path) -> Result<Snapshot, BackupError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    verify_bytes(&path.display().to_string(), &bytes)
}

/// The summary of a verified snapshot.
pub fn info_of(name: &str, size: u64, s: &Snapshot) -> BackupInfo {
    BackupInfo {
        name: Path::new(name)
            .file_name()
            .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned()),
        path: name.to_owned(),
        size_bytes: size,
        created_ms: s.header.created_ms,
        reason: s.header.reason.clone(),
        cursor: s.header.cursor,
        next_alert_id: s.header.next_alert_id,
        alerts: Some(s.alerts.len() as u64),
        sha256: Some(s.sha256.clone()),
    }
}

/// Replaces the rule state, cursor, next alert id and alert store with a
/// verified snapshot, in one transaction, between two detection steps. The
/// worker reloads its position before its next step.
pub fn restore(app: &App, snap: &Snapshot) -> Result<RestoreView, BackupError> {
    let same_journal = journal_id(app)? == snap.header.journal_id;
    let mut gate = app.hold_detection();
    let _alerts = app.alerts.exclusive();
    let old_alerts: Vec<sled::IVec> = app
        .db
        .alerts
        .iter()
        .keys()
        .collect::<Result<_, _>>()
        .map_err(DbError::from)?;
    let index = app.alerts.index_tree();
    let old_index: Vec<sled::IVec> = index
        .iter()
        .keys()
        .collect::<Result<_, _>>()
        .map_err(DbError::from)?;
    let current_next = app.db.meta_u64(meta_keys::NEXT_ALERT_ID)?;
    let next_alert_id = snap
        .header
        .next_alert_id
        .max(current_next)
        .max(snap.max_alert_id() + 1);
    let cursor = snap.header.cursor;
    let state_bytes = snap.state.to_bytes();
    let result = app.journal.with_next_seq_blocking(|journal_next| {
        let floor = journal_next.max(cursor + 1);
        let r = (&app.db.alerts, index, &app.db.meta).transaction(|(a, ix, m)| {
            for k in &old_alerts {
                a.remove(k)?;
            }
            for k in &old_index {
                ix.remove(k)?;
            }
            for (id, json, keys) in &snap.alerts {
                a.insert(&id.to_be_bytes(), json.as_slice())?;
                for k in keys {
                    ix.insert(k.as_slice(), &[][..])?;
                }
            }
            m.insert(meta_keys::DETECTION_CURSOR, &cursor.to_be_bytes())?;
            m.insert(meta_keys::NEXT_ALERT_ID, &next_alert_id.to_be_bytes())?;
            m.insert(meta_keys::ENGINE_STATE, state_bytes.as_slice())?;
            m.insert(meta_keys::JOURNAL_NEXT_FLOOR, &floor.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<String>>(())
        });
        match r {
            Ok(()) => (floor, Ok(journal_next)),
            Err(e) => (journal_next, Err(DbError::from(e))),
        }
    });
    let journal_next = result?;
    app.db.db.flush().map_err(DbError::from)?;
    *gate += 1;
    app.detection_cursor
        .store(cursor, std::sync::atomic::Ordering::Release);
    drop(gate);
    let reprocess = journal_next.saturating_sub(cursor + 1);
    tracing::warn!(
        cursor,
        next_alert_id,
        alerts = snap.alerts.len(),
        same_journal,
        reprocess,
        "backup restored"
    );
    Ok(RestoreView {
        created_ms: snap.header.created_ms,
        cursor,
        next_alert_id,
        alerts: snap.alerts.len() as u64,
        same_journal,
        reprocess,
        sha256: snap.sha256.clone(),
    })
}

/// Sets the backup metrics from the newest backup on disk, so a restart
/// does not look like a missed backup.
pub fn init_metrics(app: &App) {
    let dir = &app.settings.backup.dir;
    if let Ok(Some(name)) = backup_names(dir).map(|n| n.last().cloned()) {
        let path = dir.join(name);
        if let (Ok(h), Ok(meta)) = (read_header(&path), std::fs::metadata(&path)) {
            app.metrics.backup_last_success.set(h.created_ms / 1000);
            app.metrics.backup_size_bytes.set(meta.len() as i64);
        }
    }
}

/// Writes a backup every `backup.interval`, counted from the newest one in
/// the folder, until `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    init_metrics(&app);
    let Some(interval) = app.settings.backup.interval else {
        return;
    };
    // Without an earlier backup the first is due one interval after start.
    let started_ms = now_ms();
    loop {
        let last_ms = match app.metrics.backup_last_success.get() * 1000 {
            0 => started_ms,
            ms => ms,
        };
        let due_in = (last_ms + interval.as_millis() as i64 - now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(due_in)) => {}
            _ = shutdown.changed() => return,
        }
        let worker = app.clone();
        match tokio::task::spawn_blocking(move || create(&worker, Reason::Scheduled)).await {
            Ok(Ok(_)) => {}
            // Logged and counted in `create`; try again in a minute.
            Ok(Err(_)) | Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, claimed: u32, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind];
        r.extend_from_slice(&claimed.to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    /// A record is read whole, and one whose stream ends early is refused
    /// as cut short, even when it claims the largest size allowed.
    #[test]
    fn records_read_whole_or_refused() {
        let mut stream = record(b'H', 3, b"abc");
        stream.extend(record(b'A', 2, b"xy"));
        let mut r = stream.as_slice();
        assert_eq!(
            next_record("f", &mut r).ok(),
            Some(Some((b'H', b"abc".to_vec())))
        );
        assert_eq!(
            next_record("f", &mut r).ok(),
            Some(Some((b'A', b"xy".to_vec())))
        );
        assert_eq!(next_record("f", &mut r).ok(), Some(None));
        for claimed in [4, MAX_RECORD] {
            let stream = record(b'A', claimed, b"abc");
            let e = next_record("f", &mut stream.as_slice()).err();
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("cut short: 3 of its"), "{e}");
        }
        let stream = record(b'A', MAX_RECORD + 1, b"abc");
        let e = next_record("f", &mut stream.as_slice()).err();
        assert!(e.is_some_and(|e| e.to_string().contains("claims")));
    }
}
