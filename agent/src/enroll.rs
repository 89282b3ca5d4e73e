//! Getting the agent's key: read it from `key_file`, or enrol once.
//!
//! Enrolment trades the one-time secret printed by `socctl agents enroll
//! NAME` for the agent's own key, which is written to `key_file` atomically
//! with mode 0600. The secret is used only while `key_file` is missing, so
//! it can stay in the config file harmlessly (it is spent at the collector).
//!
//! Crash-safe: the agent chooses its key and saves it (`key_file` +
//! `.pending`, mode 0600) before asking; the collector keeps that key. If
//! the answer is lost (the agent killed, the link cut), the next attempt
//! asks again with the same pending key and gets the same answer, although
//! the secret is already spent. The pending file becomes `key_file` once
//! the collector said yes.

use std::path::{Path, PathBuf};

use soc_protocol::{ENROLL_PATH, EnrollRequest, EnrollResponse, PROTOCOL_VERSION};
use tokio::sync::watch;

use crate::checkpoint::write_atomically;
use crate::config::Secret;
use crate::ship::{Backoff, SendError, Shipper};

/// Why the agent has no key.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "key file {path} does not exist and no enrollment_secret is configured; run `socctl agents enroll NAME` and put the secret in [collector] enrollment_secret"
    )]
    NoKey { path: PathBuf },
    #[error("key file {path} is empty; delete it and enrol again")]
    EmptyKey { path: PathBuf },
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enrollment secret file {path} is empty")]
    EmptySecret { path: PathBuf },
    #[error(
        "collector refused enrolment of agent `{agent}`: {source}; check the name and ask for a new secret"
    )]
    Refused { agent: String, source: SendError },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shut down before enrolment finished")]
    Interrupted,
}

/// What the agent will do about its key; checked by `--check-config`
/// without touching the network.
pub fn plan(key_file: &Path, secret: Option<&Secret>) -> Result<(), EnrollError> {
    match read_key(key_file)? {
        Some(_) => Ok(()),
        None => match secret {
            Some(s) => read_secret(s).map(|_| ()),
            None => Err(EnrollError::NoKey {
                path: key_file.to_owned(),
            }),
        },
    }
}

/// The key from `key_file`, or `None` when the file does not exist.
pub fn read_key(path: &Path) -> Result<Option<String>, EnrollError> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err(EnrollError::EmptyKey {
            path: path.to_owned(),
        }),
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EnrollError::Read {
            what: "key file",
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_secret(secret: &Secret) -> Result<String, EnrollError> {
    match secret {
        Secret::Inline(s) => Ok(s.clone()),
        Secret::File(path) => {
            let s = std::fs::read_to_string(path).map_err(|source| EnrollError::Read {
                what: "enrollment secret file",
                path: path.clone(),
                source,
            })?;
            let s = s.trim();
            if s.is_empty() {
                return Err(EnrollError::EmptySecret { path: path.clone() });
            }
            Ok(s.to_owned())
        }
    }
}

/// Returns the agent's key, enrolling first if `key_file` is missing.
/// Waits (with backoff) while the collector is unreachable; a refusal is
/// final because the same secret will not work later.
pub async fn ensure_key(
    shipper: &Shipper,
    key_file: &Path,
    secret: Option<&Secret>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<String, EnrollError> {
    if let Some(key) = read_key(key_file)? {
        return Ok(key);
    }
    let Some(secret) = secret else {
        return Err(EnrollError::NoKey {
            path: key_file.to_owned(),
        });
    };
    let pending_file = pending_path(key_file);
    let proposed = match read_key(&pending_file)? {
        Some(k) => k,
        None => {
            let k = new_key();
            save_key(&pending_file, &k)?;
            k
        }
    };
    let req = EnrollRequest {
        version: PROTOCOL_VERSION,
        agent: shipper.agent.clone(),
        secret: read_secret(secret)?,
        key: Some(proposed),
    };
    let mut anonymous = shipper.clone();
    anonymous.key = None;
    let mut backoff = Backoff::new(shipper.retry_initial, shipper.retry_max);
    tracing::info!(agent = %req.agent, url = %shipper.base, "Enrolling at the collector.");
    let resp: EnrollResponse = loop {
        let sent = tokio::select! {
            r = anonymous.post_json::<_, EnrollResponse>(ENROLL_PATH, &req) => r,
            _ = shutdown.wait_for(|s| *s) => return Err(EnrollError::Interrupted),
        };
        match sent {
            Ok(r) => break r,
            Err(e @ SendError::Refused { .. }) => {
                return Err(EnrollError::Refused {
                    agent: req.agent.clone(),
                    source: e,
                });
            }
            Err(e) => {
                let wait = match &e {
                    SendError::Busy {
                        retry_after: Some(d),
                        ..
                    } => *d,
                    _ => backoff.next_delay(),
                };
                tracing::warn!(error = %e, retry_in = ?wait, "Cannot enrol yet; will retry.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Err(EnrollError::Interrupted),
                }
            }
        }
    };
    let key = resp.key.trim().to_owned();
    if key.is_empty() {
        return Err(EnrollError::Refused {
            agent: req.agent,
            source: SendError::BadAnswer {
                status: 200,
                reason: "the key is empty".into(),
            },
        });
    }
    save_key(key_file, &key)?;
    // The key is in key_file now; the pending copy is no longer needed.
    if let Err(e) = std::fs::remove_file(&pending_file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %pending_file.display(), error = %e, "Cannot remove the pending key file.");
    }
    tracing::info!(key_file = %key_file.display(), "Enrolled at the collector; key saved.");
    Ok(key)
}

/// Where the key chosen before enrolment waits for the collector's yes.
fn pending_path(key_file: &Path) -> PathBuf {
    let mut p = key_file.as_os_str().to_owned();
    p.push(".pending");
    PathBuf::from(p)
}

/// A new random agent key: 32 random bytes in hex, after `soc_ak_`.
fn new_key() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::from("soc_ak_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Writes the key atomically with mode 0600.
pub fn save_key(path: &Path, key: &str) -> Result<(), EnrollError> {
    let err = |source| EnrollError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    write_atomically(
        path,
        Path::new(&tmp),
        format!("{key}\n").as_bytes(),
        Some(0o600),
    )
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_with_private_mode() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/agent.key");
        assert!(read_key(&path)?.is_none());
        assert!(matches!(plan(&path, None), Err(EnrollError::NoKey { .. })));
        assert!(plan(&path, Some(&Secret::Inline("s".into()))).is_ok());
        save_key(&path, "k3y")?;
        assert_eq!(read_key(&path)?.as_deref(), Some("k3y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&path, "\n")?;
        assert!(matches!(read_key(&path), Err(EnrollError::EmptyKey { .. })));
        Ok(())
    }
}
