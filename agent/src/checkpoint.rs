//! Checkpoints: how far each file has been acknowledged by the collector.
//!
//! One JSON file in `data_dir`, with a format version, keyed by file
//! identity (`Record.stream`). An offset here is only ever one the collector
//! acknowledged, so a restart resumes exactly after the last acknowledged
//! line. The file is replaced atomically (write `*.tmp`, fsync, rename,
//! fsync the folder): after a crash it holds either the old or the new state,
//! never half of one. A leftover `*.tmp` from a crash is ignored and
//! overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::{Guard, Marks};

/// The format written by this version of the agent.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the checkpoint file inside `data_dir`.
pub const FILE_NAME: &str = "checkpoints.json";

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint file {path} is corrupt ({source}); move it away to start over (files are then read per start_at)"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "checkpoint file {path} has format version {found}; this agent reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write checkpoint file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is remembered about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Bytes acknowledged so far: the start of the first line not yet acknowledged.
    pub offset: u64,
    /// The path the file had last; for people reading the file.
    pub path: String,
    /// The configured source it belongs to.
    pub source: String,
    /// The stream its lines travel under, when it is not the key: a file
    /// truncated in place gets `<key>.g<generation>`; a copy of a file
    /// (`copytruncate`) continues the stream of the file it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// How many times this file was seen truncated in place.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// Check of the bytes just before `offset`: a file truncated and written
    /// again past `offset` while the agent was stopped fails it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// How far the file was read (past `offset` when lines were in flight)
    /// and the check of the bytes before that: a file truncated or
    /// rewritten while the agent was stopped, before anything of it was
    /// acknowledged, fails it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub read_offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_guard: Option<Guard>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A stream whose file was truncated in place or released (drained after
/// rotation or deletion): its name is not given to another file (an inode
/// reused with the same first line gets a new generation), and what was
/// acknowledged of it,
/// so that a copy of the old content (`copytruncate`'s `file.1`) found later
/// continues the stream after the last acknowledged line instead of being
/// read again from its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub stream: String,
    pub source: String,
    /// FNV-1a of the old content's first line.
    pub first_line: u64,
    /// Acknowledged offset in the old content: where a copy continues.
    pub offset: u64,
    /// Offset up to which the old content was read (at least `offset`).
    #[serde(default)]
    pub check_at: u64,
    /// Check of the bytes before `check_at`.
    pub guard: Option<Guard>,
    /// Line ends read of the old content, to recognise a copy shorter than
    /// `check_at`.
    #[serde(default, skip_serializing_if = "Marks::is_empty")]
    pub marks: Marks,
    /// When it was retired, seconds since the Unix epoch.
    pub at: u64,
}

/// Most retired streams remembered; the oldest are forgotten first.
pub const MAX_RETIRED: usize = 256;
/// How long a retired stream is remembered, in seconds.
pub const RETIRED_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// Sources whose first scan is done: `start_at` no longer applies to them.
    #[serde(default)]
    sources_started: BTreeSet<String>,
    /// Per file identity.
    #[serde(default)]
    files: BTreeMap<String, Entry>,
    /// Streams of files truncated in place, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired: Vec<Retired>,
    /// Streams named so far. With `epoch`, what makes every new stream's
    /// name unique for ever: the collector drops a line whose stream and
    /// offset it already holds, so a name given again to new content (an
    /// inode reused with the same first line, after the old name was
    /// forgotten) would lose that content.
    #[serde(default)]
    streams_named: u64,
    /// Chosen when the checkpoint file is created: an agent whose data
    /// folder was wiped does not name streams as before.
    #[serde(default)]
    epoch: Option<String>,
}

/// A short, practically unique tag for a new checkpoint file.
fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{nanos}-{}", std::process::id());
    format!("{:08x}", crate::identity::fnv1a64(seed.as_bytes()) as u32)
}

/// The checkpoints of all files, in memory, with their file on disk.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    existed: bool,
    state: OnDisk,
}

