//! Syslog from appliances: real senders (`logger`, `rsyslogd`) and hostile
//! ones, against the real collector. Counts come from the collector's
//! metrics and `socctl status`; no test asserts on timing, only on generous
//! deadlines.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use soc_e2e::{Collector, metric_value, wait_for};

use crate::skeleton::UFW_BLOCK_SSH;

/// The bound syslog listeners, from the collector's ready file.
#[derive(Debug, serde::Deserialize)]
struct Addrs {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

/// Starts a collector with UDP, TCP and TLS syslog listeners on loopback and
/// `extra` appended to its `[syslog]` section.
fn start(dir: &Path, extra: &str) -> anyhow::Result<(Collector, Addrs)> {
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "[syslog]\nudp_listen = \"127.0.0.1:0\"\ntcp_listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n{extra}\n"
        ),
    )?;
    let data = dir.join("data");
    let c = Collector::start(
        &data,
        "127.0.0.1:0",
        &["--config", &cfg.display().to_string()],
    )?;
    let ready: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("ready.json"))?)?;
    let addrs: Addrs = serde_json::from_value(ready["syslog"].clone())?;
    Ok((c, addrs))
}

fn metric(c: &Collector, name: &str, labels: &str) -> f64 {
    c.metrics_text()
        .map(|m| metric_value(&m, name, labels))
        .unwrap_or(-1.0)
}

fn journalled(c: &Collector, sender: &str) -> f64 {
    metric(
        c,
        "soc_syslog_messages_journalled_total",
        &format!("sender=\"{sender}\""),
    )
}

/// Waits until `sender` has exactly `n` messages journalled; fails with the
/// collector's log otherwise.
fn wait_journalled(c: &Collector, sender: &str, n: u64, timeout: Duration) -> anyhow::Result<()> {
    let mut last = 0.0;
    wait_for(&format!("{n} messages from {sender}"), timeout, || {
        last = journalled(c, sender);
        (last >= n as f64).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e} (have {last})\ncollector log:\n{}", tail(&c.log_text())))?;
    assert_eq!(journalled(c, sender), n as f64, "no more than sent");
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn journal_count(c: &Collector) -> anyhow::Result<u64> {
    c.status()?["journal_last_seq"]
        .as_u64()
        .context("journal_last_seq")
}

fn logger(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("logger")
        .args(args)
        .output()
        .context("running logger (util-linux)")?;
    if !out.status.success() {
        bail!("logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn lines_file(path: &Path, prefix: &str, n: usize) -> anyhow::Result<()> {
    let text: String = (0..n).map(|i| format!("{prefix} line {i}\n")).collect();
    std::fs::write(path, text)?;
    Ok(())
}

const LOOPBACK_SENDER: &str = "[[syslog.senders]]\nname = \"lo-fw\"\ncidr = \"127.0.0.1/32\"\nsource_type = \"iptables\"\nlabels = { agency = \"edge\" }\n";

#[test]
fn logger_over_udp_tcp_and_rfc5424_arrives_attributed_to_its_sender() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, a) = start(
        tmp.path(),
        &format!("allow_unknown = false\n{LOOPBACK_SENDER}"),
    )?;
    let udp = a.udp.context("udp")?.port().to_string();
    let tcp = a.tcp.context("tcp")?.port().to_string();
    let file = tmp.path().join("lines.txt");
    lines_file(&file, "logger", 50)?;
    let f = file.display().to_string();
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-d",
        "--rfc3164",
        "-t",
        "fw",
        "-f",
        &f,
    ])?;
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-T",
        "--rfc3164",
        "-t",
        "fw",
        "-f",
        &f,
    ])?;
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-T",
        "--rfc5424",
        "--octet-count",
        "-t",
        "fw",
        "-f",
        &f,
    ])?;
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-T",
        "--rfc5424",
        "-t",
        "fw",
        "-f",
        &f,
    ])?;
    wait_journalled(&c, "lo-fw", 200, Duration::from_secs(60))?;
    assert_eq!(
        metric(
            &c,
            "soc_syslog_messages_received_total",
            "transport=\"udp\""
        ),
        50.0
    );
    assert_eq!(
        metric(
            &c,
            "soc_syslog_messages_received_total",
            "transport=\"tcp\""
        ),
        150.0
    );
    assert_eq!(
        metric(&c, "soc_events_received_total", "transport=\"syslog_tcp\""),
        150.0
    );

    // A firewall line sent byte-exact becomes an alert whose evidence names
    // the sender, its transport and address, and the decoder it maps to.
    let mut s = TcpStream::connect(a.tcp.context("tcp")?)?;
    s.write_all(format!("{UFW_BLOCK_SSH}\n").as_bytes())?;
    drop(s);
    let alerts = wait_for(
        "an alert from the syslog line",
        Duration::from_secs(60),
        || {
            let alerts = c.socctl_ndjson(&["alerts", "list"]).ok()?;
            (!alerts.is_empty()).then_some(alerts)
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&c.log_text())))?;
    let ev = &alerts[0]["evidence"][0];
    assert_eq!(ev["line"], UFW_BLOCK_SSH);
    assert_eq!(ev["agent"], "syslog");
    assert_eq!(ev["source"], "lo-fw");
    assert_eq!(ev["path"], "tcp://127.0.0.1");
    assert_eq!(ev["fields"]["source.ip"], "203.0.113.45");
    assert_eq!(ev["fields"]["log.source_type"], "iptables");
    assert_eq!(alerts[0]["labels"]["agency"], "edge");
    assert_eq!(journal_count(&c)?, 201);
    Ok(())
}

