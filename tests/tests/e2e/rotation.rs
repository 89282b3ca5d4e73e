//! Real `logrotate`, in each mode the agent's README makes a promise about,
//! against a file a writer thread appends to at full speed: every line
//! written arrives exactly once (count and sorted SHA-256 compared with the
//! journal, read back with `socctl journal dump`).
//!
//! Each round lets the writer write a little, waits until the journal holds
//! a line written after the previous rotation (so the agent has found the
//! current file: a file rotated away before any tailer saw it is outside
//! every tailer's reach), then lets the writer go at full speed and runs
//! `logrotate -f` while it writes.
//!
//! `copytruncate` is measured, not excused: logrotate itself loses the lines
//! written between its copy and its truncate. The test asserts that every
//! line logrotate kept (in the copies and the live file) arrives (a piece
//! of a line the copy cut may arrive as the line it was cut from, read
//! before the truncate), that no line arrives twice, and prints how many
//! lines logrotate lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use soc_e2e::{
    Agent, Collector, GlobSource, LINES_PER_WRITE, LineWriter, line_number, logrotate,
    multiset_diff, sorted_sha256, wait_for, write_agent_config_globs,
};

/// Rotations per mode.
const ROUNDS: usize = 5;
/// Lines written before the agent is known to have the current file.
const SETTLE_LINES: u64 = 1_000;
/// Lines written at full speed while logrotate runs.
const BURST_LINES: u64 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    CopyTruncate,
    Compress,
    DelayCompress,
    DateExt,
    OldDir,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::CopyTruncate => "copytruncate",
            Mode::Compress => "compress",
            Mode::DelayCompress => "delaycompress",
            Mode::DateExt => "dateext",
            Mode::OldDir => "olddir",
        }
    }

    /// The logrotate directives of this mode.
    fn directives(self, old: &Path) -> String {
        match self {
            Mode::Create => "create".into(),
            Mode::CopyTruncate => "copytruncate".into(),
            Mode::Compress => "create\n    compress".into(),
            Mode::DelayCompress => "create\n    compress\n    delaycompress".into(),
            // Several rotations a day need a name per second.
            Mode::DateExt => "create\n    dateext\n    dateformat -%Y%m%d-%s".into(),
            Mode::OldDir => format!("create\n    olddir {}", old.display()),
        }
    }

    /// The agent's include globs: what the README asks for this style.
    /// `olddir` deliberately leaves the old folder out: the open handle
    /// must drain the moved file.
    fn include(self, log: &Path) -> Vec<String> {
        match self {
            Mode::OldDir => vec![log.display().to_string()],
            _ => vec![format!("{}*", log.display())],
        }
    }
}

/// Lines journalled so far, read incrementally.
struct JournalReader {
    after: u64,
    lines: Vec<String>,
}

impl JournalReader {
    fn poll(&mut self, c: &Collector) -> anyhow::Result<()> {
        let after = self.after.to_string();
        for v in c.socctl_ndjson(&["journal", "dump", "--after", &after])? {
            let seq = v["seq"].as_u64().unwrap_or(0);
            self.after = self.after.max(seq);
            self.lines
                .push(v["line"].as_str().unwrap_or_default().to_owned());
        }
        Ok(())
    }

    /// Whether a line numbered `n` or later has been journalled.
    fn has_line_from(&self, n: u64) -> bool {
        self.lines
            .iter()
            .rev()
            .take(20_000)
            .any(|l| line_number(l) >= Some(n))
    }
}

/// Every plain (not compressed) file in `dirs` whose name starts with `prefix`.
fn plain_lines(dirs: &[PathBuf], prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(prefix) && !name.ends_with(".gz") {
                out.extend(std::fs::read_to_string(&p)?.lines().map(str::to_owned));
            }
        }
    }
    Ok(out)
}

