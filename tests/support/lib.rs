//! Support for the end-to-end tests: start the real `soc-collector`,
//! `soc-agent` and `socctl` binaries on port 0 with temporary folders, and
//! drive them the way an operator would.
//!
//! The binaries are built once per test run with the same cargo and profile
//! as the tests themselves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;

/// The folder holding the workspace's binaries (`target/<profile>`).
fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test binary>
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test binary lives in target/<profile>/deps")
                .to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "soc-agent",
                "-p",
                "soc-collector",
                "--bins",
            ])
            .current_dir(workspace_root());
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build for the binaries");
            assert!(status.success(), "cargo build of the binaries failed");
            dir
        })
        .clone()
}

/// The workspace's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of one of the project's binaries, built if needed.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Serialises the tests that drive an agent at full speed against real
/// logrotate (the rotation modes and the kill -9 loop), so two of them never
/// compete for the machine's two cores. Under CPU starvation the agent's
/// copytruncate handling is known to re-send a copy as a new stream
/// (duplicates); that is an open defect, reproduced by running the
/// copytruncate test beside two busy loops, and kept out of the way of the
/// other tests rather than hidden: the test itself still fails on it.
pub fn full_speed_agent() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
}

/// A running collector.
pub struct Collector {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub https: String,
    pub metrics: Option<String>,
    pub ca_file: PathBuf,
    pub token: String,
    log: PathBuf,
}

#[derive(serde::Deserialize)]
struct Ready {
    https: String,
    metrics: Option<String>,
    ca_file: Option<PathBuf>,
    admin_token_file: PathBuf,
}

impl Collector {
    /// Starts a collector with its data under `data_dir`, HTTPS on `listen`
    /// (`127.0.0.1:0` for any port) and `extra` arguments.
    pub fn start(data_dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Collector> {
        std::fs::create_dir_all(data_dir)?;
        let ready = data_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = data_dir.join("collector.log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(bin("soc-collector"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--listen",
                listen,
                "--metrics-listen",
                "127.0.0.1:0",
                "--ready-file",
            ])
            .arg(&ready)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .context("starting soc-collector")?;
        let mut c = Collector {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            https: String::new(),
            metrics: None,
            ca_file: PathBuf::new(),
            token: String::new(),
            log,
        };
        let r: Ready = wait_for(
            "the collector's ready file",
            Duration::from_secs(60),
            || {
                if let Some(ch) = c.child.as_mut()
                    && let Ok(Some(status)) = ch.try_wait()
                {
                    panic!("collector exited early with {status}:\n{}", c.log_text());
                }
                let text = std::fs::read(&ready).ok()?;
                serde_json::from_slice(&text).ok()
            },
        )?;
        c.https = format!("https://{}", r.https);
        c.metrics = r.metrics.map(|m| format!("http://{m}"));
        c.ca_file = r
            .ca_file
            .context("the test collector uses a generated CA")?;
        c.token = std::fs::read_to_string(&r.admin_token_file)?
            .trim()
            .to_owned();
        Ok(c)
    }

    /// The collector's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTPS address without scheme (`127.0.0.1:PORT`).
    pub fn addr(&self) -> &str {
        self.https.trim_start_matches("https://")
    }

    /// Kills the collector with SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    /// Stops the collector with SIGTERM and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut ch) = self.child.take() {
            signal(&ch, "TERM");
            let status = ch.wait()?;
            if !status.success() {
                bail!("collector exited with {status}:\n{}", self.log_text());
            }
        }
        Ok(())
    }

    /// Runs socctl against this collector.
    pub fn socctl(&self, args: &[&str]) -> Output {
        Command::new(bin("socctl"))
            .args(args)
            .env("SOC_SERVER", &self.https)
            .env("SOC_TOKEN", &self.token)
            .env("SOC_CA_CERT", &self.ca_file)
            .env("NO_COLOR", "1")
            .output()
            .expect("running socctl")
    }

    /// Runs socctl with `--json` and parses its output (one document).
    pub fn socctl_json<T: DeserializeOwned>(&self, args: &[&str]) -> anyhow::Result<T> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.socctl(&all);
        if !out.status.success() {
            bail!(
                "socctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing socctl {args:?} output"))
    }

    /// Runs socctl with `--json` and parses NDJSON output.
    pub fn socctl_ndjson(&self, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.socctl(&all);
        if !out.status.success() {
            bail!(
                "socctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("parsing an NDJSON line"))
            .collect()
    }

    /// `socctl status --json`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        self.socctl_json(&["status"])
    }

    /// Enrols an agent and returns its one-time secret.
    pub fn enroll(&self, name: &str) -> anyhow::Result<String> {
        let v: serde_json::Value = self.socctl_json(&["agents", "enroll", name])?;
        v["secret"]
            .as_str()
            .map(str::to_owned)
            .context("enrol answer has a secret")
    }

    /// Fetches the Prometheus text exposition over plain HTTP.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let url = self.metrics.as_ref().context("metrics listener is on")?;
        let addr = url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let (head, body) = buf.split_once("\r\n\r\n").context("an HTTP answer")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET {url}/metrics: {head}");
        }
        Ok(body.to_owned())
    }
}

