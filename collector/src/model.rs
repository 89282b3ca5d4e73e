//! The JSON shapes of the API, shared by the server and `socctl`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use soc_rules::Severity;

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Closed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Closed => "closed",
        }
    }
}

impl std::str::FromStr for AlertStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(AlertStatus::Open),
            "acknowledged" | "ack" | "acked" => Ok(AlertStatus::Acknowledged),
            "closed" => Ok(AlertStatus::Closed),
            _ => Err(format!(
                "`{s}` is not a status (open, acknowledged, closed)"
            )),
        }
    }
}

/// A stored alert with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub rule_id: String,
    pub rule_title: String,
    pub rule_version: u32,
    pub severity: Severity,
    #[serde(default)]
    pub tags: Vec<String>,
    pub summary: String,
    /// The grouping key of threshold/sequence rules; empty for single events.
    #[serde(default)]
    pub group_key: String,
    pub status: AlertStatus,
    /// When the collector stored the alert (ms since epoch).
    pub created_ms: i64,
    /// Time of the event that raised it (ms since epoch).
    pub event_time_ms: i64,
    /// `host.name` of the triggering event, else the agent name.
    pub host: String,
    /// Agent that shipped the triggering line.
    pub agent: String,
    /// The agent's labels (agency, level, district, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The lines behind the alert, oldest first, at most the configured number.
    pub evidence: Vec<Evidence>,
    /// How many more lines triggered it than are kept in `evidence`.
    #[serde(default)]
    pub evidence_omitted: u64,
    /// Every change, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// One line behind an alert: the raw line and what the decoders made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Journal sequence of the line.
    pub seq: u64,
    pub agent: String,
    pub source: String,
    pub path: String,
    pub offset: u64,
    /// The raw line (invalid UTF-8 replaced; see `line_b64`).
    pub line: String,
    /// The exact bytes, base64, when the line is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_b64: Option<String>,
    /// Decoded fields.
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// One change to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// Token name of who did it; `soc` for the collector itself.
    pub by: String,
    /// `created`, `acknowledged`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// At least this severity.
    pub severity: Option<Severity>,
    pub rule: Option<String>,
    pub host: Option<String>,
    pub status: Option<AlertStatus>,
    /// Created at or after this time (ms since epoch).
    pub since_ms: Option<i64>,
    /// Only alerts with a smaller id (paging backwards).
    pub before_id: Option<u64>,
    /// Most alerts returned; default 100, at most 1000.
    pub limit: Option<usize>,
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// Pass as `before_id` for the next page; absent on the last page.
    pub next_before_id: Option<u64>,
}

/// Body of `POST /api/v1/alerts/{id}/ack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub note: Option<String>,
}

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAgentRequest {
    pub name: String,
}

/// Answer of `POST /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollAgentResponse {
    pub name: String,
    /// One-time secret for the agent's `enrollment_secret`.
    pub secret: String,
    pub expires_ms: i64,
}

/// An agent as `socctl agents list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub name: String,
    /// `pending` (enrolment secret not yet used), `active`, `revoked`.
    pub state: String,
    pub last_seen_ms: Option<i64>,
    pub events_received: u64,
    pub agent_version: Option<String>,
    pub hostname: Option<String>,
    pub files_watched: Option<u64>,
    /// Bytes behind, summed over the agent's sources, from its last heartbeat.
    pub lag_bytes: Option<u64>,
}

/// Answer of `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    /// Highest journal sequence (= entries journalled, while nothing is pruned).
    pub journal_last_seq: u64,
    /// Last journal sequence detection has processed.
    pub detection_cursor: u64,
    pub alerts_stored: u64,
    pub rules_loaded: usize,
    pub decoders_loaded: usize,
}

/// Query of `GET /api/v1/journal` (admin only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// Only entries with a larger sequence number; default 0 (from the start).
    pub after: Option<u64>,
    /// Most entries returned; default 1000, at most 10000.
    pub limit: Option<usize>,
}

/// One journalled line as `GET /api/v1/journal` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntryView {
    pub seq: u64,
    pub agent: String,
    /// The agent's stream name (opaque to the collector).
    pub stream: String,
    pub source: String,
    pub path: String,
    /// Byte offset of the line in its stream.
    pub offset: u64,
    /// The line; invalid UTF-8 is shown as U+FFFD.
    pub line: String,
    pub truncated: bool,
    /// The entry could not be decoded; `line` holds why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub corrupt: bool,
}

/// Answer of `GET /api/v1/journal`: entries in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalPage {
    pub entries: Vec<JournalEntryView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}
