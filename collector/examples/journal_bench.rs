//! Appends entries to a fresh journal in batches and prints the rate.
//! `cargo run --release -p soc-collector --example journal_bench -- [ENTRIES] [BATCH]`

use std::collections::BTreeMap;
use std::time::Instant;

use soc_collector::db::Db;
use soc_collector::journal::{Journal, JournalEntry};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let batch: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("db"))?;
    let journal = Journal::open(db)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let line = b"Nov 28 08:01:12 web-01 kernel: [81234.100201] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.45 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=51 ID=40112 DF PROTO=TCP SPT=51514 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0";
    let start = Instant::now();
    let mut offset = 0u64;
    let mut done = 0u64;
    while done < total {
        let n = batch.min(total - done);
        let entries: Vec<JournalEntry> = (0..n)
            .map(|_| {
                let e = JournalEntry {
                    agent: "bench".into(),
                    stream: "fe00-1-abc".into(),
                    source: "ufw".into(),
                    source_type: "iptables".into(),
                    path: "/var/log/ufw.log".into(),
                    offset,
                    read_time_ms: 0,
                    received_ms: 0,
                    raw: line.to_vec(),
                    truncated: false,
                    labels: BTreeMap::new(),
                };
                offset += line.len() as u64 + 1;
                e
            })
            .collect();
        rt.block_on(journal.append("bench", entries, 0))?;
        done += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "journal append: {total} entries in batches of {batch}: {secs:.2} s, {:.0} entries/s",
        total as f64 / secs
    );
    Ok(())
}