impl Checkpoints {
    /// Loads `dir/checkpoints.json`; a missing file means a first start.
    pub fn load(dir: &Path) -> Result<Checkpoints, CheckpointError> {
        let path = dir.join(FILE_NAME);
        let empty = OnDisk {
            version: FORMAT_VERSION,
            sources_started: BTreeSet::new(),
            files: BTreeMap::new(),
            retired: Vec::new(),
            streams_named: 0,
            epoch: Some(new_epoch()),
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoints {
                    path,
                    existed: false,
                    state: empty,
                });
            }
            Err(source) => return Err(CheckpointError::Read { path, source }),
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if v.version != FORMAT_VERSION {
            return Err(CheckpointError::Version {
                path,
                found: v.version,
            });
        }
        let mut state: OnDisk =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                path: path.clone(),
                source,
            })?;
        // Written by an agent that named streams after the file alone.
        state.epoch.get_or_insert_with(new_epoch);
        Ok(Checkpoints {
            path,
            existed: true,
            state,
        })
    }

    /// A name for a new stream of the file `id`, never given before by
    /// this checkpoint file (saved with the next save; an agent that
    /// crashes before then names the same file's content the same again).
    pub fn new_stream(&mut self, id: &str) -> String {
        let n = self.state.streams_named;
        self.state.streams_named += 1;
        let epoch = self.state.epoch.get_or_insert_with(new_epoch);
        format!("{id}.{epoch}-{n}")
    }

    /// Whether a checkpoint file was found at load time.
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The entry of one file identity.
    pub fn get(&self, stream: &str) -> Option<&Entry> {
        self.state.files.get(stream)
    }

    /// Records (or replaces) the entry of one file identity.
    pub fn set(&mut self, stream: String, entry: Entry) {
        self.state.files.insert(stream, entry);
    }

    /// Forgets one file identity (after it was drained and released).
    pub fn remove(&mut self, stream: &str) -> Option<Entry> {
        self.state.files.remove(stream)
    }

    /// Keeps only the identities for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
        self.state.files.retain(|k, v| keep(k, v));
    }

    /// All entries, by identity.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.state.files.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Remembers a retired stream; forgets expired and surplus ones.
    pub fn retire(&mut self, r: Retired) {
        let now = r.at;
        self.state
            .retired
            .retain(|o| now.saturating_sub(o.at) < RETIRED_TTL_SECS && o.stream != r.stream);
        self.state.retired.push(r);
        let extra = self.state.retired.len().saturating_sub(MAX_RETIRED);
        self.state.retired.drain(..extra);
    }

    /// Retired streams, oldest first.
    pub fn retired(&self) -> &[Retired] {
        &self.state.retired
    }

    /// Whether the source's first scan is already done.
    pub fn source_started(&self, name: &str) -> bool {
        self.state.sources_started.contains(name)
    }

    /// Remembers that the source's first scan is done.
    pub fn mark_source_started(&mut self, name: &str) {
        self.state.sources_started.insert(name.to_owned());
    }

    /// Writes the state atomically: tmp file, fsync, rename, fsync folder.
    pub fn save(&mut self) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&self.state).map_err(|e| err(e.into()))?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        write_atomically(&self.path, &tmp, &json, None).map_err(err)?;
        self.existed = true;
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or
/// the new content. `mode` sets unix permissions of the new file.
pub fn write_atomically(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64) -> Entry {
        Entry {
            offset,
            path: "/var/log/ufw.log".into(),
            source: "ufw".into(),
            stream: None,
            generation: 0,
            guard: None,
            read_offset: 0,
            read_guard: None,
        }
    }

    #[test]
    fn round_trip() -> Result<(), CheckpointError> {
        let dir = tempfile::tempdir().map_err(|source| CheckpointError::Read {
            path: PathBuf::new(),
            source,
        })?;
        let mut c = Checkpoints::load(dir.path())?;
        assert!(!c.existed());
        c.set("801-2a-00ff".into(), entry(42));
        c.mark_source_started("ufw");
        c.save()?;
        let c2 = Checkpoints::load(dir.path())?;
        assert!(c2.existed());
        assert_eq!(c2.get("801-2a-00ff"), Some(&entry(42)));
        assert!(c2.source_started("ufw"));
        assert!(!c2.source_started("clamav"));
        Ok(())
    }

    #[test]
    fn leftover_tmp_is_ignored_and_overwritten() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut c = Checkpoints::load(dir.path())?;
        c.set("a".into(), entry(1));
        c.save()?;
        // A crash between writing the tmp file and the rename.
        let tmp = dir.path().join(format!("{FILE_NAME}.tmp"));
        fs::write(&tmp, b"{\"version\": 1, \"files\": {\"a\": {\"offs")?;
        let mut c = Checkpoints::load(dir.path())?;
        assert_eq!(c.get("a"), Some(&entry(1)));
        c.set("a".into(), entry(2));
        c.save()?;
        assert!(!tmp.exists());
        assert_eq!(Checkpoints::load(dir.path())?.get("a"), Some(&entry(2)));
        Ok(())
    }

    #[test]
    fn corrupt_and_future_files_are_refused_with_the_path() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, b"not json")?;
        let msg = Checkpoints::load(dir.path()).err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("corrupt") && m.contains(FILE_NAME)));
        fs::write(&path, b"{\"version\": 9}")?;
        let msg = Checkpoints::load(dir.path()).err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("version 9")));
        Ok(())
    }
}