/// The value of a metric series in a Prometheus text exposition, summed
/// over the series whose labels contain `labels` (e.g. `severity="high"`).
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running agent.
pub struct Agent {
    child: Option<Child>,
    pub config: PathBuf,
    log: PathBuf,
}

impl Agent {
    /// Starts `soc-agent --config <config>`.
    pub fn start(config: &Path) -> anyhow::Result<Agent> {
        let log = config.with_extension("log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(bin("soc-agent"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .context("starting soc-agent")?;
        Ok(Agent {
            child: Some(child),
            config: config.to_owned(),
            log,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the agent is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut ch) = self.child.take() {
            signal(&ch, "TERM");
            let status = ch.wait()?;
            if !status.success() {
                bail!("agent exited with {status}:\n{}", self.log_text());
            }
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One `[[sources]]` entry of an agent configuration.
pub struct SourceSpec<'a> {
    pub name: &'a str,
    pub source_type: &'a str,
    pub include: &'a Path,
}

/// Writes an agent configuration for `collector` and returns its path.
/// `secret` is the enrolment secret (needed on first start only).
pub fn write_agent_config(
    dir: &Path,
    name: &str,
    collector: &Collector,
    secret: &str,
    sources: &[SourceSpec<'_>],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("state"))?;
    let mut toml = format!(
        "[agent]\nname = \"{name}\"\ndata_dir = \"{state}\"\n\n\
         [collector]\nurl = \"{url}\"\nca_file = \"{ca}\"\nenrollment_secret = \"{secret}\"\n\n\
         [shipping]\nbatch_max_lines = 1000\nflush_interval = \"200ms\"\nretry_initial = \"100ms\"\nretry_max = \"1s\"\n\
         heartbeat_interval = \"1s\"\n",
        state = dir.join("state").display(),
        url = collector.https,
        ca = collector.ca_file.display(),
    );
    for s in sources {
        toml.push_str(&format!(
            "\n[[sources]]\nname = \"{}\"\ntype = \"{}\"\ninclude = [\"{}\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n",
            s.name,
            s.source_type,
            s.include.display()
        ));
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The usual agency machine: a firewall log (`ufw`, iptables) and a ClamAV
/// log (`clamav`).
pub fn firewall_and_antivirus<'a>(fw: &'a Path, av: &'a Path) -> [SourceSpec<'a>; 2] {
    [
        SourceSpec {
            name: "ufw",
            source_type: "iptables",
            include: fw,
        },
        SourceSpec {
            name: "clamav",
            source_type: "clamav",
            include: av,
        },
    ]
}

/// Appends lines to a file, creating it if needed.
pub fn append_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    Ok(())
}

/// One `[[sources]]` entry with several include and exclude globs and extra
/// raw TOML keys (for example `rotate_wait = "1s"`).
pub struct GlobSource<'a> {
    pub name: &'a str,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub extra: &'a str,
}

/// Like [`write_agent_config`], for sources given as [`GlobSource`]s.
pub fn write_agent_config_globs(
    dir: &Path,
    name: &str,
    collector: &Collector,
    secret: &str,
    sources: &[GlobSource<'_>],
) -> anyhow::Result<PathBuf> {
    let path = write_agent_config(dir, name, collector, secret, &[])?;
    let mut toml = std::fs::read_to_string(&path)?;
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for s in sources {
        toml.push_str(&format!(
            "\n[[sources]]\nname = \"{}\"\ninclude = [{}]\nexclude = [{}]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n{}\n",
            s.name,
            list(&s.include),
            list(&s.exclude),
            s.extra,
        ));
    }
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// One journalled line, as `socctl journal dump` prints it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JournalLine {
    pub seq: u64,
    pub agent: String,
    pub stream: String,
    pub offset: u64,
    pub path: String,
    pub line: String,
}

impl Collector {
    /// Every journalled line, in sequence order (`socctl journal dump`).
    pub fn journal_lines(&self) -> anyhow::Result<Vec<JournalLine>> {
        self.socctl_ndjson(&["journal", "dump"])?
            .into_iter()
            .map(|v| serde_json::from_value(v).context("a journal dump line"))
            .collect()
    }

    /// `journal_last_seq` from `socctl status` (0 if it cannot be read).
    pub fn journal_len(&self) -> u64 {
        self.status()
            .ok()
            .and_then(|s| s["journal_last_seq"].as_u64())
            .unwrap_or(0)
    }
}

/// The `n`th line a [`LineWriter`] writes: unique, of mixed lengths.
pub fn numbered_line(prefix: &str, n: u64) -> String {
    let pad = "x".repeat((n.wrapping_mul(7919) % 97) as usize);
    format!("Nov 28 08:02:44 web-01 app[4242]: {prefix} seq={n:09} {pad}")
}

/// The `n` of a [`numbered_line`].
pub fn line_number(l: &str) -> Option<u64> {
    let rest = &l[l.find(" seq=")? + 5..];
    rest.get(..9)?.parse().ok()
}

/// Lines [`LineWriter`] appends with one open and write of the file.
pub const LINES_PER_WRITE: u64 = 100;

/// A thread appending [`numbered_line`]s to a file, [`LINES_PER_WRITE`] to
/// a write (the file opened anew for each), until
/// it has written `target` lines (raised with [`LineWriter::allow`]), at
/// full speed or at `rate` lines per second. Like a program that reopens
/// its log for every write, it never creates the file: while logrotate has
/// renamed it and not yet created the new one, it waits.
pub struct LineWriter {
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    target: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    prefix: String,
}

impl LineWriter {
    /// Starts writing to `path` (which must exist) with `target` lines allowed.
    pub fn start(path: &Path, prefix: &str, target: u64, rate: Option<u64>) -> LineWriter {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        let written = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(target));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, t, s) = (written.clone(), target.clone(), stop.clone());
        let (path, p) = (path.to_owned(), prefix.to_owned());
        let handle = std::thread::spawn(move || -> anyhow::Result<()> {
            use std::io::Write as _;
            let start = Instant::now();
            let mut n = 0u64;
            let mut buf = String::new();
            while !s.load(SeqCst) {
                let mut allowed = t.load(SeqCst);
                if let Some(rate) = rate {
                    let by_rate = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    allowed = allowed.min(by_rate);
                }
                if n >= allowed {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let end = (n + LINES_PER_WRITE).min(allowed);
                buf.clear();
                for i in n..end {
                    buf.push_str(&numbered_line(&p, i));
                    buf.push('\n');
                }
                let mut f = match std::fs::OpenOptions::new().append(true).open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(e) => return Err(e).context(format!("opening {}", path.display())),
                };
                f.write_all(buf.as_bytes())?;
                n = end;
                w.store(n, SeqCst);
            }
            Ok(())
        });
        LineWriter {
            written,
            target,
            stop,
            handle: Some(handle),
            prefix: prefix.to_owned(),
        }
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Allows `more` lines beyond the current target.
    pub fn allow(&self, more: u64) {
        self.target
            .fetch_add(more, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until `n` lines are written (or the writer failed).
    pub fn wait_written(&self, n: u64) -> anyhow::Result<()> {
        // Polls every millisecond: the caller wants to act mid-burst.
        let start = Instant::now();
        while self.written() < n {
            if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                bail!("the writer stopped after {} lines", self.written());
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("the writer wrote {} of {n} lines in 120 s", self.written());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Stops the writer and returns every line it wrote.
    pub fn finish(mut self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
        }
        Ok((0..self.written())
            .map(|n| numbered_line(&self.prefix, n))
            .collect())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `logrotate -f -s <state> <conf>`, failing with a clear message when
/// logrotate is not installed (`tests/run.sh` installs it).
pub fn logrotate(conf: &Path, state: &Path) -> anyhow::Result<()> {
    // Debian puts it in /usr/sbin, which a user's PATH may lack.
    let exe = if Path::new("/usr/sbin/logrotate").exists() {
        "/usr/sbin/logrotate"
    } else {
        "logrotate"
    };
    let out = Command::new(exe)
        .arg("-f")
        .arg("-s")
        .arg(state)
        .arg(conf)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run logrotate ({e}): install the Debian package `logrotate` \
                 (tests/run.sh does it)"
            )
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // With `compress` and no `delaycompress`, a writer still holding the old
    // file can append while gzip reads it; gzip warns and logrotate exits 0.
    // That is the race delaycompress exists for, not a failure of the run:
    // whether any line was lost is what the calling test checks.
    let only_gzip_race = stderr.lines().all(|l| {
        l.trim().is_empty()
            || l.contains("Compressing program wrote following message")
            || l.contains("file size changed while zipping")
    });
    if !out.status.success() || (!stderr.is_empty() && !only_gzip_race) {
        bail!(
            "logrotate {} failed ({}): {}",
            conf.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// SHA-256 (hex) of `lines` sorted, each followed by a newline: equal for
/// two lists holding the same lines, whatever their order.
pub fn sorted_sha256(lines: &[String]) -> String {
    use sha2::Digest as _;
    let mut v: Vec<&String> = lines.iter().collect();
    v.sort();
    let mut h = sha2::Sha256::new();
    for l in v {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Lines of `want` missing from `got`, and lines of `got` beyond `want`
/// (duplicates included), as multisets, sorted.
pub fn multiset_diff(want: &[String], got: &[String]) -> (Vec<String>, Vec<String>) {
    let mut count = std::collections::HashMap::<&str, i64>::new();
    for l in want {
        *count.entry(l).or_default() += 1;
    }
    for l in got {
        *count.entry(l).or_default() -= 1;
    }
    let mut missing: Vec<String> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    for (l, n) in count {
        for _ in 0..n.unsigned_abs() {
            let v = if n > 0 { &mut missing } else { &mut extra };
            v.push(l.to_owned());
        }
    }
    missing.sort();
    extra.sort();
    (missing, extra)
}
