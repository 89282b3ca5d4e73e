//! The agent's configuration: a TOML file read in two phases.
//!
//! [`ConfigFile`] mirrors the file exactly (unknown keys are refused, every
//! value keeps its position in the file), and [`ConfigFile::build`] turns it
//! into a [`Config`] that cannot be invalid: durations are parsed, globs
//! compiled, the URL parsed, names checked for uniqueness. Every error names
//! the file, the line and the key, so a sysadmin can fix it without reading
//! code. Checks that need the file system (the CA file, the data directory)
//! are done later by `preflight` in `main.rs`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use soc_config::DurationText;
use soc_protocol::Limits;
use toml::Spanned;

use crate::tail::LongLines;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape
    /// (unknown key, wrong type, missing key).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key has a value of the right type that is not acceptable.
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// More than one of the above, in the order of the file.
    #[error("{}", soc_config::one_a_line(.0))]
    Several(Vec<ConfigError>),
}

/// The `[agent]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Name of this agent; must equal the name enrolled at the collector
    /// (`socctl agents enroll NAME`). Sent in every request.
    pub name: Spanned<String>,
    /// Directory for the checkpoint file and the key file. Created if missing.
    pub data_dir: Spanned<PathBuf>,
    /// Most log files held open at once (rotated files being drained count).
    /// Default 256.
    pub max_open_files: Option<Spanned<usize>>,
    /// Labels sent on every batch (`agency`, `level`, `district`, free
    /// others); see `labels.rs` for what is allowed. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
}

/// The `[collector]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// Base URL of the collector, `https://host:port`.
    pub url: Spanned<String>,
    /// PEM file with the CA (or self-signed certificate) the collector
    /// presents; the only trusted roots. Relative to the config file's folder.
    pub ca_file: Spanned<PathBuf>,
    /// File holding this agent's key; relative to `data_dir`. Written at
    /// enrolment with mode 0600. Default `agent.key`.
    pub key_file: Option<Spanned<PathBuf>>,
    /// One-time secret from `socctl agents enroll NAME`; used only while
    /// `key_file` does not exist. Empty means unset.
    pub enrollment_secret: Option<Spanned<String>>,
    /// File holding the one-time secret instead of `enrollment_secret`;
    /// relative to the config file's folder.
    pub enrollment_secret_file: Option<Spanned<PathBuf>>,
}

/// The `[shipping]` table; every key has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingSection {
    /// Most lines in one batch (1..=10000). Default 10000: each batch costs
    /// the collector one fsync, so large batches ship faster.
    pub batch_max_lines: Option<Spanned<usize>>,
    /// Most line bytes in one batch (64 KiB..=4 MiB). Default 4 MiB.
    pub batch_max_bytes: Option<Spanned<usize>>,
    /// Send a partial batch once its first line is this old. Default `1s`.
    pub flush_interval: Option<Spanned<DurationText>>,
    /// First wait after a failed send. Default `500ms`.
    pub retry_initial: Option<Spanned<DurationText>>,
    /// Longest wait between retries; also the wait after a refusal. Default `60s`.
    pub retry_max: Option<Spanned<DurationText>>,
    /// Time between two heartbeats. Default `30s`.
    pub heartbeat_interval: Option<Spanned<DurationText>>,
    /// Give up on one HTTP request after this long. Default `30s`.
    pub request_timeout: Option<Spanned<DurationText>>,
    /// Batches sent before the first is acknowledged (1..=16). Default 2.
    pub max_in_flight: Option<Spanned<usize>>,
}

/// Where to start a file found at the first start of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read the whole file.
    Beginning,
    /// Skip what is already there; read only what is written from now on.
    End,
}

