//! What goes into the decoders and what comes out of them.

use std::collections::BTreeMap;

/// The text of one decoder or rule file, read by the caller.
///
/// The library never opens files itself: the collector reads operator folders,
/// the builtin content is compiled in (see [`crate::builtin_decoder_sources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path or name used in error messages, e.g. `/etc/soc/rules/fw.yml`.
    pub name: String,
    /// The whole YAML text.
    pub text: String,
}

impl SourceFile {
    /// Convenience constructor.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// One raw line and what the agent knows about where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The raw line, byte-exact, possibly not UTF-8. It is decoded lossily for
    /// matching; the caller keeps the bytes.
    pub raw: &'a [u8],
    /// Decoder hint from the agent configuration (`iptables`, `clamav`, ...);
    /// `""` lets every decoder try.
    pub source_type: &'a str,
    /// The agent's name (stored as `agent.name`).
    pub agent: &'a str,
    /// The configured source name on the agent (stored as `log.source`).
    pub source: &'a str,
    /// The file path on the agent (stored as `log.file.path`).
    pub path: &'a str,
    /// When the agent read the line, in ms since the epoch: the event time when
    /// the line carries none, and the year for RFC 3164 timestamps.
    pub received_ms: i64,
}

/// A decoded line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Opaque id set by the caller (the journal sequence number); 0 in tests.
    /// Detections cite it as evidence.
    pub id: u64,
    /// Event time in ms since the epoch: the decoded `@timestamp`, else
    /// [`Input::received_ms`].
    pub timestamp_ms: i64,
    /// Named fields (see `rules/FIELDS.md`). Always holds `message` and
    /// `event.module` (`unknown` when no decoder recognised the line), and
    /// `decode.error` when a decoder recognised the line but could not decode it.
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// A field as text, if it is a string.
    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(serde_json::Value::as_str)
    }

    /// A field as an integer, if it is a number.
    pub fn get_i64(&self, field: &str) -> Option<i64> {
        self.fields.get(field).and_then(serde_json::Value::as_i64)
    }
}