#[test]
fn unknown_senders_are_refused_and_counted_when_not_allowed() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, a) = start(
        tmp.path(),
        "allow_unknown = false\n[[syslog.senders]]\nname = \"elsewhere\"\ncidr = \"10.9.0.0/16\"\n",
    )?;
    let u = UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..5 {
        u.send_to(
            b"<13>Mar  1 00:00:00 h p: not allowed",
            a.udp.context("udp")?,
        )?;
    }
    let mut s = TcpStream::connect(a.tcp.context("tcp")?)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.write_all(b"<13>Mar  1 00:00:00 h p: not allowed\n");
    let mut buf = [0u8; 16];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "the connection is closed"
    );
    wait_for("refusals counted", Duration::from_secs(30), || {
        (metric(
            &c,
            "soc_syslog_refused_total",
            "reason=\"unknown_sender\",transport=\"udp\"",
        ) == 5.0
            && metric(
                &c,
                "soc_syslog_refused_total",
                "reason=\"unknown_sender\",transport=\"tcp\"",
            ) == 1.0)
            .then_some(())
    })?;
    assert_eq!(journal_count(&c)?, 0);
    Ok(())
}

#[test]
fn offsets_continue_across_restarts_so_nothing_is_dropped_as_a_duplicate() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg_extra = LOOPBACK_SENDER;
    let send = |addr: SocketAddr, from: usize| -> anyhow::Result<()> {
        let mut s = TcpStream::connect(addr)?;
        let text: String = (from..from + 10)
            .map(|i| format!("<13>restart line {i}\n"))
            .collect();
        s.write_all(text.as_bytes())?;
        Ok(())
    };
    let (mut c, a) = start(tmp.path(), cfg_extra)?;
    send(a.tcp.context("tcp")?, 0)?;
    wait_journalled(&c, "lo-fw", 10, Duration::from_secs(60))?;
    c.stop()?;
    let (mut c, a) = start(tmp.path(), cfg_extra)?;
    send(a.tcp.context("tcp")?, 10)?;
    wait_journalled(&c, "lo-fw", 10, Duration::from_secs(60))?;
    c.kill9();
    let (c, a) = start(tmp.path(), cfg_extra)?;
    send(a.tcp.context("tcp")?, 20)?;
    wait_journalled(&c, "lo-fw", 10, Duration::from_secs(60))?;
    assert_eq!(journal_count(&c)?, 30);
    assert_eq!(metric(&c, "soc_events_duplicate_total", ""), 0.0);
    Ok(())
}

