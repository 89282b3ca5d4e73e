//! Every rotation style, on real files, driving the file set directly. A
//! small collector model drops re-sent lines by `(stream, offset)`, as the
//! real one does.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use super::tests::{Harness, lines, source};
use crate::batch::Building;
use crate::config::StartAt;

/// What the collector keeps: each `(stream, offset)` once.
#[derive(Default)]
struct Collector {
    seen: HashSet<(String, u64)>,
    lines: Vec<String>,
}

impl Collector {
    fn take(&mut self, got: Vec<(String, u64, String)>) -> Vec<(String, u64, String)> {
        for (s, o, l) in &got {
            if self.seen.insert((s.clone(), *o)) {
                self.lines.push(l.clone());
            }
        }
        got
    }
}

fn open_append(h: &Harness, name: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).open(h.log(name))
}

/// Reads without acknowledging: these lines are "in flight".
fn read_only(h: &mut Harness) -> usize {
    h.files.scan(h.now, true);
    let mut b = Building::new(1000, 1 << 20);
    h.files.fill(&mut b, h.now);
    b.len()
}

#[test]
fn copytruncate_continues_in_the_copy_and_the_truncated_file_is_a_new_stream() -> std::io::Result<()>
{
    // Both orders: the copy found before or after the truncation is seen.
    for copy_first in [true, false] {
        let mut h = Harness::new(StartAt::Beginning)?;
        let mut c = Collector::default();
        h.append("ufw.log", b"hdr\na1\na2\n")?;
        let old = c.take(h.ship())[0].0.clone();
        // a3 is read but never acknowledged; a4 is not read at all.
        h.append("ufw.log", b"a3\n")?;
        assert_eq!(read_only(&mut h), 1);
        h.append("ufw.log", b"a4\n")?;
        std::fs::copy(h.log("ufw.log"), h.log("ufw.log.1"))?;
        if !copy_first {
            std::fs::OpenOptions::new()
                .write(true)
                .open(h.log("ufw.log"))?
                .set_len(0)?;
            let mut b = Building::new(1000, 1 << 20);
            h.files.fill(&mut b, h.now); // sees the truncation, not the copy
            h.files.scan(h.now, true);
        } else {
            h.files.scan(h.now, true); // sees the copy, not the truncation
            std::fs::OpenOptions::new()
                .write(true)
                .open(h.log("ufw.log"))?
                .set_len(0)?;
        }
        h.append("ufw.log", b"hdr\nb1\nb2\nb3\nb4\n")?;
        let got = c.take(h.ship());
        for (s, _, l) in &got {
            if l.starts_with('a') {
                assert_eq!(s, &old, "the copy continues the old stream");
            } else {
                assert_ne!(s, &old, "the truncated file is a new stream");
            }
        }
        // Every line once, in order within each file (files take turns).
        let old_content: Vec<&String> = c
            .lines
            .iter()
            .take(3)
            .chain(
                c.lines
                    .iter()
                    .filter(|l| l.starts_with('a') && l.as_str() > "a2"),
            )
            .collect();
        assert_eq!(
            old_content,
            ["hdr", "a1", "a2", "a3", "a4"],
            "copy_first={copy_first}"
        );
        let new_content: Vec<&String> = c
            .lines
            .iter()
            .skip(3)
            .filter(|l| !l.starts_with('a'))
            .collect();
        assert_eq!(
            new_content,
            ["hdr", "b1", "b2", "b3", "b4"],
            "copy_first={copy_first}"
        );
        assert_eq!(c.lines.len(), 10, "copy_first={copy_first}: nothing twice");
        assert_eq!(
            h.files
                .stats
                .truncations
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
    Ok(())
}

#[test]
fn a_copy_shorter_than_what_was_read_is_still_known_as_a_copy() -> std::io::Result<()> {
    // Found while logrotate is still copying (the original still open), or
    // complete but shorter than what was read (lines written between the
    // copy and the truncate), found after the truncation.
    for while_copying in [true, false] {
        let mut h = Harness::new(StartAt::Beginning)?;
        let mut c = Collector::default();
        h.append("ufw.log", b"hdr\na1\na2\na3\na4\na5\na6\n")?;
        let old = c.take(h.ship())[0].0.clone();
        let content = std::fs::read(h.log("ufw.log"))?;
        let copy = h.log("ufw.log.1");
        if while_copying {
            // Half a line copied so far.
            std::fs::write(&copy, &content[..13])?;
            h.files.scan(h.now, true);
            let mut f = std::fs::OpenOptions::new().append(true).open(&copy)?;
            f.write_all(&content[13..])?;
        } else {
            std::fs::write(&copy, &content)?;
        }
        // Written after the copy: lost by logrotate, read by the agent.
        h.append("ufw.log", b"a7\na8\n")?;
        c.take(h.ship());
        std::fs::OpenOptions::new()
            .write(true)
            .open(h.log("ufw.log"))?
            .set_len(0)?;
        h.append("ufw.log", b"hdr\nb1\n")?;
        let got = c.take(h.ship());
        assert!(
            got.iter().all(|(s, _, l)| !l.starts_with('a') || *s == old),
            "while_copying={while_copying}: the copy continues the old stream: {got:?}"
        );
        let mut all = c.lines.clone();
        all.sort();
        assert_eq!(
            all,
            [
                "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "b1", "hdr", "hdr"
            ],
            "while_copying={while_copying}: every line once"
        );
    }
    Ok(())
}

#[test]
fn half_a_line_copied_by_copytruncate_is_sent_once_the_copy_stays_unchanged() -> std::io::Result<()>
{
    let mut h = Harness::new(StartAt::Beginning)?;
    let mut c = Collector::default();
    h.append("ufw.log", b"hdr\na1\na2\n")?;
    c.take(h.ship());
    // logrotate copied while the writer was half-way through a line.
    h.append("ufw.log", b"a3-half")?;
    std::fs::copy(h.log("ufw.log"), h.log("ufw.log.1"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(h.log("ufw.log"))?
        .set_len(0)?;
    h.append("ufw.log", b"rest\nhdr2\n")?;
    c.take(h.ship());
    assert!(
        !c.lines.iter().any(|l| l == "a3-half"),
        "held while it may grow"
    );
    h.advance(Duration::from_secs(10)); // past rotate_wait, the copy unchanged
    c.take(h.ship());
    h.advance(Duration::from_secs(10));
    c.take(h.ship());
    assert_eq!(
        c.lines.iter().filter(|l| *l == "a3-half").count(),
        1,
        "{:?}",
        c.lines
    );
    Ok(())
}

#[test]
fn truncation_in_place_with_the_same_first_line_is_not_deduplicated() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    let mut c = Collector::default();
    h.append("ufw.log", b"#Fields: date time action\nx1\n")?;
    c.take(h.ship());
    // `: > file`, then the writer goes on, past the old offset before the
    // agent looks again: only the guard can tell.
    std::fs::File::create(h.log("ufw.log"))?;
    h.append("ufw.log", b"#Fields: date time action\ny1\ny2\ny3\n")?;
    c.take(h.ship());
    // And again while the agent is stopped.
    h.restart()?;
    std::fs::File::create(h.log("ufw.log"))?;
    h.append(
        "ufw.log",
        b"#Fields: date time action\nz1-longer-than-before\nz2\n",
    )?;
    h.restart()?;
    c.take(h.ship());
    h.append("ufw.log", b"z3\n")?;
    c.take(h.ship());
    let h0 = "#Fields: date time action";
    assert_eq!(
        c.lines,
        [
            h0,
            "x1",
            h0,
            "y1",
            "y2",
            "y3",
            h0,
            "z1-longer-than-before",
            "z2",
            "z3"
        ]
    );
    // Shrinking to nothing: waits for a first line, then a new stream.
    std::fs::File::create(h.log("ufw.log"))?;
    assert!(c.take(h.ship()).is_empty());
    h.append("ufw.log", b"#Fields: date time action\nw1\n")?;
    let got = c.take(h.ship());
    assert_eq!(lines(&got), [h0, "w1"]);
    assert_eq!(c.lines.len(), 12, "nothing dropped as a duplicate");
    Ok(())
}

#[test]
fn compressed_files_are_never_read_as_text() -> std::io::Result<()> {
    let mut h = Harness::with(|d| {
        let mut s = source(d, StartAt::Beginning);
        s.exclude.clear(); // rely on the magic bytes alone
        vec![s]
    })?;
    h.append("ufw.log", b"a1\n")?;
    std::fs::write(
        h.log("ufw.log.2.gz"),
        [0x1f, 0x8b, 8, 0, b'\n', b'x', b'\n'],
    )?;
    std::fs::write(h.log("ufw.log.3.zst"), [0x28, 0xb5, 0x2f, 0xfd, b'\n'])?;
    assert_eq!(lines(&h.ship()), ["a1"]);
    assert_eq!(h.files.open_count(), 1);
    Ok(())
}

#[test]
fn dateext_delaycompress_and_compress() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    let mut c = Collector::default();
    h.append("ufw.log", b"d1\n")?;
    c.take(h.ship());
    // dateext + delaycompress: renamed, the writer goes on for a moment,
    // the plain file stays one cycle, then it is compressed (the plain one
    // deleted) while its last lines were never read.
    let mut w = open_append(&h, "ufw.log")?;
    std::fs::rename(h.log("ufw.log"), h.log("ufw.log-20261129"))?;
    w.write_all(b"d2\n")?;
    h.append("ufw.log", b"e1\n")?;
    c.take(h.ship());
    w.write_all(b"d3\n")?;
    std::fs::write(h.log("ufw.log-20261129.gz"), [0x1f, 0x8b, 8, 0])?;
    std::fs::remove_file(h.log("ufw.log-20261129"))?;
    c.take(h.ship());
    h.advance(Duration::from_secs(6));
    c.take(h.ship());
    let d: Vec<&String> = c.lines.iter().filter(|l| l.starts_with('d')).collect();
    assert_eq!(
        d,
        ["d1", "d2", "d3"],
        "the rotated file, whole and in order"
    );
    assert_eq!(c.lines.len(), 4, "and e1, nothing twice");
    assert_eq!(h.files.open_count(), 1, "drained file released");
    Ok(())
}

#[test]
fn olddir_rotation_drains_through_the_open_handle() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    std::fs::create_dir(h.dir.path().join("old"))?;
    h.append("ufw.log", b"o1\n")?;
    h.ship();
    let mut w = open_append(&h, "ufw.log")?;
    std::fs::rename(h.log("ufw.log"), h.dir.path().join("old/ufw.log.1"))?;
    w.write_all(b"o2\n")?;
    h.append("ufw.log", b"n1\n")?;
    let shipped = h.ship();
    let mut got = lines(&shipped);
    got.sort_unstable();
    assert_eq!(got, ["n1", "o2"]);
    h.advance(Duration::from_secs(6));
    h.ship();
    assert_eq!(h.files.open_count(), 1);
    Ok(())
}

#[cfg(unix)]
#[test]
fn symlink_target_change_is_a_new_file_and_the_old_target_drains() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    let targets = h.dir.path().join("targets");
    std::fs::create_dir(&targets)?;
    std::fs::write(targets.join("a.log"), b"a1\n")?;
    std::os::unix::fs::symlink(targets.join("a.log"), h.log("ufw.log"))?;
    let first = h.ship();
    assert_eq!(lines(&first), ["a1"]);
    std::fs::write(targets.join("b.log"), b"b1\n")?;
    std::fs::remove_file(h.log("ufw.log"))?;
    std::os::unix::fs::symlink(targets.join("b.log"), h.log("ufw.log"))?;
    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(targets.join("a.log"))?;
    w.write_all(b"a2\n")?;
    let mut got = h.ship();
    got.sort_by(|a, b| a.2.cmp(&b.2)); // files take turns: no order between them
    assert_eq!(lines(&got), ["a2", "b1"]);
    assert_eq!(got[0].0, first[0].0, "identity is the target's");
    assert_ne!(got[1].0, first[0].0);
    Ok(())
}

