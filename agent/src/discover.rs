//! Finding the files of each source.
//!
//! A periodic scan of the include globs (minus the exclude globs) is the
//! truth. File-system notifications only wake the scan early: they are
//! lossy on some systems, and a missed one costs at most one poll interval.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::config::Source;

/// Most paths one source's scan returns; more are reported and ignored
/// until the next scan, so a runaway glob cannot exhaust memory.
pub const MAX_SCAN_PATHS: usize = 65_536;

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Regular files matching an include glob and no exclude glob, sorted.
    pub paths: Vec<PathBuf>,
    /// Paths (or patterns) that could not be read, with the reason.
    pub errors: Vec<(PathBuf, std::io::Error)>,
    /// The scan stopped at [`MAX_SCAN_PATHS`].
    pub capped: bool,
}

/// Scans the globs of one source.
pub fn scan(source: &Source) -> Scan {
    let mut out = Scan::default();
    for pattern in &source.include {
        let paths = match glob::glob(pattern) {
            Ok(p) => p,
            // Patterns are checked when the configuration is built.
            Err(e) => {
                out.errors
                    .push((PathBuf::from(pattern), std::io::Error::other(e.to_string())));
                continue;
            }
        };
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    let path = e.path().to_owned();
                    out.errors.push((path, e.into()));
                    continue;
                }
            };
            if is_excluded(source, &path) {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => continue,
                // Gone between the listing and the stat: normal during rotation.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.errors.push((path, e));
                    continue;
                }
            }
            if out.paths.len() >= MAX_SCAN_PATHS {
                out.capped = true;
                break;
            }
            out.paths.push(path);
        }
    }
    out.paths.sort();
    out.paths.dedup();
    out
}

/// Whether an exclude glob matches the full path.
pub fn is_excluded(source: &Source, path: &Path) -> bool {
    source.exclude.iter().any(|p| p.matches_path(path))
}

/// The folder to watch for one include pattern: its longest leading part
/// without glob characters.
pub fn watch_dir(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    let mut parts = Path::new(pattern).components().peekable();
    while let Some(c) = parts.next() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) || parts.peek().is_none() {
            break;
        }
        dir.push(c);
    }
    dir
}

/// Watches the folders of all include globs and sends a wake-up (at most
/// one pending) when something changes there. Dropping it stops the watch.
pub struct Waker {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Waker {
    /// Starts watching; failures are logged and leave polling alone in charge.
    pub fn start(sources: &[Source], wake: mpsc::Sender<()>) -> Waker {
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                // Full means a wake-up is already pending: nothing is lost.
                let _ = wake.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "File notifications are unavailable; relying on polling alone.");
                return Waker { _watcher: None };
            }
        };
        let mut dirs: Vec<PathBuf> = sources
            .iter()
            .flat_map(|s| s.include.iter().map(|p| watch_dir(p)))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            use notify::Watcher as _;
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch folder for changes; it is still polled.");
            }
        }
        Waker {
            _watcher: Some(watcher),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StartAt;
    use std::time::Duration;

    fn source(include: Vec<String>, exclude: &[&str]) -> Source {
        Source {
            name: "t".into(),
            source_type: String::new(),
            include,
            exclude: exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            start_at: StartAt::Beginning,
            max_line_bytes: 1024,
            poll_interval: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(1),
            long_lines: crate::tail::LongLines::Truncate,
            max_lines_per_second: None,
        }
    }

    #[test]
    fn include_and_exclude() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        for name in ["ufw.log", "ufw.log.1", "ufw.log.2.gz", "other.log"] {
            std::fs::write(d.join(name), b"x\n")?;
        }
        std::fs::create_dir(d.join("ufw.log.dir"))?;
        let inc = vec![
            format!("{}/ufw.log*", d.display()),
            format!("{}/ufw.log", d.display()),
        ];
        let found = scan(&source(inc, &["*.gz"]));
        assert!(found.errors.is_empty());
        assert_eq!(found.paths, vec![d.join("ufw.log"), d.join("ufw.log.1")]);
        Ok(())
    }

    #[test]
    fn missing_folder_is_just_empty() {
        let found = scan(&source(vec!["/nonexistent-soc/*.log".into()], &[]));
        assert!(found.paths.is_empty());
    }

    #[test]
    fn watch_dir_is_the_fixed_prefix() {
        assert_eq!(watch_dir("/var/log/ufw.log*"), Path::new("/var/log"));
        assert_eq!(
            watch_dir("/var/log/clamav/clamd.log"),
            Path::new("/var/log/clamav")
        );
        assert_eq!(watch_dir("/var/log/*/av.log"), Path::new("/var/log"));
    }
}
