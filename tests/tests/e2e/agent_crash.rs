//! The agent killed with `kill -9` at random moments, round after round,
//! while a writer appends and real logrotate rotates (rename + create):
//! in the end every line written is journalled exactly once after the
//! collector's de-duplication (count and sorted SHA-256 compared).
//!
//! `AGENT_CRASH_SEED=n` replays one sequence of kill moments.

use std::time::{Duration, SystemTime};

use soc_e2e::{
    Agent, Collector, GlobSource, LineWriter, logrotate, metric_value, multiset_diff,
    sorted_sha256, wait_for, write_agent_config_globs,
};

const ROUNDS: usize = 24;
/// Lines per second from the writer: steady, so the backlog stays bounded
/// however slow this machine is.
const RATE: u64 = 3_000;

/// xorshift64*: enough randomness for kill moments, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn kill_9_of_the_agent_in_a_loop_while_logrotate_rotates_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let _one_at_a_time = soc_e2e::full_speed_agent();
    let seed = std::env::var("AGENT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("agent crash loop: AGENT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let secret = collector.enroll("web-01")?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join("app.log");
    std::fs::write(&log, "")?;
    let conf = tmp.path().join("logrotate.conf");
    // Nothing is deleted or compressed: a rotated file the agent has not
    // finished stays readable by its rotated name, whenever the agent runs.
    std::fs::write(
        &conf,
        format!(
            "{} {{\n    rotate 1000\n    create\n    missingok\n    nomail\n}}\n",
            log.display()
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
            include: vec![format!("{}*", log.display())],
            exclude: vec!["*.gz".into()],
            extra: "rotate_wait = \"1s\"",
        }],
    )?;

    let writer = LineWriter::start(&log, "crash", u64::MAX, Some(RATE));
    let mut agent = Agent::start(&cfg)?;
    // Enrolment is a one-time exchange; let it finish before the first kill.
    wait_for("the agent's first batch", Duration::from_secs(60), || {
        (collector.journal_len() > 0).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", agent.log_text()))?;

    let (mut rotations, mut rotations_while_down) = (0, 0);
    for round in 0..ROUNDS {
        if round > 0 {
            agent = Agent::start(&cfg)?;
        }
        let up = Duration::from_millis(200 + rng.below(1_300));
        let rotate_at = rng.below(3); // 0: while up, 1: while down, 2: not this round
        if rotate_at == 0 {
            std::thread::sleep(up / 2);
            logrotate(&conf, &state)?;
            rotations += 1;
            std::thread::sleep(up / 2);
        } else {
            std::thread::sleep(up);
        }
        assert!(agent.running(), "the agent exited:\n{}", agent.log_text());
        agent.kill9();
        if rotate_at == 1 {
            logrotate(&conf, &state)?;
            rotations += 1;
            rotations_while_down += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.below(400)));
    }
    let written = writer.finish()?;
    let agent = Agent::start(&cfg)?;
    let n = written.len() as u64;
    wait_for(
        "every line written in the journal",
        Duration::from_secs(120),
        || (collector.journal_len() >= n).then_some(()),
    )
    .map_err(|e| {
        let got: Vec<String> = collector
            .journal_lines()
            .map(|v| v.into_iter().map(|l| l.line).collect())
            .unwrap_or_default();
        let (missing, _) = multiset_diff(&written, &got);
        let log = agent.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        anyhow::anyhow!(
            "{e}: {} of {n}, seed {seed}; missing: {}\nlast lines of the agent log:\n{}",
            collector.journal_len(),
            seq_ranges(&missing),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    // A late re-send would show up now.
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<String> = collector
        .journal_lines()?
        .into_iter()
        .map(|l| l.line)
        .collect();
    let (missing, extra) = multiset_diff(&written, &got);
    let (want_hash, got_hash) = (sorted_sha256(&written), sorted_sha256(&got));
    let resent = metric_value(&collector.metrics_text()?, "soc_events_duplicate_total", "");
    println!(
        "agent crash loop: {ROUNDS} kill -9 rounds, {rotations} rotations ({rotations_while_down} while the agent was down), \
         {} lines written, {} journalled, {resent} re-sent lines dropped by the collector, {} missing, {} extra; \
         sha256 written {want_hash}, journalled {got_hash}",
        written.len(),
        got.len(),
        missing.len(),
        extra.len()
    );
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: {} missing (first {:?}), {} extra (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    assert_eq!(got_hash, want_hash);
    Ok(())
}

/// The `seq=` numbers of `lines` as ranges (`12-40, 97`), the first ten.
fn seq_ranges(lines: &[String]) -> String {
    let mut seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| soc_e2e::line_number(l))
        .collect();
    seqs.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for s in seqs {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => ranges.push((s, s)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(10)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    format!(
        "{} lines in {} ranges: {}",
        lines.len(),
        ranges.len(),
        shown.join(", ")
    )
}

/// The agent chose its key and asked the collector, which said yes, but the
/// answer never arrived (the agent killed, the link cut): the secret is
/// spent. The restarted agent asks again with the key it saved before
/// asking, gets it back, and ships.
#[test]
fn an_enrolment_answer_lost_is_asked_again_with_the_pending_key() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let collector = Collector::start(&tmp.path().join("collector"), "127.0.0.1:0", &[])?;
    let secret = collector.enroll("web-01")?;
    let log = tmp.path().join("ufw.log");
    soc_e2e::append_lines(&log, &["first".into(), "second".into()])?;
    let cfg = soc_e2e::write_agent_config(
        &tmp.path().join("agent"),
        "web-01",
        &collector,
        &secret,
        &[soc_e2e::SourceSpec {
            name: "ufw",
            source_type: "iptables",
            include: &log,
        }],
    )?;
    let state = tmp.path().join("agent/state");
    let key = format!("soc_ak_{}", "7e".repeat(32));
    std::fs::write(state.join("agent.key.pending"), format!("{key}\n"))?;
    // The first attempt, whose answer is lost.
    let body = format!(r#"{{"version":1,"agent":"web-01","secret":"{secret}","key":"{key}"}}"#);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&collector.ca_file)
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg(format!("{}/v1/enroll", collector.https))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");

    let mut agent = Agent::start(&cfg)?;
    wait_for("both lines journalled", Duration::from_secs(60), || {
        (collector.journal_len() >= 2).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", agent.log_text()))?;
    agent.stop()?;
    assert_eq!(
        std::fs::read_to_string(state.join("agent.key"))?.trim(),
        key,
        "the key the agent chose is its key"
    );
    assert!(!state.join("agent.key.pending").exists());
    Ok(())
}