/// rsyslogd started by the test, in the foreground, with its own config
/// and work folder.
struct Rsyslog {
    child: Option<Child>,
    /// rsyslogd's standard error: its own messages (a refused connection
    /// or TLS session, a suspended action) where no system log socket
    /// (`/dev/log`) takes them.
    log: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, conf: &str) -> anyhow::Result<Rsyslog> {
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, conf.replace("@WORK@", &work.display().to_string()))?;
        let log = dir.join("rsyslogd.log");
        let check = Command::new("rsyslogd").arg("-N1").arg("-f").arg(&path).output().context(
            "running rsyslogd (Debian packages rsyslog, rsyslog-gnutls; tests/run.sh installs them)",
        )?;
        if !check.status.success() {
            bail!(
                "rsyslogd -N1 refused the test config:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting rsyslogd")?;
        Ok(Rsyslog {
            child: Some(child),
            log,
        })
    }

    /// Whether rsyslogd still runs, and what it wrote on standard error:
    /// what a failed test shows of it.
    fn log_text(&mut self) -> String {
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => "running".to_string(),
            Some(Ok(Some(exit))) => format!("exited: {exit}"),
            Some(Err(e)) => format!("unknown: {e}"),
            None => "stopped".to_string(),
        };
        let stderr = std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("({e})"));
        format!("status: {status}\nstandard error:\n{stderr}")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
}

#[test]
fn rsyslog_forwards_a_file_over_octet_counted_tcp_and_over_tls_and_every_line_arrives()
-> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, a) = start(tmp.path(), LOOPBACK_SENDER)?;
    const N: usize = 2000;
    let tcp_file = tmp.path().join("to-tcp.log");
    let tls_file = tmp.path().join("to-tls.log");
    lines_file(&tcp_file, "via tcp", N)?;
    lines_file(&tls_file, "via tls", N)?;
    let conf = format!(
        r#"global(workDirectory="@WORK@" defaultNetstreamDriverCAFile="{ca}")
module(load="imfile")
input(type="imfile" file="{tcp_file}" tag="fwtcp:" ruleset="tcp" freshStartTail="off")
input(type="imfile" file="{tls_file}" tag="fwtls:" ruleset="tls" freshStartTail="off")
ruleset(name="tcp") {{
  action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" tcp_framing="octet-counted"
         queue.type="LinkedList" action.resumeRetryCount="-1")
}}
ruleset(name="tls") {{
  action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp"
         streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name"
         streamDriverPermittedPeers="localhost"
         queue.type="LinkedList" action.resumeRetryCount="-1")
}}
"#,
        ca = c.ca_file.display(),
        tcp_file = tcp_file.display(),
        tls_file = tls_file.display(),
        tcp = a.tcp.context("tcp")?.port(),
        tls = a.tls.context("tls")?.port(),
    );
    let mut r = Rsyslog::start(&tmp.path().join("rsyslog"), &conf)?;
    let both = wait_for("every forwarded line", Duration::from_secs(120), || {
        let m = c.metrics_text().ok()?;
        let tcp = metric_value(
            &m,
            "soc_syslog_messages_received_total",
            "transport=\"tcp\"",
        );
        let tls = metric_value(
            &m,
            "soc_syslog_messages_received_total",
            "transport=\"tls\"",
        );
        let j = metric_value(
            &m,
            "soc_syslog_messages_journalled_total",
            "sender=\"lo-fw\"",
        );
        (tcp >= N as f64 && tls >= N as f64 && j >= 2.0 * N as f64).then_some((tcp, tls))
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nrsyslogd:\n{}\ncollector:\n{}",
            r.log_text(),
            tail(&c.log_text())
        )
    })?;
    assert_eq!(both, (N as f64, N as f64), "each line exactly once");
    assert_eq!(journal_count(&c)?, 2 * N as u64);
    assert_eq!(
        metric(&c, "soc_syslog_tls_handshake_failures_total", ""),
        0.0
    );
    Ok(())
}

