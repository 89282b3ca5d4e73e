//! Tests of the file set: rotation, draining, checkpoints across restarts.

use super::*;
use crate::batch::Building;
use crate::config::StartAt;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

pub(super) struct Harness {
    pub(super) dir: tempfile::TempDir,
    pub(super) files: Files,
    pub(super) now: Instant,
    pub(super) sources: Vec<Source>,
}

pub(super) fn source(dir: &Path, start_at: StartAt) -> Source {
    Source {
        name: "ufw".into(),
        source_type: "iptables".into(),
        include: vec![format!("{}/logs/ufw.log*", dir.display())],
        exclude: vec![glob::Pattern::new("*.gz").expect("static pattern")],
        start_at,
        max_line_bytes: 1024,
        poll_interval: Duration::from_secs(1),
        rotate_wait: Duration::from_secs(5),
        long_lines: crate::tail::LongLines::Truncate,
        max_lines_per_second: None,
    }
}

impl Harness {
    pub(super) fn new(start_at: StartAt) -> std::io::Result<Harness> {
        Harness::with(|dir| vec![source(dir, start_at)])
    }

    /// A harness whose sources are built from its temporary folder.
    pub(super) fn with(make: impl FnOnce(&Path) -> Vec<Source>) -> std::io::Result<Harness> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("logs"))?;
        std::fs::create_dir(dir.path().join("data"))?;
        let sources = make(dir.path());
        let files = Self::open_files(dir.path(), sources.clone())?;
        Ok(Harness {
            dir,
            files,
            now: Instant::now(),
            sources,
        })
    }

    pub(super) fn open_files(dir: &Path, sources: Vec<Source>) -> std::io::Result<Files> {
        let cp = Checkpoints::load(&dir.join("data")).map_err(std::io::Error::other)?;
        Ok(Files::new(sources, 8, cp, Arc::new(Stats::default())))
    }

    /// Simulates an agent restart: a new file set from the saved checkpoints
    /// (sources that started at the end have started by now).
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        self.files = Self::open_files(self.dir.path(), self.sources.clone())?;
        Ok(())
    }

    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    pub(super) fn append(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))?;
        f.write_all(bytes)
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Scans, reads everything, and acknowledges it; returns the lines.
    pub(super) fn ship(&mut self) -> Vec<(String, u64, String)> {
        self.files.scan(self.now, true);
        let mut out = Vec::new();
        loop {
            let mut b = Building::new(3, 1 << 20);
            self.files.fill(&mut b, self.now);
            if b.is_empty() {
                break;
            }
            let items = b.take(usize::MAX);
            let marks: Vec<Mark> = items.iter().map(|p| p.mark).collect();
            for p in items {
                out.push((
                    p.record.stream.to_string(),
                    p.record.offset,
                    p.record.line.clone().unwrap_or_default(),
                ));
            }
            self.files
                .commit(&marks, self.now)
                .expect("checkpoint save");
        }
        self.files.release_drained(self.now);
        self.files.save().expect("checkpoint save");
        out
    }
}

pub(super) fn lines(got: &[(String, u64, String)]) -> Vec<&str> {
    got.iter().map(|(_, _, l)| l.as_str()).collect()
}

#[test]
fn rename_and_create_drains_the_old_file_and_reads_the_new_one() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"a1\na2\n")?;
    let got = h.ship();
    assert_eq!(lines(&got), ["a1", "a2"]);
    let old_stream = got[0].0.clone();

    // The writer still has the old file open and writes after the rename;
    // then the new file appears with its first line.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(h.log("ufw.log"))?;
    std::fs::rename(h.log("ufw.log"), h.log("ufw.log.1"))?;
    writer.write_all(b"a3\n")?;
    h.append("ufw.log", b"b1\n")?;
    let mut got = h.ship();
    got.sort_by(|a, b| a.2.cmp(&b.2)); // files take turns: no order between them
    assert_eq!(lines(&got), ["a3", "b1"]);
    assert_eq!(got[0].0, old_stream, "renamed file keeps its stream");
    assert_ne!(got[1].0, old_stream, "new file is a new stream");
    assert_eq!(got[1].1, 0, "new file is read from its start");

    // Compressed and deleted: the old file is read to its end through its
    // handle, even its last line without newline, then released.
    writer.write_all(b"a4\na5-no-newline")?;
    std::fs::rename(h.log("ufw.log.1"), h.log("ufw.log.2.gz"))?;
    assert_eq!(lines(&h.ship()), ["a4"]);
    assert_eq!(h.files.open_count(), 2, "kept open while it may still grow");
    h.advance(Duration::from_secs(6));
    assert_eq!(lines(&h.ship()), ["a5-no-newline"]);
    h.advance(Duration::from_secs(6));
    h.ship();
    assert_eq!(h.files.open_count(), 1, "drained and released");
    assert!(
        h.files.checkpoints.get(&old_stream).is_none(),
        "checkpoint pruned"
    );
    Ok(())
}

#[test]
fn deleted_file_is_drained_before_release() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"x1\n")?;
    h.ship();
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(h.log("ufw.log"))?;
    std::fs::remove_file(h.log("ufw.log"))?;
    writer.write_all(b"x2\n")?;
    assert_eq!(lines(&h.ship()), ["x2"]);
    h.advance(Duration::from_secs(6));
    h.ship();
    assert_eq!(h.files.open_count(), 0);
    Ok(())
}

#[test]
fn restart_resumes_after_the_last_acknowledged_line() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"1\n2\n")?;
    assert_eq!(lines(&h.ship()), ["1", "2"]);
    // Read but never acknowledged: must come again after the restart.
    h.append("ufw.log", b"3\n")?;
    let mut b = Building::new(10, 1 << 20);
    h.files.scan(h.now, true);
    h.files.fill(&mut b, h.now);
    assert_eq!(b.len(), 1);
    h.restart()?;
    h.append("ufw.log", b"4\n")?;
    let got = h.ship();
    assert_eq!(lines(&got), ["3", "4"]);
    assert_eq!(got[0].1, 4);
    Ok(())
}

#[test]
fn start_at_end_skips_existing_lines_only_at_first_start() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::End)?;
    h.append("ufw.log", b"old\nhalf")?;
    assert!(h.ship().is_empty());
    h.append("ufw.log", b"-done\nnew\n")?;
    assert_eq!(lines(&h.ship()), ["half-done", "new"]);
    // A file appearing later is read from its beginning.
    h.append("ufw.log.1", b"later\n")?;
    assert_eq!(lines(&h.ship()), ["later"]);
    Ok(())
}

#[test]
fn file_without_complete_first_line_waits() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"no newline yet")?;
    assert!(h.ship().is_empty());
    assert_eq!(h.files.open_count(), 0);
    h.append("ufw.log", b"\n")?;
    assert_eq!(lines(&h.ship()), ["no newline yet"]);
    Ok(())
}

#[test]
fn checkpoints_of_vanished_files_are_pruned_at_start() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"1\n")?;
    h.ship();
    std::fs::remove_file(h.log("ufw.log"))?;
    h.restart()?;
    assert!(h.files.scan(h.now, true).all_tracked);
    h.files.prune_absent();
    assert_eq!(h.files.checkpoints.entries().count(), 0);
    Ok(())
}

#[test]
fn batch_budget_bounds_reading() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", "l\n".repeat(10).as_bytes())?;
    h.files.scan(h.now, true);
    let mut b = Building::new(4, 1 << 20);
    h.files.fill(&mut b, h.now);
    assert_eq!(b.len(), 4, "reading stops when the batch is full");
    Ok(())
}
