//! The `[syslog]` section: what the TOML file says ([`SyslogConfig`]) and the
//! validated runtime value ([`SyslogSettings`]) it builds into.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::senders::{SenderSpec, Senders};
use crate::config::ConfigError;

/// `[syslog]`: listeners for firewall appliances and other devices that
/// cannot run an agent. Every listener is off unless its address is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// UDP listener (RFC 5426), e.g. `0.0.0.0:514`. Unset: no UDP listener.
    /// UDP can lose messages; see the operator guide.
    pub udp_listen: Option<String>,
    /// TCP listener (RFC 6587, octet counting or newline framing, detected
    /// per connection), e.g. `0.0.0.0:601`. Unset: no TCP listener.
    pub tcp_listen: Option<String>,
    /// TLS listener (RFC 5425), e.g. `0.0.0.0:6514`, using the collector's
    /// server certificate (`[tls]`). Unset: no TLS listener.
    pub tls_listen: Option<String>,
    /// Longest message kept, in bytes; longer ones are cut to this length and
    /// journalled with `truncated` set. Default 65536.
    pub max_message_bytes: Option<usize>,
    /// Accept messages from addresses no `[[syslog.senders]]` entry covers
    /// (identified by their address, decoder chosen by `unknown_source_type`).
    /// When false such senders are refused and counted in
    /// `soc_syslog_refused_total{reason="unknown_sender"}`. Default true.
    pub allow_unknown: Option<bool>,
    /// Decoder hint (`source_type`) for senders not listed in
    /// `[[syslog.senders]]`. Default `""`: every decoder may try.
    pub unknown_source_type: Option<String>,
    /// Most simultaneous connections per stream listener (TCP and TLS each);
    /// further ones are closed at once and counted. Default 1024.
    pub max_connections: Option<usize>,
    /// A connection that sends nothing for this long is closed. Default `5m`.
    pub idle_timeout: Option<String>,
    /// Time a TLS client has to finish its handshake. Default `10s`.
    pub handshake_timeout: Option<String>,
    /// Bytes of received messages held between the listeners and the journal
    /// writer. When full, TCP/TLS connections stop being read (the senders
    /// are slowed by TCP flow control) and UDP messages are dropped and
    /// counted. Default 16777216 (16 MiB); at least twice `max_message_bytes`.
    pub queue_max_bytes: Option<usize>,
    /// Most messages written to the journal in one append (one fsync).
    /// Default 2000.
    pub batch_max_messages: Option<usize>,
    /// How long the writer waits to fill a batch after its first message.
    /// Default `50ms`.
    pub batch_max_wait: Option<String>,
    /// The known devices.
    #[serde(default)]
    pub senders: Vec<SenderConfig>,
}

/// `[[syslog.senders]]`: one device or network of devices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Name of the device: the journal's `source`, the stream
    /// `syslog:<name>`, and the `sender` label of the metrics. Letters,
    /// digits, `-`, `_`, `.`; unique.
    pub name: String,
    /// Address (`10.0.0.1`) or network (`10.0.0.0/24`) it sends from. When
    /// several entries cover an address, the longest prefix wins.
    pub cidr: String,
    /// Decoder hint for its messages (e.g. `fortigate`). Default `""`.
    #[serde(default)]
    pub source_type: String,
    /// Labels stored with each of its messages (like an agent's labels).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The validated `[syslog]` section.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    pub udp_listen: Option<SocketAddr>,
    pub tcp_listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub queue_max_bytes: usize,
    pub batch_max_messages: usize,
    pub batch_max_wait: Duration,
    /// Who may send, under which name and decoder.
    pub senders: Senders,
}

impl SyslogSettings {
    /// Whether any listener is configured.
    pub fn enabled(&self) -> bool {
        self.udp_listen.is_some() || self.tcp_listen.is_some() || self.tls_listen.is_some()
    }
}

/// Names may appear in metric labels and stream names: keep them plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "unknown"
}

