//! Who is sending: configured devices by address or network (longest prefix
//! wins), otherwise an unknown sender identified by its address, or refused.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One `[[syslog.senders]]` entry, validated.
#[derive(Debug, Clone)]
pub struct SenderSpec {
    pub name: String,
    pub net: ipnet::IpNet,
    pub source_type: String,
    pub labels: BTreeMap<String, String>,
}

/// The identity a message is journalled under.
#[derive(Debug, PartialEq, Eq)]
pub struct Sender {
    /// The journal's `source`: the configured name, or the address.
    pub name: String,
    /// Metric label: the configured name, or `unknown` (never an address).
    pub label: String,
    /// The journal stream (`syslog:<name>`; `syslog:unknown` for every
    /// unknown sender, so spoofed source addresses cannot grow the journal's
    /// de-duplication marks without bound).
    pub stream: String,
    /// Decoder hint.
    pub source_type: String,
    pub labels: BTreeMap<String, String>,
    /// Listed in the configuration.
    pub known: bool,
}

/// The sender table.
#[derive(Debug, Clone)]
pub struct Senders {
    /// Longest prefix first, so the first match is the most specific.
    specs: Vec<(ipnet::IpNet, Arc<Sender>)>,
    allow_unknown: bool,
    unknown_source_type: String,
}

/// The stream of every sender not in the configuration.
pub const UNKNOWN_STREAM: &str = "syslog:unknown";

impl Senders {
    pub fn new(
        mut specs: Vec<SenderSpec>,
        allow_unknown: bool,
        unknown_source_type: String,
    ) -> Senders {
        specs.sort_by_key(|s| std::cmp::Reverse(s.net.prefix_len()));
        let specs = specs
            .into_iter()
            .map(|s| {
                let sender = Sender {
                    stream: format!("syslog:{}", s.name),
                    label: s.name.clone(),
                    name: s.name,
                    source_type: s.source_type,
                    labels: s.labels,
                    known: true,
                };
                (s.net, Arc::new(sender))
            })
            .collect();
        Senders {
            specs,
            allow_unknown,
            unknown_source_type,
        }
    }

    /// The configured names, for pre-creating metric series.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|(_, s)| s.label.as_str())
    }

    /// Identifies the sender at `ip`; `None` when it is unknown and unknown
    /// senders are not allowed.
    pub fn identify(&self, ip: IpAddr) -> Option<Arc<Sender>> {
        let ip = ip.to_canonical();
        if let Some((_, s)) = self.specs.iter().find(|(net, _)| net.contains(&ip)) {
            return Some(s.clone());
        }
        if !self.allow_unknown {
            return None;
        }
        Some(Arc::new(Sender {
            name: ip.to_string(),
            label: "unknown".into(),
            stream: UNKNOWN_STREAM.into(),
            source_type: self.unknown_source_type.clone(),
            labels: BTreeMap::new(),
            known: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, cidr: &str, st: &str) -> SenderSpec {
        SenderSpec {
            name: name.into(),
            net: cidr.parse().expect("cidr"),
            source_type: st.into(),
            labels: BTreeMap::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn longest_prefix_wins_and_unknown_senders_follow_the_allow_list() {
        let table = vec![
            spec("branch", "10.0.0.0/16", "pfsense"),
            spec("fw-edge-1", "10.0.0.1/32", "fortigate"),
        ];
        let open = Senders::new(table.clone(), true, "generic".into());
        let s = open.identify(ip("10.0.0.1")).expect("known");
        assert_eq!(
            (s.name.as_str(), s.source_type.as_str()),
            ("fw-edge-1", "fortigate")
        );
        assert_eq!(s.stream, "syslog:fw-edge-1");
        let s = open.identify(ip("10.0.9.9")).expect("known");
        assert_eq!(s.name, "branch");
        // An IPv4 peer seen on a dual-stack socket is the same device.
        let s = open.identify(ip("::ffff:10.0.0.1")).expect("mapped");
        assert_eq!(s.name, "fw-edge-1");
        let u = open.identify(ip("192.0.2.7")).expect("allowed");
        assert_eq!(
            (
                u.name.as_str(),
                u.label.as_str(),
                u.stream.as_str(),
                u.source_type.as_str()
            ),
            ("192.0.2.7", "unknown", UNKNOWN_STREAM, "generic")
        );
        assert!(!u.known);
        let closed = Senders::new(table, false, String::new());
        assert!(closed.identify(ip("192.0.2.7")).is_none());
        assert!(closed.identify(ip("10.0.0.1")).is_some());
    }
}
