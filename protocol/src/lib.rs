//! The wire contract between `soc-agent` and `soc-collector`.
//!
//! This is the only crate both binaries share. It fixes what travels over the
//! network and nothing else: no I/O, no clock, no configuration.
//!
//! # Why it looks like this
//!
//! * An agent ships **batches** of **records**. A record is one line read from one
//!   file, with the identity of that file (`stream`) and the byte offset where the
//!   line starts. `(agent, stream, offset)` names a line uniquely and for ever, so
//!   the collector can drop a line it already holds when an agent re-sends a batch
//!   after a timeout or a crash: delivery is at-least-once on the wire and
//!   exactly-once in the journal.
//! * The raw line is kept **byte-exact**. Logs are not always UTF-8 (Windows code
//!   pages, binary garbage from a broken appliance); a line that is not valid
//!   UTF-8 travels base64-encoded in `line_b64` instead of `line`.
//! * Bodies are JSON compressed with zstd. JSON keeps the contract readable and
//!   debuggable with `zstdcat | jq`; zstd makes it as small as a binary format.
//! * The version is carried three times on purpose: in the URL path (`/v1/...`),
//!   in the content type, and in the body. A collector that learns v2 keeps
//!   serving `/v1` so deployed agents go on working; an agent talking to an old
//!   collector gets a clear 404/415 instead of a silent misparse.
//! * An agent may have several batches in flight; [`AFTER_HEADER`] keeps them
//!   journalled in the order they were sent.
//! * Limits are part of the contract so both sides agree what is too big, and
//!   the collector can refuse a decompression bomb before it inflates.
//!
//! # Layout
//!
//! * [`Batch`], [`Record`]: what an agent sends to [`BATCH_PATH`].
//! * [`BatchAck`]: what the collector answers once the batch is durable.
//! * [`Heartbeat`]: the agent's periodic health report to [`HEARTBEAT_PATH`].
//! * [`EnrollRequest`], [`EnrollResponse`]: trading a one-time enrolment secret
//!   for the agent's own key at [`ENROLL_PATH`].
//! * [`ErrorBody`], [`ErrorCode`]: every 4xx/5xx answer.
//! * [`encode_batch`], [`decode_batch`]: the body codec with its limits.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Where agents POST batches.
pub const BATCH_PATH: &str = "/v1/batches";
/// Where agents POST heartbeats.
pub const HEARTBEAT_PATH: &str = "/v1/heartbeat";
/// Where an agent trades its enrolment secret for its key.
pub const ENROLL_PATH: &str = "/v1/enroll";
/// Content type of a v1 batch body (before compression).
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.soc.batch.v1+json";
/// The only content encoding a v1 batch may use.
pub const BATCH_CONTENT_ENCODING: &str = "zstd";
/// Header naming the agent; the `Authorization: Bearer <key>` header proves it.
pub const AGENT_HEADER: &str = "x-soc-agent";
/// Header an agent with several batches in flight puts on a batch sent
/// while the batch before it is not yet acknowledged: the decimal
/// `batch_id` of that batch. The collector journals a batch carrying it only
/// after that batch, so the lines of one file reach the journal in file
/// order (its duplicate check keeps, per file, the offset already held, and a
/// later batch stored first would make the earlier one look like a resend).
/// A batch whose predecessor does not arrive in time is refused with 503 and
/// `Retry-After`.
pub const AFTER_HEADER: &str = "x-soc-after";

/// Sizes both sides agree on. The collector enforces them; the agent stays
/// below them so it never builds a batch that will be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest compressed body accepted, in bytes.
    pub max_compressed_bytes: usize,
    /// Largest body after decompression, in bytes. Guards against zstd bombs.
    pub max_decompressed_bytes: usize,
    /// Most records in one batch.
    pub max_records: usize,
    /// Longest raw line, in bytes. Agents split or truncate longer lines and
    /// set [`Record::truncated`].
    pub max_line_bytes: usize,
}

impl Limits {
    /// The limits of protocol v1.
    pub const V1: Limits = Limits {
        max_compressed_bytes: 8 * 1024 * 1024,
        max_decompressed_bytes: 32 * 1024 * 1024,
        max_records: 10_000,
        max_line_bytes: 64 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::V1
    }
}

/// A batch of lines from one agent. `S` is the type of the text every line
/// of a file repeats (stream, source, source type, path): the collector
/// reads `String`s; the agent builds batches with `Arc<str>`, one copy per
/// file instead of one per line. Both travel the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "S: Serialize + AsRef<str>",
    deserialize = "S: Deserialize<'de> + Default"
))]
pub struct Batch<S = String> {
    /// Always [`PROTOCOL_VERSION`] for this crate.
    pub version: u16,
    /// The agent's name; must equal the authenticated agent.
    pub agent: String,
    /// Agent-chosen number, echoed in the ack and named by the next batch's
    /// [`AFTER_HEADER`]. An agent never uses one id twice, across restarts
    /// too: the collector takes a batch of that id as the predecessor.
    pub batch_id: u64,
    /// Operator-set labels of the agent (agency, level, district, ...) that
    /// travel with every line of the batch to events, alerts and filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The lines, in file order within each stream.
    pub records: Vec<Record<S>>,
}

