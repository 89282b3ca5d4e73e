//! Collector configuration, loaded in two phases: [`CollectorConfig`] is what the
//! TOML file says (every key optional, unknown keys refused), [`CollectorConfig::build`]
//! turns it into [`Settings`], a value that cannot be invalid.
//! [`CollectorConfig::settings`] does both and reports every mistake of the
//! file at once, each with its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use soc_config::DurationText;

mod workflow;
pub use workflow::{
    ApiConfig, ApiSettings, DeliverySettings, ForwardConfig, ForwardSettings, RetentionConfig,
    RetentionSettings, SyslogConfig, SyslogSettings, WebhookConfig, WebhookSettings,
};

/// Why a configuration could not be used. Every variant names the file and,
/// where it has one, the key and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax error, or a key or value the file's format refuses.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value the checks refuse; `line` when the key is in the file (it
    /// may come from the command line or a default).
    #[error("{}: key `{key}`: {message}", place(path, *line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: &'static str,
        message: String,
    },
    /// A value given on the command line that the checks refuse.
    #[error("command line: {flag} (key `{key}`): {message}")]
    Flag {
        flag: &'static str,
        key: &'static str,
        message: String,
    },
    /// More than one of the above, in the order of the file.
    #[error("{}", soc_config::one_a_line(.0))]
    Several(Vec<ConfigError>),
}

/// Values given on the command line, which win over the file's.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// `--data-dir`: `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`: `server.listen`.
    pub listen: Option<String>,
    /// `--metrics-listen`: `metrics.listen`.
    pub metrics_listen: Option<String>,
}

impl CommandLine {
    /// Puts each value given over `cfg`'s, but for the keys in `refused`;
    /// the (key, flag) of each value put.
    fn apply(
        &self,
        cfg: &mut CollectorConfig,
        refused: &[&str],
    ) -> Vec<(&'static str, &'static str)> {
        let mut put = Vec::new();
        let wanted = |key: &str| !refused.contains(&key);
        if let Some(d) = self.data_dir.as_ref().filter(|_| wanted("data_dir")) {
            cfg.data_dir = Some(d.clone());
            put.push(("data_dir", "--data-dir"));
        }
        if let Some(l) = self.listen.as_ref().filter(|_| wanted("server.listen")) {
            cfg.server.listen = Some(l.clone());
            put.push(("server.listen", "--listen"));
        }
        if let Some(l) = self
            .metrics_listen
            .as_ref()
            .filter(|_| wanted("metrics.listen"))
        {
            cfg.metrics.listen = Some(l.clone());
            put.push(("metrics.listen", "--metrics-listen"));
        }
        put
    }
}

impl ConfigError {
    /// One error, or [`ConfigError::Several`] in the order of the file.
    fn from_all(errors: Vec<ConfigError>) -> ConfigError {
        soc_config::one_or_several(errors, ConfigError::line, ConfigError::Several)
    }

    fn line(&self) -> usize {
        match self {
            ConfigError::Parse { line, .. } => *line,
            ConfigError::Invalid { line, .. } => line.unwrap_or(usize::MAX),
            ConfigError::Read { .. } | ConfigError::Flag { .. } | ConfigError::Several(_) => 0,
        }
    }
}

