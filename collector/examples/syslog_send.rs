//! Benchmark sender: writes N newline-framed RFC 3164 lines to a syslog TCP
//! listener as fast as the receiver accepts them, then closes the connection.
//!
//! `cargo run --release -p soc-collector --example syslog_send -- 127.0.0.1:601 100000`

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: syslog_send ADDR LINES";
    let addr = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let n: u64 = args
        .next()
        .ok_or_else(|| anyhow::anyhow!(usage))?
        .parse()
        .map_err(|e| anyhow::anyhow!("LINES: {e}"))?;
    let mut s =
        TcpStream::connect(&addr).map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    let start = Instant::now();
    let mut chunk = Vec::with_capacity(256 * 1024);
    for i in 0..n {
        writeln!(
            chunk,
            "<134>Mar  1 00:00:00 fw-bench bench[4242]: action=deny src=203.0.113.{} dst=192.0.2.10 dport=22 seq={i}",
            i % 250
        )?;
        if chunk.len() >= 240 * 1024 {
            s.write_all(&chunk)?;
            chunk.clear();
        }
    }
    s.write_all(&chunk)?;
    s.shutdown(std::net::Shutdown::Write)?;
    eprintln!("sent {n} lines in {:.3}s", start.elapsed().as_secs_f64());
    Ok(())
}
