//! `socctl backup ...`: ask the collector to write or list backups, verify a
//! backup file offline, and restore one onto a collector.
//!
//! `verify` reads the file with the collector's own reader and needs no
//! collector or token. `restore` verifies the file here first, so a damaged
//! copy is refused before it is sent; the collector verifies it again and
//! changes nothing unless the whole file is good.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use soc_collector::backup::{self, BackupInfo, RestoreView};
use soc_collector::backup_api::RestoreQuery;
use soc_collector::client::Client;

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Ask the collector to write a backup now (admin).
    Create,
    /// List the collector's backups, newest first (admin).
    List,
    /// Check a backup file offline: format, checksum and every record.
    /// Needs no collector or token.
    Verify { file: PathBuf },
    /// Replace the collector's rule state, detection cursor and alert store
    /// with a backup file (admin). A file that fails verification changes
    /// nothing.
    Restore { file: PathBuf },
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn print_info(verb: &str, i: &BackupInfo) {
    println!(
        "{verb} {}: taken {} ({}), {} bytes, detection cursor {}, next alert id {}{}",
        i.path,
        time(i.created_ms),
        i.reason,
        i.size_bytes,
        i.cursor,
        i.next_alert_id,
        i.alerts
            .map(|n| format!(", {n} alerts"))
            .unwrap_or_default()
    );
    if let Some(s) = &i.sha256 {
        println!("sha256 {s}");
    }
}

/// `socctl backup verify FILE`: offline. Returns the summary or the reason.
pub fn verify(file: &Path, json: bool) -> anyhow::Result<()> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let snap = backup::verify_file(file)?;
    let info = backup::info_of(&file.display().to_string(), size, &snap);
    if json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        print_info("backup is valid:", &info);
    }
    Ok(())
}

/// The commands that talk to a collector.
pub async fn run(client: &Client, cmd: BackupCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create => {
            let info: BackupInfo = client.post("/api/v1/backups", &()).await?;
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                print_info("backup written:", &info);
            }
        }
        BackupCmd::List => {
            let list: Vec<BackupInfo> = client.get("/api/v1/backups", &()).await?;
            if json {
                for i in &list {
                    println!("{}", serde_json::to_string(i)?);
                }
            } else if list.is_empty() {
                println!("no backups yet");
            } else {
                for i in &list {
                    println!(
                        "{}  {:>12} bytes  {}  {:<9}  cursor {}",
                        i.name,
                        i.size_bytes,
                        time(i.created_ms),
                        i.reason,
                        i.cursor
                    );
                }
            }
        }
        BackupCmd::Verify { file } => verify(&file, json)?,
        BackupCmd::Restore { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            // Refuse a bad copy here, before sending it.
            backup::verify_bytes(&file.display().to_string(), &bytes)
                .map_err(|e| anyhow::anyhow!("{e}; not sent, nothing was changed"))?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let r: RestoreView = client
                .post_bytes(
                    "/api/v1/backups/restore",
                    &RestoreQuery { name },
                    bytes,
                    Duration::from_secs(600),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "restored {} (taken {}): detection cursor {}, next alert id {}, {} alerts",
                    file.display(),
                    time(r.created_ms),
                    r.cursor,
                    r.next_alert_id,
                    r.alerts
                );
                if r.reprocess > 0 {
                    println!(
                        "{} journal entries after the cursor will be processed again",
                        r.reprocess
                    );
                }
                if !r.same_journal {
                    println!(
                        "the backup comes from another collector's journal: new lines are numbered after its cursor"
                    );
                }
            }
        }
    }
    Ok(())
}
