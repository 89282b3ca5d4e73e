//! The collector's one sled database and the names of its trees.
//!
//! Every durable thing lives here, so that one `flush` makes a whole batch
//! durable and one multi-tree transaction commits the detection cursor
//! together with the alerts and rule state it produced.

use std::path::Path;

/// The on-disk format this binary writes. A newer binary reads older formats
/// (and marks the database with its own format, as it writes that from then
/// on); an older binary refuses a newer one instead of misreading it.
/// Format 2: journal segments are zstd-compressed.
pub const FORMAT_VERSION: u64 = 2;

/// Tree names.
pub mod trees {
    /// Journal: sequence (u64 BE) -> [`crate::journal::JournalEntry`] (postcard).
    pub const JOURNAL: &str = "journal";
    /// De-duplication marks: agent \0 stream -> next acceptable offset (u64 BE).
    pub const DEDUP: &str = "dedup";
    /// Agents: name -> [`crate::auth::AgentRecord`] (JSON).
    pub const AGENTS: &str = "agents";
    /// API tokens: sha256(token) hex -> [`crate::auth::TokenRecord`] (JSON).
    pub const TOKENS: &str = "tokens";
    /// Alerts: id (u64 BE) -> [`crate::model::Alert`] (JSON).
    pub const ALERTS: &str = "alerts";
    /// Small values: cursor, counters, rule state, format version.
    pub const META: &str = "meta";
}

/// Keys in the `meta` tree.
pub mod meta_keys {
    pub const FORMAT: &[u8] = b"format";
    /// Last journal sequence the detection worker has fully processed.
    pub const DETECTION_CURSOR: &[u8] = b"detection.cursor";
    /// Serialised `soc_rules::EngineState`, committed with the cursor.
    pub const ENGINE_STATE: &[u8] = b"detection.state";
    /// Next alert id to hand out, committed with the cursor.
    pub const NEXT_ALERT_ID: &[u8] = b"alerts.next_id";
    /// Random id of this database's journal, created on first use; a backup
    /// records it so a restore knows whether its cursor counts in this
    /// journal's sequence numbers.
    pub const JOURNAL_ID: &[u8] = b"journal.id";
    /// Lowest next journal sequence number (u64 BE), set by a restore so new
    /// lines are numbered after the restored cursor even in an empty journal.
    pub const JOURNAL_NEXT_FLOOR: &[u8] = b"journal.next_floor";
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error(
        "database {path} has format {found}, newer than this binary's {FORMAT_VERSION}; upgrade soc-collector"
    )]
    TooNew { path: String, found: u64 },
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("database: transaction aborted: {0}")]
    Aborted(String),
    #[error("database: stored value under {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

impl<E: std::fmt::Display> From<sled::transaction::TransactionError<E>> for DbError {
    fn from(e: sled::transaction::TransactionError<E>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(a) => DbError::Aborted(a.to_string()),
            sled::transaction::TransactionError::Storage(s) => DbError::Sled(s),
        }
    }
}

/// Opened database with its trees.
#[derive(Clone)]
pub struct Db {
    pub db: sled::Db,
    pub journal: sled::Tree,
    pub dedup: sled::Tree,
    pub agents: sled::Tree,
    pub tokens: sled::Tree,
    pub alerts: sled::Tree,
    pub meta: sled::Tree,
}

impl Db {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|source| DbError::Open {
                path: path.clone(),
                source,
            })?;
        let open = |name: &str| db.open_tree(name);
        let d = Db {
            journal: open(trees::JOURNAL)?,
            dedup: open(trees::DEDUP)?,
            agents: open(trees::AGENTS)?,
            tokens: open(trees::TOKENS)?,
            alerts: open(trees::ALERTS)?,
            meta: open(trees::META)?,
            db,
        };
        match d.meta.get(meta_keys::FORMAT)? {
            None => {
                d.meta
                    .insert(meta_keys::FORMAT, &FORMAT_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = be_u64(&v).ok_or_else(|| DbError::Corrupt {
                    key: "meta/format".into(),
                    reason: "not 8 bytes".into(),
                })?;
                if found > FORMAT_VERSION {
                    return Err(DbError::TooNew { path, found });
                }
                if found < FORMAT_VERSION {
                    tracing::info!(database = %path, from = found, to = FORMAT_VERSION, "database format upgraded");
                    d.meta
                        .insert(meta_keys::FORMAT, &FORMAT_VERSION.to_be_bytes())?;
                }
            }
        }
        d.db.flush()?;
        Ok(d)
    }

    /// Reads a u64 from the meta tree (0 when absent).
    pub fn meta_u64(&self, key: &[u8]) -> Result<u64, DbError> {
        Ok(self.meta.get(key)?.as_deref().and_then(be_u64).unwrap_or(0))
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), DbError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Decodes a big-endian u64 value.
pub fn be_u64(v: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = v.try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

/// Opens the database in `dir` for a test that just dropped another handle
/// on it: sled's background thread may hold its file lock a moment longer.
#[cfg(test)]
pub(crate) fn reopen(dir: &Path) -> Result<Db, DbError> {
    let mut tries = 0;
    loop {
        match Db::open(dir) {
            Err(DbError::Open { source, .. })
                if tries < 100 && source.to_string().contains("could not acquire lock") =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw sled handle on `dir`, once the last one let go of its lock.
    fn raw(dir: &Path) -> sled::Db {
        let mut tries = 0;
        loop {
            match sled::open(dir) {
                Err(e) if tries < 100 && e.to_string().contains("could not acquire lock") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => return r.expect("open"),
            }
        }
    }

    fn format_of(dir: &Path) -> u64 {
        let db = raw(dir);
        let v = db
            .open_tree(trees::META)
            .expect("meta")
            .get(meta_keys::FORMAT)
            .expect("get")
            .expect("format set");
        be_u64(&v).expect("8 bytes")
    }

    fn set_format(dir: &Path, format: u64) {
        let db = raw(dir);
        db.open_tree(trees::META)
            .expect("meta")
            .insert(meta_keys::FORMAT, &format.to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }

    #[test]
    fn an_older_format_is_taken_over_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Db::open(dir.path()).expect("create"));
        assert_eq!(format_of(dir.path()), FORMAT_VERSION);

        set_format(dir.path(), 1);
        drop(reopen(dir.path()).expect("open format 1"));
        assert_eq!(format_of(dir.path()), FORMAT_VERSION);

        set_format(dir.path(), FORMAT_VERSION + 1);
        let err = reopen(dir.path()).err().expect("refused");
        assert!(
            err.to_string()
                .contains(&format!("has format {}", FORMAT_VERSION + 1)),
            "{err}"
        );
    }
}