#[test]
fn udp_loss_under_overload_is_counted_never_silent() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // A tiny queue and a slow-filling writer make the overload certain.
    let (c, a) = start(
        tmp.path(),
        &format!(
            "max_message_bytes = 1024\nqueue_max_bytes = 4096\nbatch_max_wait = \"200ms\"\n{LOOPBACK_SENDER}"
        ),
    )?;
    let u = UdpSocket::bind("127.0.0.1:0")?;
    let to = a.udp.context("udp")?;
    let mut sent = 0u64;
    for i in 0..20_000 {
        if u.send_to(format!("<13>Mar  1 00:00:00 h p: flood {i}").as_bytes(), to)
            .is_ok()
        {
            sent += 1;
        }
    }
    // Every datagram sent is either journalled or counted as dropped, by the
    // collector (queue full) or by the kernel (receive buffer full).
    let mut seen = (0.0, 0.0, 0.0);
    wait_for(
        "journalled + dropped == sent",
        Duration::from_secs(60),
        || {
            let m = c.metrics_text().ok()?;
            seen = (
                metric_value(
                    &m,
                    "soc_syslog_messages_journalled_total",
                    "sender=\"lo-fw\"",
                ),
                metric_value(&m, "soc_syslog_udp_dropped_total", "sender=\"lo-fw\""),
                metric_value(&m, "soc_syslog_udp_receive_buffer_drops", ""),
            );
            (seen.0 + seen.1 + seen.2 == sent as f64).then_some(())
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}: sent {sent}, (journalled, dropped, kernel) = {seen:?}"))?;
    assert!(
        seen.1 + seen.2 > 0.0,
        "the overload dropped something: {seen:?}"
    );
    assert!(seen.0 > 0.0, "and kept something: {seen:?}");
    Ok(())
}

/// A TCP connection from a chosen loopback address (each is a distinct sender).
async fn connect_from(from: &str, to: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{from}:0").parse()?)?;
    Ok(sock.connect(to).await?)
}