#[test]
fn a_small_file_is_not_starved_by_a_huge_one() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    // Whichever comes first in the file order, the small one gets a turn.
    h.append("ufw.log", "big\n".repeat(20_000).as_bytes())?;
    h.append("ufw.log.1", b"small1\nsmall2\n")?;
    h.files.scan(h.now, true);
    let mut b = Building::new(500, 1 << 20);
    h.files.fill(&mut b, h.now);
    let got: Vec<String> = b
        .take(usize::MAX)
        .into_iter()
        .filter_map(|p| p.record.line)
        .collect();
    assert_eq!(got.len(), 500);
    assert!(
        got.iter().any(|l| l == "small2"),
        "small file in the first batch"
    );
    Ok(())
}

#[test]
fn rate_limit_keeps_lines_in_the_file() -> std::io::Result<()> {
    let mut h = Harness::with(|d| {
        let mut s = source(d, StartAt::Beginning);
        s.max_lines_per_second = Some(10);
        vec![s]
    })?;
    h.append("ufw.log", "l\n".repeat(100).as_bytes())?;
    h.files.scan(h.now, true);
    let mut b = Building::new(1000, 1 << 20);
    h.files.fill(&mut b, h.now);
    assert_eq!(b.len(), 10);
    h.files.fill(&mut b, h.now);
    assert_eq!(b.len(), 10, "no tokens left");
    h.files.fill(&mut b, h.now + Duration::from_millis(500));
    assert_eq!(b.len(), 15);
    Ok(())
}