/// One `[[sources]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Unique name; becomes `Record.source`.
    pub name: Spanned<String>,
    /// Decoder hint; becomes `Record.source_type`. Default empty (collector detects).
    #[serde(rename = "type")]
    pub source_type: Option<String>,
    /// Absolute glob patterns of the files to tail.
    pub include: Spanned<Vec<Spanned<String>>>,
    /// Glob patterns matched against the full path; a match is not tailed.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// `beginning` or `end`: where to start a file found when this source is
    /// first started with no checkpoint. Later files are read from the beginning.
    pub start_at: Option<StartAt>,
    /// Longer lines are cut to this many bytes and flagged. Default and maximum 65536.
    pub max_line_bytes: Option<Spanned<usize>>,
    /// How often the globs are re-scanned and files read. Default `1s`.
    pub poll_interval: Option<Spanned<DurationText>>,
    /// How long a rotated-away or deleted file must stay unchanged at its end
    /// before its handle is released. Default `5s`.
    pub rotate_wait: Option<Spanned<DurationText>>,
    /// `truncate` or `split`: what becomes of lines longer than
    /// `max_line_bytes`. Default `truncate`.
    pub long_lines: Option<LongLines>,
    /// Most lines per second read from this source's files together; unset
    /// means no limit. Lines over the rate wait in the file, not in memory.
    pub max_lines_per_second: Option<Spanned<u32>>,
}

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[agent]`.
    pub agent: AgentSection,
    /// `[collector]`.
    pub collector: CollectorSection,
    /// `[shipping]`, optional.
    #[serde(default)]
    pub shipping: ShippingSection,
    /// `[[sources]]`, at least one.
    #[serde(default)]
    pub sources: Vec<SourceSection>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    pub agent: Agent,
    pub collector: Collector,
    pub shipping: Shipping,
    pub sources: Vec<Source>,
}

/// Validated `[agent]`.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub data_dir: PathBuf,
    pub max_open_files: usize,
    /// Sent on every batch.
    pub labels: BTreeMap<String, String>,
}

/// Where the enrolment secret comes from.
#[derive(Clone)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<redacted>)"),
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Validated `[collector]`.
#[derive(Debug, Clone)]
pub struct Collector {
    pub url: reqwest::Url,
    pub ca_file: PathBuf,
    /// Absolute (joined with `data_dir`).
    pub key_file: PathBuf,
    pub secret: Option<Secret>,
}

/// Most batches one agent may have in flight (the collector remembers the
/// last 64 journalled batch ids of each agent for their ordering).
pub const MAX_IN_FLIGHT: usize = 16;

/// Validated `[shipping]`.
#[derive(Debug, Clone)]
pub struct Shipping {
    pub batch_max_lines: usize,
    pub batch_max_bytes: usize,
    pub flush_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub heartbeat_interval: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

/// Validated `[[sources]]` entry.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub source_type: String,
    pub include: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub start_at: StartAt,
    pub max_line_bytes: usize,
    pub poll_interval: Duration,
    pub rotate_wait: Duration,
    pub long_lines: LongLines,
    /// `None`: no limit.
    pub max_lines_per_second: Option<u32>,
}

/// Most line bytes per batch: with JSON escaping at worst x6 this stays far
/// below [`Limits::max_decompressed_bytes`].
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
const MIN_BATCH_BYTES: usize = 64 * 1024;

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Reads `text` (the contents of `path`), reporting every mistake
    /// found in it at once: keys serde refuses, then, when the file could
    /// be read without them, the values [`ConfigFile::build`] refuses.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let read = soc_config::read::<ConfigFile>(text);
        let mut errors: Vec<ConfigError> = read
            .mistakes
            .into_iter()
            .map(|m| ConfigError::Parse {
                path: path.to_owned(),
                line: m.line,
                column: m.column,
                message: m.described(),
            })
            .collect();
        let built = read.value.map(|file| file.build(path, text));
        match built {
            Some(Ok(config)) if errors.is_empty() => return Ok(config),
            Some(Ok(_)) | None => {}
            Some(Err(ConfigError::Several(more))) => errors.extend(more),
            Some(Err(e)) => errors.push(e),
        }
        Err(ConfigError::from_all(errors))
    }
}

impl ConfigError {
    /// One error, or [`ConfigError::Several`] in the order of the file.
    fn from_all(errors: Vec<ConfigError>) -> ConfigError {
        soc_config::one_or_several(errors, ConfigError::line, ConfigError::Several)
    }

    fn line(&self) -> usize {
        match self {
            ConfigError::Parse { line, .. } | ConfigError::Invalid { line, .. } => *line,
            ConfigError::Read { .. } | ConfigError::Several(_) => 0,
        }
    }
}

/// What [`ConfigFile::build`] checks with: the file, for lines, and the
/// mistakes found so far. A check that fails records its mistake and
/// gives a stand-in value (the default), so that the checks after it run.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: RefCell<Vec<ConfigError>>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.borrow_mut().push(ConfigError::Invalid {
            path: self.path.to_owned(),
            line: soc_config::line_col(self.text, span.start).0,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn duration(
        &self,
        v: &Option<Spanned<DurationText>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref().trim()) {
            Err(e) => self.err(
                v.span(),
                key,
                format!(
                    "`{}` is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"2m\"",
                    v.get_ref()
                ),
            ),
            Ok(d) if d.is_zero() => self.err(v.span(), key, "must be longer than zero"),
            Ok(d) => return d,
        }
        default
    }

    fn range(
        &self,
        v: &Option<Spanned<usize>>,
        key: &str,
        default: usize,
        allowed: std::ops::RangeInclusive<usize>,
    ) -> usize {
        let Some(v) = v else { return default };
        if !allowed.contains(v.get_ref()) {
            self.err(
                v.span(),
                key,
                format!(
                    "{} is out of range {}..={}",
                    v.get_ref(),
                    allowed.start(),
                    allowed.end()
                ),
            );
            return default;
        }
        *v.get_ref()
    }

    /// The name (as written, when it is refused).
    fn name(&self, v: &Spanned<String>, key: &str) -> String {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.err(
                v.span(),
                key,
                format!("`{s}` must be 1 to 128 characters among A-Z a-z 0-9 - _ ."),
            );
        }
        s.clone()
    }

    /// `value` when no check failed, else every mistake.
    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        let errors = self.errors.into_inner();
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::from_all(errors))
        }
    }
}

impl ConfigFile {
    /// Checks every value and fills in defaults. Returns the first
    /// mistake, or [`ConfigError::Several`] with all of them.
    pub fn build(self, path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cx = Ctx {
            path,
            text,
            errors: RefCell::new(Vec::new()),
        };
        let base = path.parent().unwrap_or(Path::new("."));

        let a = &self.agent;
        let name = cx.name(&a.name, "agent.name");
        if a.data_dir.get_ref().as_os_str().is_empty() {
            cx.err(a.data_dir.span(), "agent.data_dir", "must not be empty");
        }
        let data_dir = base.join(a.data_dir.get_ref());
        let max_open_files = cx.range(&a.max_open_files, "agent.max_open_files", 256, 1..=65536);
        let mut labels = BTreeMap::new();
        for (k, v) in &a.labels {
            if let Err(m) = crate::labels::check(k, v.get_ref()) {
                cx.err(v.span(), &format!("agent.labels.{k}"), m);
            } else if labels.len() == crate::labels::MAX_LABELS {
                cx.err(
                    v.span(),
                    "agent.labels",
                    format!("at most {} labels", crate::labels::MAX_LABELS),
                );
                break;
            } else {
                labels.insert(k.clone(), v.get_ref().clone());
            }
        }

        let c = &self.collector;
        let url = match reqwest::Url::parse(c.url.get_ref()) {
            Ok(url) if url.scheme() != "https" => {
                cx.err(
                    c.url.span(),
                    "collector.url",
                    format!("scheme must be https, not `{}`", url.scheme()),
                );
                None
            }
            Ok(url) if url.host_str().is_none() => {
                cx.err(c.url.span(), "collector.url", "has no host");
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                cx.err(c.url.span(), "collector.url", format!("not a URL: {e}"));
                None
            }
        };
        let ca_file = base.join(c.ca_file.get_ref());
        let key_file = match &c.key_file {
            Some(k) if k.get_ref().as_os_str().is_empty() => {
                cx.err(k.span(), "collector.key_file", "must not be empty");
                data_dir.join("agent.key")
            }
            Some(k) => data_dir.join(k.get_ref()),
            None => data_dir.join("agent.key"),
        };
        let inline = c
            .enrollment_secret
            .as_ref()
            .filter(|s| !s.get_ref().trim().is_empty());
        let secret = match (inline, &c.enrollment_secret_file) {
            (Some(_), Some(f)) => {
                cx.err(
                    f.span(),
                    "collector.enrollment_secret_file",
                    "set either enrollment_secret or enrollment_secret_file, not both",
                );
                None
            }
            (Some(s), None) => Some(Secret::Inline(s.get_ref().trim().to_owned())),
            (None, Some(f)) => Some(Secret::File(base.join(f.get_ref()))),
            (None, None) => None,
        };

        let s = &self.shipping;
        let retry_initial = cx.duration(
            &s.retry_initial,
            "shipping.retry_initial",
            Duration::from_millis(500),
        );
        let retry_max = cx.duration(&s.retry_max, "shipping.retry_max", Duration::from_secs(60));
        if retry_max < retry_initial {
            let span = s.retry_max.as_ref().map_or(0..0, |v| v.span());
            cx.err(
                span,
                "shipping.retry_max",
                "must not be shorter than retry_initial",
            );
        }
        let shipping = Shipping {
            batch_max_lines: cx.range(
                &s.batch_max_lines,
                "shipping.batch_max_lines",
                10_000,
                1..=Limits::V1.max_records,
            ),
            batch_max_bytes: cx.range(
                &s.batch_max_bytes,
                "shipping.batch_max_bytes",
                MAX_BATCH_BYTES,
                MIN_BATCH_BYTES..=MAX_BATCH_BYTES,
            ),
            flush_interval: cx.duration(
                &s.flush_interval,
                "shipping.flush_interval",
                Duration::from_secs(1),
            ),
            retry_initial,
            retry_max,
            heartbeat_interval: cx.duration(
                &s.heartbeat_interval,
                "shipping.heartbeat_interval",
                Duration::from_secs(30),
            ),
            request_timeout: cx.duration(
                &s.request_timeout,
                "shipping.request_timeout",
                Duration::from_secs(30),
            ),
            max_in_flight: cx.range(
                &s.max_in_flight,
                "shipping.max_in_flight",
                2,
                1..=MAX_IN_FLIGHT,
            ),
        };

        if self.sources.is_empty() {
            cx.err(
                text.len()..text.len(),
                "sources",
                "at least one [[sources]] table is required",
            );
        }
        let mut names = HashSet::new();
        let sources = self
            .sources
            .iter()
            .enumerate()
            .map(|(at, src)| build_source(&cx, at, src, &mut names))
            .collect();

        let Some(url) = url else {
            // `url` was refused: its mistake is among the others.
            return Err(ConfigError::from_all(cx.errors.into_inner()));
        };
        cx.finish(Config {
            path: path.to_owned(),
            agent: Agent {
                name,
                data_dir,
                max_open_files,
                labels,
            },
            collector: Collector {
                url,
                ca_file,
                key_file,
                secret,
            },
            shipping,
            sources,
        })
    }
}

fn build_source(
    cx: &Ctx<'_>,
    at: usize,
    src: &SourceSection,
    names: &mut HashSet<String>,
) -> Source {
    // `sources[0].include`, as in serde's mistakes.
    let key = |name: &str| format!("sources[{at}].{name}");
    let name = cx.name(&src.name, &key("name"));
    if !names.insert(name.clone()) {
        cx.err(
            src.name.span(),
            &key("name"),
            format!("source `{name}` is defined twice"),
        );
    }
    if src.include.get_ref().is_empty() {
        cx.err(
            src.include.span(),
            &key("include"),
            format!("source `{name}` needs at least one pattern"),
        );
    }
    let mut include = Vec::new();
    for p in src.include.get_ref() {
        if !Path::new(p.get_ref()).is_absolute() {
            cx.err(
                p.span(),
                &key("include"),
                format!("`{}` must be an absolute path pattern", p.get_ref()),
            );
        } else if let Err(e) = glob::Pattern::new(p.get_ref()) {
            cx.err(
                p.span(),
                &key("include"),
                format!("`{}` is not a glob: {e}", p.get_ref()),
            );
        }
        include.push(p.get_ref().clone());
    }
    let mut exclude = Vec::new();
    for p in &src.exclude {
        match glob::Pattern::new(p.get_ref()) {
            Ok(g) => exclude.push(g),
            Err(e) => cx.err(
                p.span(),
                &key("exclude"),
                format!("`{}` is not a glob: {e}", p.get_ref()),
            ),
        }
    }
    let max = Limits::V1.max_line_bytes;
    Source {
        source_type: src.source_type.clone().unwrap_or_default(),
        include,
        exclude,
        start_at: src.start_at.unwrap_or(StartAt::End),
        max_line_bytes: cx.range(&src.max_line_bytes, &key("max_line_bytes"), max, 16..=max),
        poll_interval: cx.duration(
            &src.poll_interval,
            &key("poll_interval"),
            Duration::from_secs(1),
        ),
        rotate_wait: cx.duration(
            &src.rotate_wait,
            &key("rotate_wait"),
            Duration::from_secs(5),
        ),
        long_lines: src.long_lines.unwrap_or(LongLines::Truncate),
        max_lines_per_second: match &src.max_lines_per_second {
            Some(v) if *v.get_ref() == 0 => {
                cx.err(
                    v.span(),
                    &key("max_lines_per_second"),
                    "must be at least 1 (leave it out for no limit)",
                );
                None
            }
            v => v.as_ref().map(|v| *v.get_ref()),
        },
        name,
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