fn run(mode: Mode) -> anyhow::Result<()> {
    let _one_at_a_time = soc_e2e::full_speed_agent();
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let secret = collector.enroll("web-01")?;
    let logs = tmp.path().join("logs");
    let old = tmp.path().join("logs-old");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(&old)?;
    let log = logs.join("app.log");
    std::fs::write(&log, "")?;
    let conf = tmp.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n    rotate 100\n    {}\n    missingok\n    nomail\n}}\n",
            log.display(),
            mode.directives(&old)
        ),
    )?;
    let state = tmp.path().join("logrotate.state");
    let cfg = write_agent_config_globs(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &[GlobSource {
            name: "app",
            include: mode.include(&log),
            exclude: vec!["*.gz".into()],
            extra: "",
        }],
    )?;
    let agent = Agent::start(&cfg)?;
    let checkpoints = tmp.path().join("agent/state/checkpoints.json");
    let fail = |e: anyhow::Error| {
        // What the agent holds and what is on disk, for a run that stalls.
        let files: Vec<String> = [&logs, &old]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let m = e.metadata().ok()?;
                Some(format!("{} {} bytes", e.path().display(), m.len()))
            })
            .collect();
        anyhow::anyhow!(
            "{}: {e}\nagent log:\n{}\ncollector log:\n{}\nfiles:\n{}\nagent checkpoints:\n{}",
            mode.name(),
            tail(&agent.log_text()),
            tail(&collector.log_text()),
            files.join("\n"),
            std::fs::read_to_string(&checkpoints).unwrap_or_else(|e| e.to_string())
        )
    };

    let writer = LineWriter::start(&log, mode.name(), 0, None);
    let mut journal = JournalReader {
        after: 0,
        lines: Vec::new(),
    };
    let mut first_after_rotation = 0u64;
    let mut during_rotation = 0u64;
    let mut last_rotation: Option<Instant> = None;
    for _ in 0..ROUNDS {
        writer.allow(SETTLE_LINES);
        writer.wait_written(first_after_rotation + SETTLE_LINES)?;
        // Proof that the agent follows the new file before the next
        // rotation. The writer opens the file for each write: the write in
        // progress while logrotate ran can land in the old file after
        // logrotate returned, so its lines (numbered from
        // `first_after_rotation`) prove nothing; the lines of the next write
        // are in the new file. (Waiting for the first ones let a run rotate
        // again before the agent had seen the new file; with `olddir`,
        // outside the globs by design, that file was never read.)
        let proof = if last_rotation.is_some() {
            first_after_rotation + LINES_PER_WRITE
        } else {
            0
        };
        wait_for(
            "a line written after the last rotation in the journal",
            Duration::from_secs(120),
            || {
                journal.poll(&collector).ok()?;
                journal.has_line_from(proof).then_some(())
            },
        )
        .map_err(fail)?;
        if mode == Mode::DateExt
            && let Some(t) = last_rotation
        {
            // dateext names have a one-second resolution.
            std::thread::sleep(Duration::from_millis(1100).saturating_sub(t.elapsed()));
        }
        let base = writer.written();
        writer.allow(BURST_LINES);
        writer.wait_written(base + 200)?;
        let before = writer.written();
        logrotate(&conf, &state).map_err(fail)?;
        let after = writer.written();
        last_rotation = Some(Instant::now());
        during_rotation += after - before;
        first_after_rotation = after;
    }
    writer.wait_written(ROUNDS as u64 * (SETTLE_LINES + BURST_LINES))?;
    let written = writer.finish()?;

    if mode == Mode::CopyTruncate {
        return check_copytruncate(&collector, &logs, &written, during_rotation).map_err(fail);
    }
    let n = written.len() as u64;
    wait_for(
        "every line written in the journal",
        Duration::from_secs(180),
        || (collector.journal_len() >= n).then_some(()),
    )
    .map_err(|e| fail(anyhow::anyhow!("{e}: {} of {n}", collector.journal_len())))?;
    // A late re-send would show up now.
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<String> = collector
        .journal_lines()?
        .into_iter()
        .map(|l| l.line)
        .collect();
    let (missing, extra) = multiset_diff(&written, &got);
    let (want_hash, got_hash) = (sorted_sha256(&written), sorted_sha256(&got));
    println!(
        "logrotate {}: {ROUNDS} rotations, {} lines written ({during_rotation} while logrotate ran), \
         {} journalled, {} missing, {} extra; sha256 written {want_hash}, journalled {got_hash}",
        mode.name(),
        written.len(),
        got.len(),
        missing.len(),
        extra.len(),
    );
    if !missing.is_empty() || !extra.is_empty() {
        return Err(fail(anyhow::anyhow!(
            "{} lines missing (first {:?}), {} duplicated or unknown (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        )));
    }
    assert_eq!(got.len(), written.len());
    assert_eq!(got_hash, want_hash);
    Ok(())
}

/// The lines logrotate kept that the journal lacks. A piece of a line that
/// logrotate's copy cut (see `check_copytruncate`) counts as arrived when
/// the journal holds the line it was cut from: the agent read that line
/// whole from the live file before the truncate, and the copy's piece, at
/// the same place in the stream, is bytes already sent, which are not sent
/// again. The line cut is told by the line written before it, the copy's
/// last whole line, which logrotate kept; the lines written after it up to
/// the truncate are lost, so a later line that the agent read before the
/// truncate cannot stand in for it.
fn kept_missing(kept: &[String], got: &[String], written: &[String]) -> Vec<String> {
    let (missing, _) = multiset_diff(kept, got);
    if missing.is_empty() {
        return missing;
    }
    let kept_set: std::collections::HashSet<&str> = kept.iter().map(String::as_str).collect();
    let got_set: std::collections::HashSet<&str> = got.iter().map(String::as_str).collect();
    // Every line starts alike (`numbered_line`), so pieces of different
    // rotations can be the same text: each line cut that arrived whole
    // stands for one missing piece, no more.
    let cut_lines_arrived = |piece: &str| {
        written
            .windows(2)
            .filter(|w| {
                let (before, line) = (&w[0], &w[1]);
                line.len() > piece.len()
                    && line.starts_with(piece)
                    && kept_set.contains(before.as_str())
                    && !kept_set.contains(line.as_str())
                    && got_set.contains(line.as_str())
            })
            .count()
    };
    let mut left = Vec::new();
    for group in missing.chunk_by(|a, b| a == b) {
        let explained = cut_lines_arrived(&group[0]).min(group.len());
        left.extend_from_slice(&group[explained..]);
    }
    left
}

#[test]
fn a_piece_counts_as_arrived_only_when_its_own_line_did() {
    let written: Vec<String> = (0..6).map(|n| soc_e2e::numbered_line("t", n)).collect();
    // The copy ends with the start of line 2; lines 2 to 4 are lost by
    // logrotate; the live file goes on with line 5.
    let piece = written[2][..26].to_string();
    let kept = [&written[0], &written[1], &piece, &written[5]].map(String::clone);
    let got =
        |lines: &[usize]| -> Vec<String> { lines.iter().map(|&i| written[i].clone()).collect() };
    // Line 2 read whole before the truncate.
    assert!(kept_missing(&kept, &got(&[0, 1, 2, 5]), &written).is_empty());
    // Line 3 does not stand in for it, nor does nothing.
    assert_eq!(
        kept_missing(&kept, &got(&[0, 1, 3, 5]), &written),
        std::slice::from_ref(&piece)
    );
    assert_eq!(kept_missing(&kept, &got(&[0, 1, 5]), &written), [piece]);
}

/// Copytruncate: what logrotate kept arrives exactly once; what it lost is
/// counted and printed.
fn check_copytruncate(
    collector: &Collector,
    logs: &Path,
    written: &[String],
    during_rotation: u64,
) -> anyhow::Result<()> {
    let kept = plain_lines(&[logs.to_owned()], "app.log")?;
    let mut got: Vec<String> = Vec::new();
    wait_for(
        "every line logrotate kept in the journal",
        Duration::from_secs(180),
        || {
            if collector.journal_len() < kept.len() as u64 {
                return None;
            }
            got = collector
                .journal_lines()
                .ok()?
                .into_iter()
                .map(|l| l.line)
                .collect();
            kept_missing(&kept, &got, written).is_empty().then_some(())
        },
    )
    .map_err(|e| {
        let missing = kept_missing(&kept, &got, written);
        anyhow::anyhow!(
            "{e}: {} kept lines missing (first {:?}); the journal holds {} lines, logrotate kept {}",
            missing.len(),
            missing.first(),
            collector.journal_len(),
            kept.len()
        )
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<String> = collector
        .journal_lines()?
        .into_iter()
        .map(|l| l.line)
        .collect();
    let kept_missing = kept_missing(&kept, &got, written);
    // When the writer is half-way through a line at the moment logrotate
    // copies, the copy ends with the first part of that line and the
    // truncated file starts with the rest: logrotate kept two pieces, not
    // the line. Those pieces are what the files hold, so they must arrive
    // too, once each; each must be a piece of a line that was written.
    let (lost_by_logrotate, pieces) = multiset_diff(written, &kept);
    let (lost, extra) = multiset_diff(written, &got);
    let (unexplained, _) = multiset_diff(&extra, &pieces);
    let saved = lost_by_logrotate.len() - lost.len().min(lost_by_logrotate.len());
    println!(
        "logrotate copytruncate: {ROUNDS} rotations, {} lines written ({during_rotation} while logrotate ran), \
         {} kept by logrotate ({} lost by logrotate between its copy and its truncate, \
         {} pieces of lines it split), {} journalled ({saved} of logrotate's lost lines read before the truncate), \
         {} kept lines missing, {} duplicated or unknown; sha256 kept {}, journalled {}",
        written.len(),
        kept.len(),
        lost_by_logrotate.len(),
        pieces.len(),
        got.len(),
        kept_missing.len(),
        unexplained.len(),
        sorted_sha256(&kept),
        sorted_sha256(&got),
    );
    assert!(
        kept_missing.is_empty(),
        "lines logrotate kept are missing: {:?}",
        &kept_missing[..kept_missing.len().min(5)]
    );
    assert!(
        unexplained.is_empty(),
        "lines journalled twice or never written: {:?}",
        &unexplained[..unexplained.len().min(5)]
    );
    for piece in &pieces {
        assert!(
            !piece.is_empty()
                && written.iter().any(|w| w.len() > piece.len()
                    && (w.starts_with(piece.as_str()) || w.ends_with(piece.as_str()))),
            "logrotate kept {piece:?}, which is neither a line written nor a piece of one"
        );
    }
    Ok(())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn logrotate_create_every_line_once() -> anyhow::Result<()> {
    run(Mode::Create)
}

#[test]
fn logrotate_copytruncate_every_kept_line_once_and_the_loss_measured() -> anyhow::Result<()> {
    run(Mode::CopyTruncate)
}

#[test]
fn logrotate_compress_without_delaycompress_every_line_once() -> anyhow::Result<()> {
    run(Mode::Compress)
}

#[test]
fn logrotate_compress_delaycompress_every_line_once() -> anyhow::Result<()> {
    run(Mode::DelayCompress)
}

#[test]
fn logrotate_dateext_every_line_once() -> anyhow::Result<()> {
    run(Mode::DateExt)
}

#[test]
fn logrotate_olddir_every_line_once() -> anyhow::Result<()> {
    run(Mode::OldDir)
}