#[test]
fn a_folder_created_later_is_found_by_the_scan() -> std::io::Result<()> {
    let mut h = Harness::with(|d| {
        let mut s = source(d, StartAt::End);
        s.include = vec![format!("{}/logs/later/*.log", d.display())];
        vec![s]
    })?;
    assert!(h.ship().is_empty());
    std::fs::create_dir(h.log("later"))?;
    h.append("later/av.log", b"found\n")?;
    assert_eq!(
        lines(&h.ship()),
        ["found"],
        "read from its start: not there at first start"
    );
    Ok(())
}

#[test]
fn open_files_stay_within_max_open_files() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    let mut c = Collector::default();
    for i in 0..12 {
        h.append(&format!("ufw.log.{i}"), format!("f{i}\n").as_bytes())?;
    }
    for _ in 0..3 {
        c.take(h.ship());
        assert!(h.files.open_count() <= 8);
    }
    let mut got = c.lines.clone();
    got.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

/// Regression (found by the model test, seed 3): a file that grew while the
/// batch was full, then was moved out of the globs, was released at the
/// length last seen, with its new lines never read.
#[test]
fn an_orphan_that_grew_while_reading_was_blocked_is_read_to_its_real_end() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"hdr\na1\n")?;
    assert_eq!(lines(&h.ship()), ["hdr", "a1"]);
    // More lines arrive while the agent cannot read (no room in the batch:
    // no fill happens), then the file is moved out of the globs.
    h.append("ufw.log", b"a2\na3\n")?;
    let old = h.dir.path().join("old");
    std::fs::create_dir(&old)?;
    std::fs::rename(h.log("ufw.log"), old.join("ufw.log.1"))?;
    h.files.scan(h.now, true);
    h.advance(Duration::from_secs(60));
    h.files.release_drained(h.now);
    assert_eq!(lines(&h.ship()), ["a2", "a3"]);
    Ok(())
}