/// One line read from one file (`S`: see [`Batch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "S: Serialize + AsRef<str>",
    deserialize = "S: Deserialize<'de> + Default"
))]
pub struct Record<S = String> {
    /// Identity of the file the line came from, stable across renames
    /// (device, inode and a checksum of the first line). Together with the
    /// agent and `offset` it names the line uniquely.
    pub stream: S,
    /// The configured source this file belongs to (for example `ufw`).
    pub source: S,
    /// Decoder hint from the agent's configuration (for example `iptables`,
    /// `clamav`); empty when the collector should detect the format.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub source_type: S,
    /// Path the file had when the line was read; for people, never for identity.
    pub path: S,
    /// Byte offset of the first byte of the line in the file.
    pub offset: u64,
    /// When the agent read the line, milliseconds since the Unix epoch.
    pub read_time_ms: i64,
    /// The line without its terminator, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// The line without its terminator, base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_b64: Option<String>,
    /// The line was longer than the agent's limit and was cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty<S: AsRef<str>>(s: &S) -> bool {
    s.as_ref().is_empty()
}

impl<S> Record<S> {
    /// Sets the raw line, choosing `line` or `line_b64` so the bytes survive
    /// the trip exactly.
    pub fn set_raw(&mut self, raw: &[u8]) {
        match std::str::from_utf8(raw) {
            Ok(s) => {
                self.line = Some(s.to_owned());
                self.line_b64 = None;
            }
            Err(_) => {
                self.line = None;
                self.line_b64 = Some(base64::engine::general_purpose::STANDARD.encode(raw));
            }
        }
    }

    /// The raw line bytes exactly as read.
    pub fn raw(&self) -> Result<Vec<u8>, ProtocolError> {
        match (&self.line, &self.line_b64) {
            (Some(s), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| ProtocolError::InvalidRecord {
                    offset: self.offset,
                    reason: format!("line_b64 is not base64: {e}"),
                }),
            (Some(_), Some(_)) => Err(ProtocolError::InvalidRecord {
                offset: self.offset,
                reason: "both line and line_b64 are set".into(),
            }),
            (None, None) => Err(ProtocolError::InvalidRecord {
                offset: self.offset,
                reason: "neither line nor line_b64 is set".into(),
            }),
        }
    }
}

/// The collector's answer to a batch, sent only after the batch is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// The protocol version of the answer.
    pub version: u16,
    /// Echo of [`Batch::batch_id`].
    pub batch_id: u64,
    /// Records newly written to the journal.
    pub accepted: u64,
    /// Records the journal already held (re-sent lines), dropped.
    pub duplicates: u64,
}

/// An agent's periodic report of its health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The protocol version.
    pub version: u16,
    /// The agent's name.
    pub agent: String,
    /// The agent's software version.
    pub agent_version: String,
    /// Host name of the machine the agent runs on.
    pub hostname: String,
    /// Files currently watched.
    pub files_watched: u64,
    /// Lines sent and acknowledged since the agent started.
    pub lines_sent: u64,
    /// Errors since the agent started (read, send, checkpoint).
    pub errors: u64,
    /// Bytes not yet acknowledged, per configured source.
    #[serde(default)]
    pub lag: Vec<SourceLag>,
}

/// Bytes behind for one configured source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLag {
    /// The configured source name.
    pub source: String,
    /// Bytes written to its files but not yet acknowledged by the collector.
    pub bytes_behind: u64,
}

/// An agent's first call: trade the one-time enrolment secret for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The protocol version.
    pub version: u16,
    /// The agent's name, as given to `socctl agents enroll`.
    pub agent: String,
    /// The one-time secret printed by `socctl agents enroll`.
    pub secret: String,
    /// The key the agent chose and saved before asking (32 to 256 printable
    /// ASCII characters, no spaces); the collector keeps only its hash. An
    /// agent whose answer was lost (crash, cut link) asks again with the
    /// same key and gets the same answer, although the secret is spent.
    /// Without it the collector chooses the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Shortest and longest key an agent may choose ([`EnrollRequest::key`]).
pub const AGENT_KEY_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// The agent's own key, returned once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The protocol version.
    pub version: u16,
    /// The agent's key, to send as `Authorization: Bearer <key>`.
    pub key: String,
}

/// Why a request was refused; the body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// A sentence for the operator that says what and where.
    pub message: String,
}

/// Machine-readable refusal reasons. Agents decide from these whether to
/// retry (`Overloaded`, `Unavailable`) or to stop and report (the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Missing, wrong or revoked credentials.
    Unauthorized,
    /// Body larger than [`Limits::max_compressed_bytes`].
    PayloadTooLarge,
    /// Body inflates past [`Limits::max_decompressed_bytes`].
    DecompressedTooLarge,
    /// More records than [`Limits::max_records`].
    TooManyRecords,
    /// A line longer than [`Limits::max_line_bytes`].
    LineTooLong,
    /// Not zstd, not JSON, or not a v1 batch.
    MalformedBatch,
    /// Content type or version this collector does not speak.
    UnsupportedVersion,
    /// The collector is saturated; retry after the `Retry-After` header.
    Overloaded,
    /// The collector cannot store right now; retry after `Retry-After`.
    Unavailable,
    /// Anything else the client did wrong.
    BadRequest,
    /// Not found.
    NotFound,
    /// Authenticated but not allowed.
    Forbidden,
}