impl SyslogConfig {
    /// Validates every key; `path` is only used in messages.
    pub fn build(self, path: &Path) -> Result<SyslogSettings, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            key,
            message,
        };
        let addr = |key: &'static str, v: Option<String>| match v.as_deref() {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<SocketAddr>().map(Some).map_err(|e| {
                invalid(
                    key,
                    format!("`{v}` is not an address like 0.0.0.0:514: {e}"),
                )
            }),
        };
        let duration = |key: &'static str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            humantime::parse_duration(&v)
                .map_err(|e| invalid(key, format!("`{v}` is not a duration like 5s or 50ms: {e}")))
                .and_then(|d| {
                    if d.is_zero() {
                        Err(invalid(key, "must be longer than 0".into()))
                    } else {
                        Ok(d)
                    }
                })
        };
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err(invalid(key, "must be at least 1".into()))
            } else {
                Ok(v)
            }
        };

        let max_message_bytes = positive(
            "syslog.max_message_bytes",
            self.max_message_bytes.unwrap_or(65536),
        )?;
        if max_message_bytes > 16 * 1024 * 1024 {
            return Err(invalid(
                "syslog.max_message_bytes",
                format!("{max_message_bytes} is more than the 16 MiB this collector allows"),
            ));
        }
        let queue_max_bytes = self.queue_max_bytes.unwrap_or(16 * 1024 * 1024);
        if queue_max_bytes < 2 * max_message_bytes {
            return Err(invalid(
                "syslog.queue_max_bytes",
                format!(
                    "{queue_max_bytes} is less than twice syslog.max_message_bytes ({max_message_bytes})"
                ),
            ));
        }

        let mut names = HashSet::new();
        let mut specs = Vec::with_capacity(self.senders.len());
        for (i, s) in self.senders.into_iter().enumerate() {
            let n = i + 1;
            if !valid_name(&s.name) {
                return Err(invalid(
                    "syslog.senders.name",
                    format!(
                        "sender #{n}: `{}` is not a name of 1 to 64 letters, digits, `-`, `_`, `.` (and not `unknown`)",
                        s.name
                    ),
                ));
            }
            if !names.insert(s.name.clone()) {
                return Err(invalid(
                    "syslog.senders.name",
                    format!("sender #{n}: `{}` is used by an earlier sender", s.name),
                ));
            }
            let net = parse_cidr(&s.cidr).map_err(|e| {
                invalid(
                    "syslog.senders.cidr",
                    format!("sender #{n} (`{}`): `{}` {e}", s.name, s.cidr),
                )
            })?;
            specs.push(SenderSpec {
                name: s.name,
                net,
                source_type: s.source_type,
                labels: s.labels,
            });
        }

        Ok(SyslogSettings {
            udp_listen: addr("syslog.udp_listen", self.udp_listen)?,
            tcp_listen: addr("syslog.tcp_listen", self.tcp_listen)?,
            tls_listen: addr("syslog.tls_listen", self.tls_listen)?,
            max_message_bytes,
            max_connections: positive(
                "syslog.max_connections",
                self.max_connections.unwrap_or(1024),
            )?,
            idle_timeout: duration("syslog.idle_timeout", self.idle_timeout, "5m")?,
            handshake_timeout: duration("syslog.handshake_timeout", self.handshake_timeout, "10s")?,
            queue_max_bytes,
            batch_max_messages: positive(
                "syslog.batch_max_messages",
                self.batch_max_messages.unwrap_or(2000),
            )?,
            batch_max_wait: duration("syslog.batch_max_wait", self.batch_max_wait, "50ms")?,
            senders: Senders::new(
                specs,
                self.allow_unknown.unwrap_or(true),
                self.unknown_source_type.unwrap_or_default(),
            ),
        })
    }
}

/// `10.0.0.1` (one host) or `10.0.0.0/24`.
fn parse_cidr(v: &str) -> Result<ipnet::IpNet, String> {
    let v = v.trim();
    if v.contains('/') {
        let net: ipnet::IpNet = v
            .parse()
            .map_err(|e| format!("is not an address or network like 10.0.0.0/24: {e}"))?;
        if net.trunc() != net {
            return Err(format!("has host bits set; did you mean {}?", net.trunc()));
        }
        Ok(net)
    } else {
        let ip: std::net::IpAddr = v
            .parse()
            .map_err(|e| format!("is not an address or network like 10.0.0.0/24: {e}"))?;
        Ok(ipnet::IpNet::from(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<SyslogSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Wrap {
            syslog: SyslogConfig,
        }
        let w: Wrap = toml::from_str(text).expect("toml");
        w.syslog.build(Path::new("collector.toml"))
    }

    #[test]
    fn defaults_have_no_listener() {
        let s = build("[syslog]\n").expect("defaults");
        assert!(!s.enabled());
        assert_eq!(s.max_message_bytes, 65536);
        assert_eq!(s.batch_max_wait, Duration::from_millis(50));
    }

    #[test]
    fn senders_are_validated_and_named_in_errors() {
        let ok = build(
            "[syslog]\nudp_listen = \"127.0.0.1:0\"\nallow_unknown = false\n\
             [[syslog.senders]]\nname = \"fw-edge-1\"\ncidr = \"10.0.0.1/32\"\nsource_type = \"fortigate\"\n\
             [[syslog.senders]]\nname = \"branch\"\ncidr = \"10.1.0.0/16\"\n",
        )
        .expect("valid");
        assert!(ok.enabled());
        let msg = build("[syslog]\n[[syslog.senders]]\nname = \"a\"\ncidr = \"10.0.0.300\"\n")
            .expect_err("bad cidr")
            .to_string();
        assert!(
            msg.contains("syslog.senders.cidr")
                && msg.contains("sender #1")
                && msg.contains("10.0.0.300"),
            "{msg}"
        );
        let msg = build("[syslog]\n[[syslog.senders]]\nname = \"a\"\ncidr = \"10.0.0.1/8\"\n")
            .expect_err("host bits")
            .to_string();
        assert!(msg.contains("10.0.0.0/8"), "{msg}");
        let msg = build(
            "[syslog]\n[[syslog.senders]]\nname = \"a\"\ncidr = \"10.0.0.1\"\n\
             [[syslog.senders]]\nname = \"a\"\ncidr = \"10.0.0.2\"\n",
        )
        .expect_err("dup")
        .to_string();
        assert!(
            msg.contains("sender #2") && msg.contains("earlier"),
            "{msg}"
        );
        let msg = build("[syslog]\n[[syslog.senders]]\nname = \"fw 1\"\ncidr = \"10.0.0.1\"\n")
            .expect_err("name")
            .to_string();
        assert!(msg.contains("syslog.senders.name"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("udp_listen = \"anywhere\"", "syslog.udp_listen"),
            ("idle_timeout = \"forever\"", "syslog.idle_timeout"),
            ("batch_max_wait = \"0s\"", "syslog.batch_max_wait"),
            ("max_connections = 0", "syslog.max_connections"),
            ("queue_max_bytes = 1000", "syslog.queue_max_bytes"),
        ] {
            let msg = build(&format!("[syslog]\n{text}\n"))
                .expect_err(text)
                .to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }
}