/// Regression (found by the model test, seed 38): a file truncated and
/// written again to the very length it had, with the same first line, was
/// taken for unchanged: the length alone did not trigger the truncation
/// check, and its new lines were never read.
#[test]
fn a_file_truncated_and_rewritten_to_the_same_length_is_a_new_stream() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"hdr\na1\n")?;
    let first = h.ship();
    assert_eq!(lines(&first), ["hdr", "a1"]);
    let before = std::fs::metadata(h.log("ufw.log"))?.modified()?;
    std::fs::File::create(h.log("ufw.log"))?;
    h.append("ufw.log", b"hdr\nb1\n")?;
    // The file system's clock may not have ticked between the two writes
    // here; in life seconds pass. Make the new time explicit.
    open_append(&h, "ufw.log")?.set_modified(before + Duration::from_secs(1))?;
    let got = h.ship();
    assert_eq!(lines(&got), ["hdr", "b1"]);
    assert_ne!(got[0].0, first[0].0, "the new content is a new stream");
    Ok(())
}

/// Regression (found by the model test, seed 47): a new file starting with
/// the same header as a renamed file of which only the header was read
/// (and not yet acknowledged) was taken for a copy of it, so both sent
/// their lines under one stream and the collector dropped one as duplicates.
#[test]
fn a_new_file_sharing_only_the_header_of_a_renamed_one_is_not_its_copy() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    let mut c = Collector::default();
    h.append("ufw.log", b"HEADER\n")?;
    // The header is read and in flight.
    h.files.scan(h.now, true);
    let mut in_flight = Building::new(1000, 1 << 20);
    h.files.fill(&mut in_flight, h.now);
    let in_flight = in_flight.take(usize::MAX);
    assert_eq!(in_flight.len(), 1);
    h.append("ufw.log", b"a1\n")?;
    std::fs::rename(h.log("ufw.log"), h.log("ufw.log-20260101"))?;
    h.append("ufw.log", b"HEADER\nb1\n")?;
    c.take(h.ship());
    // The in-flight batch is acknowledged now.
    c.take(
        in_flight
            .iter()
            .map(|p| {
                let r = &p.record;
                (
                    r.stream.to_string(),
                    r.offset,
                    r.line.clone().unwrap_or_default(),
                )
            })
            .collect(),
    );
    let marks: Vec<_> = in_flight.iter().map(|p| p.mark).collect();
    h.files.commit(&marks, h.now).expect("checkpoint save");
    let mut got = c.lines.clone();
    got.sort();
    assert_eq!(got, ["HEADER", "HEADER", "a1", "b1"]);
    Ok(())
}