fn place(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

/// The collector's configuration file. Every key has a default; an empty file
/// (or no file at all) starts a collector on loopback with the shipped rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Where the database, TLS material and the first admin token live.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The HTTPS listener agents and socctl talk to.
    #[serde(default)]
    pub server: ServerConfig,
    /// TLS certificate and key; generated on first start when unset.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The plain-HTTP listener Prometheus scrapes.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where decoders and rules come from.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Limits of the ingest path.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The detection worker.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Syslog listeners for appliances (UDP, TCP, TLS) and the known senders.
    #[serde(default)]
    pub syslog: crate::syslog::SyslogConfig,
    /// The responders' API: follow streams and failed-authentication limits.
    #[serde(default)]
    pub api: ApiConfig,
    /// How long closed alerts, the raw journal and the audit log are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Alerts pushed to other systems (webhook, syslog CEF).
    #[serde(default)]
    pub forward: ForwardConfig,
    /// Snapshots of rule state, detection cursor and alert store.
    #[serde(default)]
    pub backup: BackupConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Folder the backups are written to. Default `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// Time between scheduled backups, counted from the newest backup in
    /// `dir`; a backup is also written at shutdown. `off` writes neither
    /// (`socctl backup create` still works). Default `6h`.
    pub interval: Option<DurationText>,
    /// Backups kept in `dir`; after each new one the oldest beyond this
    /// number are deleted. Default 7.
    pub keep: Option<usize>,
}

/// Validated `[backup]`.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub dir: PathBuf,
    /// `None`: no scheduled and no shutdown backups.
    pub interval: Option<Duration>,
    pub keep: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTPS listener (agents and API). Default `127.0.0.1:8443`.
    pub listen: Option<String>,
    /// Most simultaneous connections; further ones are closed at once. Default 1024.
    pub max_connections: Option<usize>,
    /// Time a client has to finish the TLS handshake. Default `10s`.
    pub handshake_timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. When both `cert_file` and `key_file` are unset,
    /// a private CA and a server certificate are generated under
    /// `<data_dir>/tls/` on first start and reused afterwards.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated certificate, besides
    /// `localhost`, `127.0.0.1`, `::1` and this machine's host name.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the plain-HTTP `/metrics` and `/healthz` listener. Default
    /// `127.0.0.1:9464`. Set to `""` to disable.
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// A folder of decoder files (`*.yml`, `*.yaml`) loaded in addition to
    /// the shipped decoders.
    pub decoders_dir: Option<PathBuf>,
    /// A folder of rule files (`*.yml`, `*.yaml`) loaded in addition to the
    /// shipped rules.
    pub rules_dir: Option<PathBuf>,
    /// Load the decoders and rules shipped inside the binary. Default true.
    pub builtin: Option<bool>,
    /// A folder of list files for `in_list:` (one entry per line; the list's
    /// name is the file name without extension). A file named like a shipped
    /// list replaces it.
    pub lists_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Batches written to the journal at the same time; a batch arriving when
    /// all are busy waits up to `queue_timeout`, then gets 429 with Retry-After.
    /// Default 4.
    pub max_concurrent_batches: Option<usize>,
    /// How long a batch may wait for a journal writer, and for the batch
    /// it follows (`x-soc-after`). Default `5s`.
    pub queue_timeout: Option<DurationText>,
    /// Journal entries not yet processed by detection past which agents get
    /// 503 with Retry-After, so a slow detection cannot make the journal grow
    /// without bound. Default 2,000,000.
    pub max_detection_lag: Option<u64>,
    /// `Retry-After` sent with 429/503, in seconds. Default 2.
    pub retry_after_secs: Option<u64>,
    /// Lifetime of an enrolment secret issued by `socctl agents enroll`. Default `24h`.
    pub enrollment_ttl: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Journal entries the detection worker reads at a time. A step reads
    /// batch after batch for up to 250 ms while the journal has more, then
    /// commits its alerts, cursor and rule state together. Default 2048.
    pub batch_size: Option<usize>,
    /// Raw lines kept on an alert as evidence. Default 20.
    pub max_evidence: Option<usize>,
    /// How far behind the newest event an event may arrive and still be
    /// evaluated in time order (it waits that long in event time). Default `0s`.
    pub allowed_lateness: Option<DurationText>,
    /// Events held back for `allowed_lateness` at most; beyond, the oldest
    /// is evaluated at once. Default 10,000.
    pub max_held_back: Option<usize>,
    /// Open groups (thresholds, sequences, ...) per rule; the least recently
    /// used is evicted beyond. Default 100,000.
    pub max_groups_per_rule: Option<usize>,
    /// Open groups over all rules. Default 1,000,000.
    pub max_total_groups: Option<usize>,
    /// Scheduling niceness (0-19) of the detection thread on Linux: when
    /// the CPU is short, accepting and journalling lines goes first and
    /// detection catches up. Default 10; 0 gives it the same priority.
    pub nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log filter in `RUST_LOG` syntax; the `RUST_LOG` variable wins. Default `info`.
    pub level: Option<String>,
    /// `text` or `json`. Default `text`.
    pub format: Option<String>,
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_subject_alt_names: Vec<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub decoders_dir: Option<PathBuf>,
    pub rules_dir: Option<PathBuf>,
    pub builtin_rules: bool,
    pub max_concurrent_batches: usize,
    pub queue_timeout: Duration,
    pub max_detection_lag: u64,
    pub retry_after_secs: u64,
    pub enrollment_ttl: Duration,
    pub detection_batch_size: usize,
    pub max_evidence: usize,
    pub lists_dir: Option<PathBuf>,
    pub allowed_lateness: Duration,
    pub max_held_back: usize,
    pub max_groups_per_rule: usize,
    pub max_total_groups: usize,
    pub detection_nice: i32,
    pub log_level: String,
    pub log_json: bool,
    pub syslog: crate::syslog::SyslogSettings,
    pub api: ApiSettings,
    pub retention: RetentionSettings,
    pub forward: ForwardSettings,
    pub backup: BackupSettings,
}

impl CollectorConfig {
    /// Reads and parses a TOML file. Parse errors carry the line and column.
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        CollectorConfig::parse(path, &text)
    }

    /// Parses TOML text; `path` is only used in messages. Every key the
    /// file's format refuses is reported, not only the first.
    pub fn parse(path: &Path, text: &str) -> Result<CollectorConfig, ConfigError> {
        let read = soc_config::read::<CollectorConfig>(text);
        match read.value {
            Some(cfg) if read.mistakes.is_empty() => Ok(cfg),
            _ => Err(ConfigError::from_all(parse_errors(path, read.mistakes))),
        }
    }

    /// Reads `text` (the file at `path`; empty for the embedded defaults),
    /// puts the values of `command_line` over it, and builds the settings,
    /// reporting every mistake at once: each key the format or
    /// [`CollectorConfig::build`] refuses is reported, left out, and the
    /// file read and built again with that key's default. A refused
    /// command-line value is reported as such, and the file built again
    /// with its own value of that key, so that its mistakes are reported
    /// too.
    pub fn settings(
        text: &str,
        path: &Path,
        base: &Path,
        command_line: &CommandLine,
    ) -> Result<Settings, ConfigError> {
        let mut doc = soc_config::Document::parse(text)
            .map_err(|m| ConfigError::from_all(parse_errors(path, m)))?;
        let mut errors: Vec<ConfigError> = Vec::new();
        // Keys whose command-line value was refused.
        let mut refused: Vec<&'static str> = Vec::new();
        // Each round leaves out one key or table, or one command-line
        // value; a check whose key cannot be left out ends the rounds.
        for _ in 0..256 {
            let read = doc.read::<CollectorConfig>();
            errors.extend(parse_errors(path, read.mistakes));
            let Some(mut cfg) = read.value else { break };
            let put = command_line.apply(&mut cfg, &refused);
            match cfg.build(path, base) {
                Ok(settings) if errors.is_empty() => return Ok(settings),
                Ok(_) => break,
                Err(ConfigError::Invalid {
                    path, key, message, ..
                }) => {
                    // A command-line value goes, the file's own comes back.
                    if let Some(&(_, flag)) = put.iter().find(|(k, _)| *k == key) {
                        errors.push(ConfigError::Flag { flag, key, message });
                        refused.push(key);
                        continue;
                    }
                    // The key goes; when the file does not have it (any
                    // more: it went and its check still fails, the mistake
                    // is in how it goes with another key of its table),
                    // the table holding it goes.
                    let again = errors
                        .iter()
                        .any(|e| matches!(e, ConfigError::Invalid { key: k, .. } if *k == key));
                    let mut target = key;
                    let line = loop {
                        if let Some(l) = doc.leave_out(target) {
                            break Some(l);
                        }
                        match target.rsplit_once('.') {
                            Some((table, _)) => target = table,
                            None => break None,
                        }
                    };
                    if !again {
                        errors.push(ConfigError::Invalid {
                            path,
                            line,
                            key,
                            message,
                        });
                    }
                    if line.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        Err(ConfigError::from_all(errors))
    }

    /// Validates every key and fills in defaults. Relative paths are taken
    /// relative to `base` (the config file's folder, or the working folder).
    pub fn build(self, path: &Path, base: &Path) -> Result<Settings, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            key,
            message,
        };
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let addr = |key: &'static str, v: &str| {
            v.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    key,
                    format!("`{v}` is not an address like 127.0.0.1:8443: {e}"),
                )
            })
        };
        let duration = |key: &'static str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| invalid(key, format!("`{v}` is not a duration like 5s or 24h: {e}")))
        };
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err(invalid(key, "must be at least 1".into()))
            } else {
                Ok(v)
            }
        };

        let data_dir = resolve(self.data_dir.unwrap_or_else(|| PathBuf::from("soc-data")));
        let listen = addr(
            "server.listen",
            self.server.listen.as_deref().unwrap_or("127.0.0.1:8443"),
        )?;
        let metrics_listen = match self.metrics.listen.as_deref() {
            Some("") => None,
            Some(v) => Some(addr("metrics.listen", v)?),
            None => Some(addr("metrics.listen", "127.0.0.1:9464")?),
        };
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid(
                "tls.cert_file",
                "set both tls.cert_file and tls.key_file, or neither to generate them".into(),
            ));
        }
        let format = self.log.format.as_deref().unwrap_or("text");
        if format != "text" && format != "json" {
            return Err(invalid(
                "log.format",
                format!("`{format}` is not `text` or `json`"),
            ));
        }
        let log_level = self.log.level.unwrap_or_else(|| "info".into());
        soc_config::log_filter(&log_level).map_err(|m| invalid("log.level", m))?;
        Ok(Settings {
            listen,
            max_connections: positive(
                "server.max_connections",
                self.server.max_connections.unwrap_or(1024),
            )?,
            handshake_timeout: duration(
                "server.handshake_timeout",
                self.server.handshake_timeout.as_deref().unwrap_or("10s"),
            )?,
            tls_cert_file: self.tls.cert_file.map(resolve),
            tls_key_file: self.tls.key_file.map(resolve),
            tls_subject_alt_names: self.tls.subject_alt_names,
            metrics_listen,
            decoders_dir: self.rules.decoders_dir.map(resolve),
            rules_dir: self.rules.rules_dir.map(resolve),
            builtin_rules: self.rules.builtin.unwrap_or(true),
            max_concurrent_batches: positive(
                "ingest.max_concurrent_batches",
                self.ingest.max_concurrent_batches.unwrap_or(4),
            )?,
            queue_timeout: duration(
                "ingest.queue_timeout",
                self.ingest.queue_timeout.as_deref().unwrap_or("5s"),
            )?,
            max_detection_lag: self.ingest.max_detection_lag.unwrap_or(2_000_000).max(1),
            retry_after_secs: self.ingest.retry_after_secs.unwrap_or(2).max(1),
            enrollment_ttl: duration(
                "ingest.enrollment_ttl",
                self.ingest.enrollment_ttl.as_deref().unwrap_or("24h"),
            )?,
            detection_batch_size: positive(
                "detection.batch_size",
                self.detection.batch_size.unwrap_or(2048),
            )?,
            max_evidence: positive(
                "detection.max_evidence",
                self.detection.max_evidence.unwrap_or(20),
            )?,
            lists_dir: self.rules.lists_dir.map(resolve),
            allowed_lateness: match self.detection.allowed_lateness.as_deref() {
                None | Some("0") | Some("0s") => Duration::ZERO,
                Some(d) => duration("detection.allowed_lateness", d)?,
            },
            max_held_back: positive(
                "detection.max_held_back",
                self.detection.max_held_back.unwrap_or(10_000),
            )?,
            max_groups_per_rule: positive(
                "detection.max_groups_per_rule",
                self.detection.max_groups_per_rule.unwrap_or(100_000),
            )?,
            max_total_groups: positive(
                "detection.max_total_groups",
                self.detection.max_total_groups.unwrap_or(1_000_000),
            )?,
            detection_nice: match self.detection.nice.unwrap_or(10) {
                n @ 0..=19 => n,
                n => {
                    return Err(invalid(
                        "detection.nice",
                        format!("{n} is not a niceness from 0 to 19"),
                    ));
                }
            },
            log_level,
            log_json: format == "json",
            syslog: self.syslog.build(path)?,
            api: self.api.build(&invalid)?,
            retention: self.retention.build(&invalid)?,
            forward: self.forward.build(&invalid, &resolve)?,
            backup: BackupSettings {
                dir: self
                    .backup
                    .dir
                    .map(resolve)
                    .unwrap_or_else(|| data_dir.join("backups")),
                interval: match dur_or_off(
                    &invalid,
                    "backup.interval",
                    self.backup.interval.as_deref(),
                    "6h",
                )? {
                    Some(d) if d.is_zero() => {
                        return Err(invalid(
                            "backup.interval",
                            "must be longer than 0s, or `off`".into(),
                        ));
                    }
                    other => other,
                },
                keep: at_least_one(&invalid, "backup.keep", self.backup.keep.unwrap_or(7))?,
            },
            data_dir,
        })
    }
}

fn dur(
    invalid: &Invalid<'_>,
    key: &'static str,
    v: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let v = v.unwrap_or(default);
    humantime::parse_duration(v)
        .map_err(|e| invalid(key, format!("`{v}` is not a duration like 5s or 24h: {e}")))
}

fn dur_or_off(
    invalid: &Invalid<'_>,
    key: &'static str,
    v: Option<&str>,
    default: &str,
) -> Result<Option<Duration>, ConfigError> {
    match v.unwrap_or(default) {
        "off" | "" => Ok(None),
        other => dur(invalid, key, Some(other), default).map(Some),
    }
}

fn at_least_one<T: PartialEq + Default>(
    invalid: &Invalid<'_>,
    key: &'static str,
    v: T,
) -> Result<T, ConfigError> {
    if v == T::default() {
        Err(invalid(key, "must be at least 1".into()))
    } else {
        Ok(v)
    }
}

/// Builds the error for a key whose value is wrong.
type Invalid<'a> = dyn Fn(&'static str, String) -> ConfigError + 'a;

/// The format's mistakes as errors: line, column, key and what is wrong.
fn parse_errors(path: &Path, mistakes: Vec<soc_config::Mistake>) -> Vec<ConfigError> {
    mistakes
        .into_iter()
        .map(|m| ConfigError::Parse {
            path: path.to_owned(),
            line: m.line,
            column: m.column,
            message: m.described(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<Settings, ConfigError> {
        let p = Path::new("collector.toml");
        CollectorConfig::settings(text, p, Path::new("/base"), &CommandLine::default())
    }

    #[test]
    fn empty_file_gives_loopback_defaults() {
        let s = build("").expect("defaults");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(
            s.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        assert_eq!(s.data_dir, PathBuf::from("/base/soc-data"));
        assert!(s.builtin_rules);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = build("[server]\nlisten = \"0.0.0.0:1\"\nlisen = 3\n").expect_err("typo");
        let msg = err.to_string();
        assert!(msg.contains("collector.toml"), "{msg}");
        assert!(
            msg.starts_with("collector.toml:3:1: `server.lisen`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let msg = build("[server]\nlisten = \"nowhere\"\n")
            .expect_err("addr")
            .to_string();
        assert!(msg.contains("server.listen"), "{msg}");
        let msg = build("[ingest]\nqueue_timeout = \"soon\"\n")
            .expect_err("dur")
            .to_string();
        assert!(msg.contains("ingest.queue_timeout"), "{msg}");
        let msg = build("[tls]\ncert_file = \"a.pem\"\n")
            .expect_err("half tls")
            .to_string();
        assert!(msg.contains("tls.cert_file"), "{msg}");
        let msg = build("[detection]\nnice = 20\n")
            .expect_err("nice")
            .to_string();
        assert!(msg.contains("detection.nice"), "{msg}");
        assert_eq!(build("").expect("defaults").detection_nice, 10);
        let msg = build("[server]\nmax_connections = \"many\"\n")
            .expect_err("type")
            .to_string();
        assert!(
            msg.starts_with("collector.toml:2:19: `server.max_connections`"),
            "{msg}"
        );
    }

    #[test]
    fn every_mistake_of_a_file_is_reported_at_once() {
        let text = "\
[server]
listen = \"nowhere\"
max_connections = \"many\"

[tls]
key_file = \"k.pem\"

[ingest]
queue_timeout = \"soon\"
queue_timout = \"5s\"

[detection]
nice = 20

[forward.webhook]
url = \"ftp://x\"

[backup]
keep = 0
";
        let msg = build(text).expect_err("eight mistakes").to_string();
        let expect = [
            "collector.toml:2: key `server.listen`: `nowhere` is not an address",
            "collector.toml:3:19: `server.max_connections`: invalid type",
            // The key that is not there is named; the line is its table's.
            "collector.toml:5: key `tls.cert_file`: set both",
            "collector.toml:9: key `ingest.queue_timeout`: `soon` is not a duration",
            "collector.toml:10:1: `ingest.queue_timout`: unknown field",
            "collector.toml:13: key `detection.nice`: 20 is not a niceness",
            // Leaving the URL out alone does not help (a webhook needs
            // one): its table goes, and the check goes on.
            "collector.toml:16: key `forward.webhook.url`: `ftp://x` is not",
            "collector.toml:19: key `backup.keep`: must be at least 1",
        ];
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), expect.len(), "{msg}");
        for (line, want) in lines.iter().zip(expect) {
            assert!(line.starts_with(want), "{line}\n(all: {msg})");
        }
    }

    #[test]
    fn a_refused_command_line_value_is_reported_with_the_file_s_mistakes() {
        let p = Path::new("collector.toml");
        let command_line = CommandLine {
            listen: Some("nowhere".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            ..CommandLine::default()
        };
        let text = "[server]\nlisten = \"also nowhere\"\n[log]\nformat = \"xml\"\n";
        let msg = CollectorConfig::settings(text, p, Path::new("/"), &command_line)
            .expect_err("bad --listen")
            .to_string();
        let lines: Vec<&str> = msg.lines().collect();
        // The command line's value first, named by its flag; then the
        // file's, its own `server.listen` included, each on its line.
        assert_eq!(lines.len(), 3, "{msg}");
        assert!(
            lines[0].starts_with(
                "command line: --listen (key `server.listen`): `nowhere` is not an address"
            ),
            "{msg}"
        );
        assert!(
            lines[1].starts_with("collector.toml:2: key `server.listen`: `also nowhere`"),
            "{msg}"
        );
        assert!(
            lines[2].starts_with("collector.toml:4: key `log.format`"),
            "{msg}"
        );
        // A good command-line value wins over the file's.
        let ok = CollectorConfig::settings(
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            p,
            Path::new("/"),
            &CommandLine {
                listen: Some("127.0.0.1:2".into()),
                ..CommandLine::default()
            },
        )
        .expect("good");
        assert_eq!(ok.listen.port(), 2);
        let msg = build("[log]\nformat = \"xml\"\n")
            .expect_err("bad format")
            .to_string();
        assert!(
            msg.starts_with("collector.toml:2: key `log.format`"),
            "{msg}"
        );
        // A level mistyped would be a module name to the filter syntax,
        // and the collector would log nothing: refused, with its line.
        let msg = build("[log]\nlevel = \"warning\"\n")
            .expect_err("a level that is not one")
            .to_string();
        assert!(
            msg.starts_with("collector.toml:2: key `log.level`: `warning` is not a level")
                && msg.contains("did you mean `warn`?"),
            "{msg}"
        );
        let ok =
            build("[log]\nlevel = \"info,soc_collector=debug\"\n").expect("a filter with a module");
        assert_eq!(ok.log_level, "info,soc_collector=debug");
    }

    #[test]
    fn backup_section_has_defaults_and_off() {
        let s = build("").expect("defaults");
        assert_eq!(s.backup.dir, PathBuf::from("/base/soc-data/backups"));
        assert_eq!(s.backup.interval, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(s.backup.keep, 7);
        let s = build("[backup]\ninterval = \"off\"\ndir = \"bk\"\nkeep = 2\n").expect("off");
        assert_eq!(s.backup.interval, None);
        assert_eq!(s.backup.dir, PathBuf::from("/base/bk"));
        assert_eq!(s.backup.keep, 2);
        for bad in ["interval = \"0s\"", "interval = \"soon\"", "keep = 0"] {
            let msg = build(&format!("[backup]\n{bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(msg.contains("backup."), "{msg}");
        }
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let cfg = CollectorConfig::load(&path).expect("deploy/collector.toml parses");
        cfg.build(&path, Path::new("/"))
            .expect("deploy/collector.toml builds");
    }

    #[test]
    fn responder_sections_are_validated() {
        let s = build(
            "[retention]\nclosed_alert_max_age = \"off\"\njournal_max_entries = 0\n\
             [forward.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nmin_severity = \"high\"\n",
        )
        .expect("valid");
        assert!(s.retention.closed_alert_max_age.is_none());
        assert!(s.retention.journal_max_entries.is_none());
        let w = s.forward.webhook.expect("webhook");
        assert_eq!(w.delivery.min_severity, crate::model::Severity::High);
        assert!(s.forward.syslog.is_none());
        let msg = build("[forward.webhook]\nmin_severity = \"high\"\n")
            .expect_err("no url")
            .to_string();
        assert!(msg.contains("forward.webhook.url"), "{msg}");
        let msg = build("[forward.syslog]\naddress = \"soc.example\"\n")
            .expect_err("no port")
            .to_string();
        assert!(msg.contains("forward.syslog.address"), "{msg}");
        let msg = build("[forward.syslog]\naddress = \"h:514\"\nmin_severity = \"urgent\"\n")
            .expect_err("bad severity")
            .to_string();
        assert!(msg.contains("forward.syslog.min_severity"), "{msg}");
        let msg = build("[retention]\njournal_max_age = \"a while\"\n")
            .expect_err("bad duration")
            .to_string();
        assert!(msg.contains("retention.journal_max_age"), "{msg}");
    }
}