impl ErrorCode {
    /// Whether an agent should retry the same request later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Overloaded | ErrorCode::Unavailable)
    }

    /// Stable name used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::DecompressedTooLarge => "decompressed_too_large",
            ErrorCode::TooManyRecords => "too_many_records",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::MalformedBatch => "malformed_batch",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// What can be wrong with a batch body.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("batch body is {size} bytes, over the limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("batch body inflates past the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("batch body is not valid zstd: {0}")]
    Zstd(String),
    #[error("batch body is not a valid v1 batch: {0}")]
    Json(String),
    #[error("batch version {found} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("batch has {count} records, over the limit of {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("record at offset {offset}: line is {len} bytes, over the limit of {limit}")]
    LineTooLong {
        offset: u64,
        len: usize,
        limit: usize,
    },
    #[error("record at offset {offset}: {reason}")]
    InvalidRecord { offset: u64, reason: String },
}

impl ProtocolError {
    /// The refusal code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ProtocolError::DecompressedTooLarge { .. } => ErrorCode::DecompressedTooLarge,
            ProtocolError::Zstd(_)
            | ProtocolError::Json(_)
            | ProtocolError::InvalidRecord { .. } => ErrorCode::MalformedBatch,
            ProtocolError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtocolError::TooManyRecords { .. } => ErrorCode::TooManyRecords,
            ProtocolError::LineTooLong { .. } => ErrorCode::LineTooLong,
        }
    }
}

/// Serialises and compresses a batch. Checks the limits the collector will
/// check, so an agent learns before sending.
pub fn encode_batch<S: Serialize + AsRef<str>>(
    batch: &Batch<S>,
    limits: &Limits,
) -> Result<Vec<u8>, ProtocolError> {
    check_batch(batch, limits)?;
    let json = serde_json::to_vec(batch).map_err(|e| ProtocolError::Json(e.to_string()))?;
    if json.len() > limits.max_decompressed_bytes {
        return Err(ProtocolError::DecompressedTooLarge {
            limit: limits.max_decompressed_bytes,
        });
    }
    let body = zstd::bulk::compress(&json, 3).map_err(|e| ProtocolError::Zstd(e.to_string()))?;
    if body.len() > limits.max_compressed_bytes {
        return Err(ProtocolError::PayloadTooLarge {
            size: body.len(),
            limit: limits.max_compressed_bytes,
        });
    }
    Ok(body)
}

/// Decompresses and parses a batch body, refusing anything over the limits
/// before it costs more than the limit in memory.
pub fn decode_batch(body: &[u8], limits: &Limits) -> Result<Batch, ProtocolError> {
    if body.len() > limits.max_compressed_bytes {
        return Err(ProtocolError::PayloadTooLarge {
            size: body.len(),
            limit: limits.max_compressed_bytes,
        });
    }
    let json = inflate_bounded(body, limits.max_decompressed_bytes)?;
    let batch: Batch =
        serde_json::from_slice(&json).map_err(|e| ProtocolError::Json(e.to_string()))?;
    if batch.version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion {
            found: batch.version,
        });
    }
    check_batch(&batch, limits)?;
    Ok(batch)
}

/// Inflates a zstd body, reading at most `limit` bytes of output. The frame
/// header's declared size is not trusted: a bomb can lie about it.
fn inflate_bounded(body: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    use std::io::Read as _;
    let decoder =
        zstd::stream::read::Decoder::new(body).map_err(|e| ProtocolError::Zstd(e.to_string()))?;
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at" from "over".
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Zstd(e.to_string()))?;
    if read > limit {
        return Err(ProtocolError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

fn check_batch<S: AsRef<str>>(batch: &Batch<S>, limits: &Limits) -> Result<(), ProtocolError> {
    if batch.records.len() > limits.max_records {
        return Err(ProtocolError::TooManyRecords {
            count: batch.records.len(),
            limit: limits.max_records,
        });
    }
    for r in &batch.records {
        let len = match (&r.line, &r.line_b64) {
            (Some(s), None) => s.len(),
            (None, Some(b)) => {
                b.len() / 4 * 3 - b.bytes().rev().take_while(|&c| c == b'=').count().min(2)
            }
            _ => {
                // Reuse the precise message from `raw()`.
                return r.raw().map(|_| ());
            }
        };
        if len > limits.max_line_bytes {
            return Err(ProtocolError::LineTooLong {
                offset: r.offset,
                len,
                limit: limits.max_line_bytes,
            });
        }
        if r.stream.as_ref().is_empty() {
            return Err(ProtocolError::InvalidRecord {
                offset: r.offset,
                reason: "stream is empty".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