#[test]
fn a_truncation_between_the_check_and_the_read_does_not_count_the_read() -> std::io::Result<()> {
    // logrotate's copytruncate and the writer can both run between the
    // check of a file and the read that follows it. The new text, read at
    // the old offsets, must not pass for the old stream's lines: the copy's
    // lines at those offsets would then be dropped as re-sent.
    // The new file starts with the same first line or with another one.
    for new in [
        &b"hdr\nb1\nb2\nb3\nb4\nb5\nb6\n"[..],
        b"new\nb1\nb2\nb3\nb4\nb5\nb6\n",
    ] {
        let mut h = Harness::new(StartAt::Beginning)?;
        let mut c = Collector::default();
        h.append("ufw.log", b"hdr\na1\na2\n")?;
        let old = c.take(h.ship())[0].0.clone();
        h.append("ufw.log", b"a3\na4\n")?;
        // The check passes on this.
        h.files.scan(h.now, true);
        let mut b = Building::new(1000, 1 << 20);
        h.files.fill(&mut b, h.now);
        let in_flight = b.len();
        assert_eq!(in_flight, 2);
        std::fs::copy(h.log("ufw.log"), h.log("ufw.log.1"))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(h.log("ufw.log"))?
            .set_len(0)?;
        h.append("ufw.log", new)?;
        // The read, as it runs right after a check that passed.
        let ids: Vec<_> = h.files.watched.keys().copied().collect();
        assert_eq!(ids.len(), 1);
        h.files.fill_one_checked(ids[0], &mut b, h.now, 1000);
        assert_eq!(
            b.len(),
            in_flight,
            "a read of a file truncated under it does not count"
        );
        let got = c.take(h.ship());
        let mut old_lines: Vec<&str> = Vec::new();
        let mut new_lines: Vec<&str> = Vec::new();
        for (s, _, l) in &got {
            if *s == old {
                old_lines.push(l);
            } else {
                new_lines.push(l);
            }
        }
        // The two in flight were never acknowledged: the copy sends them again.
        assert_eq!(old_lines, ["a3", "a4"], "the copy continues the old stream");
        let want: Vec<&str> = std::str::from_utf8(new).expect("ASCII").lines().collect();
        assert_eq!(
            new_lines, want,
            "the truncated file is a new stream, read once"
        );
        assert_eq!(c.lines.len(), 3 + 2 + want.len(), "every line once");
    }
    Ok(())
}

/// Regression (seen in the logrotate copytruncate end-to-end test): a file
/// truncated and written again, taken under its new first line with
/// nothing read of it yet, then truncated and written again with another
/// first line before the read. Nothing read, the offset (0) could not tell
/// of the truncation, while every read saw the first line change and was
/// dropped: the file was never read again.
#[test]
fn a_second_truncation_before_anything_was_read_is_still_seen() -> std::io::Result<()> {
    let mut h = Harness::new(StartAt::Beginning)?;
    h.append("ufw.log", b"hdr\na1\n")?;
    assert_eq!(lines(&h.ship()), ["hdr", "a1"]);
    let truncate = |h: &Harness, text: &[u8]| -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(h.log("ufw.log"))?
            .set_len(0)?;
        h.append("ufw.log", text)
    };
    truncate(&h, b"x1\nx2\n")?;
    // The check alone: the file is taken under its new first line, at 0.
    let ids: Vec<_> = h.files.watched.keys().copied().collect();
    assert_eq!(ids.len(), 1);
    let len = std::fs::metadata(h.log("ufw.log"))?.len();
    let taken = h.files.check_truncated(ids[0], len).expect("readable");
    assert_ne!(taken, ids[0]);
    assert_eq!(h.files.watched[&taken].tail.offset(), 0);
    truncate(&h, b"y1\ny2\ny3\n")?;
    let got = h.ship();
    assert_eq!(lines(&got), ["y1", "y2", "y3"]);
    Ok(())
}