#[test]
fn a_trickle_sender_is_served_while_another_floods() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, a) = start(
        tmp.path(),
        "max_message_bytes = 4096\nqueue_max_bytes = 65536\n\
         [[syslog.senders]]\nname = \"flood\"\ncidr = \"127.0.0.2\"\n\
         [[syslog.senders]]\nname = \"trickle\"\ncidr = \"127.0.0.3\"\n",
    )?;
    let tcp = a.tcp.context("tcp")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, flooded) = (stop.clone(), flooded.clone());
        rt.spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut s = connect_from("127.0.0.2", tcp).await?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut chunk = String::with_capacity(64 * 1024);
                for _ in 0..500 {
                    chunk.push_str(&format!(
                        "<13>Mar  1 00:00:00 fw flood[1]: message {i} padding padding padding padding\n"
                    ));
                    i += 1;
                }
                s.write_all(chunk.as_bytes()).await?;
                flooded.store(i, Ordering::Relaxed);
            }
            s.shutdown().await?;
            anyhow::Ok(i)
        })
    };
    // Let the flood fill the queue first.
    wait_for("backpressure on the flood", Duration::from_secs(60), || {
        (metric(
            &c,
            "soc_syslog_backpressure_waits_total",
            "transport=\"tcp\"",
        ) > 0.0)
            .then_some(())
    })?;
    let mut slowest = Duration::ZERO;
    let trickle = rt.block_on(async { connect_from("127.0.0.3", tcp).await })?;
    let mut trickle = trickle.into_std()?;
    trickle.set_nonblocking(false)?;
    for i in 0..20u64 {
        let t0 = Instant::now();
        trickle.write_all(format!("<13>Mar  1 00:00:00 ap trickle[2]: ping {i}\n").as_bytes())?;
        wait_journalled(&c, "trickle", i + 1, Duration::from_secs(30))?;
        slowest = slowest.max(t0.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = rt.block_on(flood)??;
    drop(trickle);
    eprintln!(
        "flood sent {sent} lines ({} while the trickle ran); slowest trickle line took {slowest:?}",
        flooded.load(Ordering::Relaxed)
    );
    wait_journalled(&c, "flood", sent, Duration::from_secs(300))?;
    assert_eq!(journalled(&c, "trickle"), 20.0);
    Ok(())
}

#[test]
fn hostile_input_is_contained_and_counted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, a) = start(
        tmp.path(),
        &format!(
            "max_message_bytes = 1024\nmax_connections = 200\nidle_timeout = \"3s\"\nhandshake_timeout = \"1s\"\n{LOOPBACK_SENDER}"
        ),
    )?;
    let tcp = a.tcp.context("tcp")?;
    let tls = a.tls.context("tls")?;

    // Garbage in an octet-counted stream: the connection is closed and counted.
    let mut s = TcpStream::connect(tcp)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"12 <13>counted!\xff\xfe garbage \x00\x01")?;
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    // Binary garbage in a line stream is just lines, kept byte-exact.
    let mut s = TcpStream::connect(tcp)?;
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    s.write_all(&garbage)?;
    drop(s);
    // An endless line: cut at the limit, the rest discarded, the stream goes on.
    let mut s = TcpStream::connect(tcp)?;
    let x = vec![b'x'; 1 << 20];
    for _ in 0..8 {
        s.write_all(&x)?;
    }
    s.write_all(b"\n<13>after the endless line\n")?;
    drop(s);
    wait_for(
        "the framing error and the cut line",
        Duration::from_secs(60),
        || {
            (metric(&c, "soc_syslog_framing_errors_total", "transport=\"tcp\"") == 1.0
                && metric(&c, "soc_syslog_truncated_total", "transport=\"tcp\"") >= 1.0)
                .then_some(())
        },
    )?;

    // A TLS handshake that never finishes is cut off at handshake_timeout.
    let mut h = TcpStream::connect(tls)?;
    h.set_read_timeout(Some(Duration::from_secs(30)))?;
    h.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])?; // a record header, then nothing
    assert!(
        matches!(h.read(&mut buf), Ok(0) | Err(_)),
        "closed by the collector"
    );
    assert_eq!(
        metric(
            &c,
            "soc_syslog_tls_handshake_failures_total",
            "reason=\"timeout\""
        ),
        1.0
    );

    // 2,000 idle connections: at most max_connections are held, the rest are
    // refused and counted, and the idle ones are closed after idle_timeout.
    let mut idle = Vec::new();
    let mut max_open = 0.0f64;
    for i in 0..2000 {
        if let Ok(s) = TcpStream::connect_timeout(&tcp, Duration::from_secs(5)) {
            idle.push(s);
        }
        if i % 250 == 0 {
            max_open = max_open.max(metric(
                &c,
                "soc_syslog_connections_open",
                "transport=\"tcp\"",
            ));
        }
    }
    let refused = wait_for("refusals", Duration::from_secs(60), || {
        let r = metric(
            &c,
            "soc_syslog_refused_total",
            "reason=\"max_connections\",transport=\"tcp\"",
        );
        (r > 0.0).then_some(r)
    })?;
    max_open = max_open.max(metric(
        &c,
        "soc_syslog_connections_open",
        "transport=\"tcp\"",
    ));
    assert!(
        max_open <= 200.0,
        "at most max_connections open: {max_open}"
    );
    wait_for("idle connections closed", Duration::from_secs(60), || {
        (metric(&c, "soc_syslog_connections_open", "transport=\"tcp\"") == 0.0
            && metric(&c, "soc_syslog_idle_closed_total", "transport=\"tcp\"") >= 1.0)
            .then_some(())
    })?;
    drop(idle);
    eprintln!("2000 idle connections: {refused} refused, at most {max_open} open");

    // Still serving: a normal line arrives.
    let before = journalled(&c, "lo-fw") as u64;
    let mut s = TcpStream::connect(tcp)?;
    s.write_all(b"<13>Mar  1 00:00:00 fw p: still here\n")?;
    drop(s);
    wait_journalled(&c, "lo-fw", before + 1, Duration::from_secs(60))?;
    // The counted frame before the garbage, the garbage lines, the cut line and the one after it.
    assert!(before >= 3, "{before}");
    Ok(())
}

/// With `detection.allowed_lateness`, events wait for late ones, at most
/// `detection.max_held_back` of them: past that the oldest is evaluated
/// early and counted.
#[test]
fn events_held_back_for_a_lateness_are_bounded_and_counted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let extra =
        format!("{LOOPBACK_SENDER}[detection]\nallowed_lateness = \"1h\"\nmax_held_back = 4\n");
    let (c, a) = start(tmp.path(), &extra)?;
    let text: String = (0..10).map(|i| format!("<13>held line {i}\n")).collect();
    TcpStream::connect(a.tcp.context("tcp")?)?.write_all(text.as_bytes())?;
    wait_journalled(&c, "lo-fw", 10, Duration::from_secs(60))?;
    // Ten events within the hour: four wait, six were evaluated early.
    let mut last = (0.0, 0.0);
    wait_for("six early, four waiting", Duration::from_secs(60), || {
        last = (
            metric(&c, "soc_detection_held_back_overflow_total", ""),
            metric(&c, "soc_detection_held_back_events", ""),
        );
        (last == (6.0, 4.0)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e} (have {last:?})\n{}", tail(&c.log_text())))?;
    Ok(())
}
