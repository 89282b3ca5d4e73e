//! `soc-agent`: tails firewall and antivirus log files on an agency machine
//! and ships their lines to `soc-collector` over HTTPS, losing nothing when
//! the link is down, the agent restarts, or the logs rotate.
//!
//! # Why it works this way
//!
//! * Files are known by identity (device, inode, checksum of the first
//!   line), not by path, so a rotation (rename + create) is a new file and the
//!   old one is still read to its end through its open handle.
//! * A file truncated in place gets a new stream name (`<identity>.g<N>`),
//!   so the collector's de-duplication by `(agent, stream, offset)` never
//!   drops its new lines; a copy of a file (`copytruncate`) continues the
//!   stream it copies after the last acknowledged line. See `README.md`.
//! * The checkpoint of a file moves only after the collector acknowledged the
//!   lines, and it is written atomically. A restart resumes from there: at
//!   worst the last unacknowledged batch is sent twice, which the collector
//!   drops by `(agent, stream, offset)`.
//! * One batch in flight, one being built, both bounded: when the collector
//!   is away for hours the agent stops reading instead of growing.
//! * Polling is the truth; file notifications only make it react sooner.
//!
//! # Layout
//!
//! * `config`: the TOML file, read in two phases (shape, then meaning).
//! * `labels`: the `[agent.labels]` rules (sent as `Batch.labels`).
//! * `discover`: include/exclude globs, notification wake-ups.
//! * `identity`: file identity, guards (checks of the bytes before an offset).
//! * `encoding`: UTF-8 / UTF-16LE detection by byte-order mark, compressed files.
//! * `tail`: reading complete lines from an offset; long lines cut or split.
//! * `files`: the set of tailed files: `mod.rs` bookkeeping and release,
//!   `open.rs` where a file starts (checkpoint, truncation, copies),
//!   `read.rs` fair turns, rate limits, truncation while running; the
//!   rotation tests and the model-based test live beside them.
//! * `ratelimit`: the token bucket of `max_lines_per_second`.
//! * `batch`: the bounded batch being built.
//! * `checkpoint`: acknowledged offsets on disk, atomic writes.
//! * `ship`: HTTPS client, TLS roots, retries and backoff.
//! * `enroll`: trading the one-time secret for the agent's key.
//! * `heartbeat`: the periodic health report.
//! * `stats`: counters reported in heartbeats.
//! * `agent`: the main loop tying them together; this file is the CLI.

mod agent;
mod batch;
mod checkpoint;
mod config;
mod discover;
mod encoding;
mod enroll;
mod files;
mod heartbeat;
mod identity;
mod labels;
mod ratelimit;
mod ship;
mod stats;
mod tail;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// Tails log files and ships their lines to soc-collector.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Path of the configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/soc/agent.toml"
    )]
    config: PathBuf,
    /// Validate the configuration (and the files it names), then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (filter, set_aside) = soc_config::log_filter_from_env("info");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or the journal gets plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    if let Some(why) = set_aside {
        tracing::warn!("{why}");
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cli.check_config => {
            // Every mistake found, one a line.
            for line in format!("{e:#}").lines() {
                eprintln!("soc-agent: {line}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "soc-agent cannot run.");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let cfg = config::Config::load(&cli.config)?;
    if cli.check_config {
        preflight(&cfg)?;
        eprintln!("soc-agent: configuration {} is valid", cli.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Signal received; stopping.");
            let _ = tx.send(true);
        });
        agent::run(cfg, rx).await
    })?;
    Ok(())
}

/// The checks that need the file system: the CA file parses, the key file
/// or an enrolment secret is there, the data folder can be created.
/// Every check runs; all that fail are reported together.
fn preflight(cfg: &config::Config) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    if let Err(e) = ship::client(&cfg.collector.ca_file, cfg.shipping.request_timeout) {
        failed.push(format!("{e:#}"));
    }
    if let Err(e) = enroll::plan(&cfg.collector.key_file, cfg.collector.secret.as_ref()) {
        failed.push(format!("{e:#}"));
    }
    match check_dir(&cfg.agent.data_dir) {
        Err(e) => failed.push(format!("{e:#}")),
        Ok(()) => {
            if let Err(e) = checkpoint::Checkpoints::load(&cfg.agent.data_dir) {
                failed.push(format!("{e:#}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failed.join("\n"))
    }
}

fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let mut d = dir;
    // The nearest existing ancestor must be a folder.
    loop {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => anyhow::bail!(
                "data_dir {}: {} is not a folder",
                dir.display(),
                d.display()
            ),
            Err(_) => match d.parent() {
                Some(p) => d = p,
                None => return Ok(()),
            },
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the agent.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
