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
    /// Detections of the same rule and suppression key that the rule's
    /// `suppress:` period swallowed after this alert, counted as they come.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
    /// Event time of the newest of them (ms since epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repeat_ms: Option<i64>,
    /// Every change, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Token or person the alert is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Why it was closed; set while the alert is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<CloseReason>,
    /// When it was last closed (ms since epoch); drives retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<i64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why an alert was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// A real incident (handled).
    TruePositive,
    /// The rule fired on something that was not what it looks for.
    FalsePositive,
    /// What the rule looks for, but expected and harmless here.
    Benign,
    /// Another alert covers it.
    Duplicate,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TruePositive => "true_positive",
            CloseReason::FalsePositive => "false_positive",
            CloseReason::Benign => "benign",
            CloseReason::Duplicate => "duplicate",
        }
    }
}

impl std::str::FromStr for CloseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "true_positive" | "tp" => Ok(CloseReason::TruePositive),
            "false_positive" | "fp" => Ok(CloseReason::FalsePositive),
            "benign" => Ok(CloseReason::Benign),
            "duplicate" | "dup" => Ok(CloseReason::Duplicate),
            _ => Err(format!(
                "`{s}` is not a close reason (true_positive, false_positive, benign, duplicate)"
            )),
        }
    }
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
    pub fields: soc_rules::Fields,
}

/// One change to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// Token name of who did it; `soc` for the collector itself.
    pub by: String,
    /// `created`, `acknowledged`, `closed`, `assigned`, `noted`, `reopened`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The close reason or the new assignee, for those actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Filters of `GET /api/v1/alerts` (and of bulk actions and the stream).
/// Every filter is answered from an index, so a page costs the same with a
/// thousand or a million stored alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// At least this severity (exactly this one with `severity_exactly`).
    pub severity: Option<Severity>,
    /// Make `severity` an exact match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_exactly: Option<bool>,
    pub rule: Option<String>,
    /// Host name, case-insensitive.
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// An agent label as `key=value`, e.g. `agency=finance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `source.ip` of any evidence line within this CIDR (or equal to this address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// `destination.ip` of any evidence line within this CIDR (or equal to this address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<String>,
    pub status: Option<AlertStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// One of the rule's tags, e.g. `attack.t1133`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Created at or after this time (ms since epoch).
    pub since_ms: Option<i64>,
    /// Created at or before this time (ms since epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Only alerts with a smaller id (paging newest first).
    pub before_id: Option<u64>,
    /// Only alerts with a larger id (paging oldest first, and the stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_id: Option<u64>,
    /// `newest` (default) or `oldest` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortOrder>,
    /// Most alerts returned; default 100, at most 1000.
    pub limit: Option<usize>,
}

/// Order of a listing. Ids grow with time, so both are index order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Newest,
    Oldest,
}

impl std::str::FromStr for SortOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "newest" | "desc" => Ok(SortOrder::Newest),
            "oldest" | "asc" => Ok(SortOrder::Oldest),
            _ => Err(format!("`{s}` is not a sort order (newest, oldest)")),
        }
    }
}

/// A page of alerts, in the requested order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// Pass as `before_id` for the next page (newest first); absent on the last page.
    pub next_before_id: Option<u64>,
    /// Pass as `after_id` for the next page (oldest first); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after_id: Option<u64>,
}

/// Body of `POST /api/v1/alerts/{id}/ack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub note: Option<String>,
}

/// Body of `POST /api/v1/alerts/{id}/close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    pub reason: CloseReason,
    pub note: Option<String>,
}

/// Body of `POST /api/v1/alerts/{id}/assign`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub assignee: String,
    pub note: Option<String>,
}

/// Body of `POST /api/v1/alerts/{id}/note` and `/reopen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub note: Option<String>,
}

/// A change applied to every alert a filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Ack,
    Close,
    Assign,
    Reopen,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Ack => "ack",
            BulkAction::Close => "close",
            BulkAction::Assign => "assign",
            BulkAction::Reopen => "reopen",
        }
    }
}

/// Body of `POST /api/v1/alerts/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: BulkAction,
    /// Which alerts; `limit`, `sort` and `after_id` are ignored.
    pub filter: AlertQuery,
    /// Only count what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// For `close`.
    pub reason: Option<CloseReason>,
    /// For `assign`.
    pub assignee: Option<String>,
    pub note: Option<String>,
}

/// Answer of `POST /api/v1/alerts/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkResponse {
    /// Alerts the filter selected (at most `max` of them are looked at).
    pub matched: u64,
    /// Alerts changed (with `dry_run`: that would change).
    pub changed: u64,
    /// Highest selected id: pass `before_id = max_id + 1` to act on exactly
    /// what a dry run counted, not on alerts raised since.
    pub max_id: Option<u64>,
    /// More alerts matched than one bulk call handles; run it again.
    pub truncated: bool,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    pub role: crate::auth::Role,
}

/// Answer of `POST /api/v1/tokens`: the only time the token is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTokenResponse {
    pub name: String,
    pub role: crate::auth::Role,
    pub token: String,
}

/// A token as `socctl tokens list` shows it (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub role: crate::auth::Role,
    pub created_ms: i64,
    pub revoked: bool,
}

/// One audit record: who did what to what, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log; grows with every record.
    pub seq: u64,
    pub at_ms: i64,
    /// Token name; `-` when the caller could not be identified.
    pub token: String,
    /// The token's role, when known.
    pub role: Option<crate::auth::Role>,
    /// The caller's address, when the request came over the network.
    pub peer: Option<String>,
    /// `alert.ack`, `alert.close`, `alerts.bulk_ack`, `token.create`, `agent.revoke`, `rules.reload`, ...
    pub action: String,
    /// What it acted on: an alert id, a token or agent name, a filter.
    pub target: String,
    /// `success`, `refused` (authentication or role) or `failed` (e.g. a conflict).
    pub outcome: AuditOutcome,
    /// What happened, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How an audited call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Success,
    Refused,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// Filters of `GET /api/v1/audit`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At or after this time (ms since epoch).
    pub since_ms: Option<i64>,
    /// Only records after this `seq` (paging).
    pub after_seq: Option<u64>,
    /// Most records returned; default 100, at most 1000.
    pub limit: Option<usize>,
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

/// One rule in force, as `GET /api/v1/rules` lists it: what it is, where
/// it was loaded from, the groups it holds open and its newest alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// `single`, `threshold`, `sequence` or `silence`.
    pub kind: String,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub version: u32,
    /// The file it was loaded from (`rules/...` for a shipped rule) and the
    /// line of its `id:`.
    pub file: String,
    pub line: usize,
    /// Groups it holds open (thresholds half-way, sequences waiting for
    /// their next step, watched sources), as of detection's last step.
    pub open_groups: u64,
    /// Its newest stored alert, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<LastAlert>,
}

/// The newest alert of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastAlert {
    pub id: u64,
    /// When the collector stored it (ms since epoch).
    pub created_ms: i64,
    pub status: AlertStatus,
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
