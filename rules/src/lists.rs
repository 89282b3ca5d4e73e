//! Named lists for the `in_list:` operator (blocklisted addresses, malware
//! names, service accounts, ...).
//!
//! The caller reads the list files and hands their text in as
//! [`SourceFile`]s; this crate does no I/O. A list's name is its file name
//! without folders and extension (`lists/blocklist-ip.txt` → `blocklist-ip`).
//! One entry per line; blank lines and text after `#` are ignored. An entry
//! that parses as an IP network (`203.0.113.0/24`) or address also matches
//! every address inside it; other entries match the field's text exactly,
//! ignoring ASCII case.
//!
//! Networks are kept as sorted ranges of addresses, so a lookup is a binary
//! search: a threat feed of a hundred thousand networks costs each lookup
//! about seventeen comparisons, not a hundred thousand.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::error::{LoadError, LoadErrors};
use crate::event::SourceFile;

/// One compiled list.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// The list's name, as used by `in_list:`.
    pub name: String,
    /// Entries that are not networks, lower-cased.
    words: HashSet<String>,
    /// The entries that are networks or addresses.
    networks: Networks,
    /// How many entries are networks or addresses.
    nets: usize,
}

impl List {
    /// Whether `text` is an entry or an address inside an entry's network.
    pub fn contains(&self, text: &str) -> bool {
        if self.has_word(text) {
            return true;
        }
        if self.nets == 0 {
            return false;
        }
        parse_ip(text).is_some_and(|ip| self.networks.contains(ip))
    }

    /// [`List::contains`] of a text already read as an address: `ip` is
    /// `text.parse::<IpAddr>().ok()`. An address is never a word (an entry
    /// that reads as one is kept as a network), so one of the two lookups
    /// is enough.
    pub(crate) fn contains_read(&self, text: &str, ip: Option<IpAddr>) -> bool {
        match ip {
            Some(ip) => self.nets != 0 && self.networks.contains(ip),
            None => self.has_word(text),
        }
    }

    /// Whether `text` is one of the entries that are not networks.
    fn has_word(&self, text: &str) -> bool {
        // Entries are stored lower-cased: one lookup, and a lower-cased
        // copy only for text that has upper case (addresses have none).
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            self.words.contains(&text.to_ascii_lowercase())
        } else {
            self.words.contains(text)
        }
    }

    /// How many entries the list has.
    pub fn len(&self) -> usize {
        self.words.len() + self.nets
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All lists known to a rule set, by name.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    by_name: BTreeMap<String, Arc<List>>,
}

impl Lists {
    /// Compiles list files. Two files with the same name are an error; every
    /// error is reported.
    pub fn from_sources(files: &[SourceFile]) -> Result<Lists, LoadErrors> {
        let mut errors = Vec::new();
        let mut by_name: BTreeMap<String, (String, Arc<List>)> = BTreeMap::new();
        for f in files {
            let name = list_name(&f.name);
            if name.is_empty() {
                errors.push(LoadError::new(
                    &f.name,
                    None,
                    None,
                    "a list needs a file name",
                ));
                continue;
            }
            let mut list = List {
                name: name.clone(),
                ..List::default()
            };
            let mut nets = Vec::new();
            for (_, entry) in entries(&f.text) {
                match parse_net(entry) {
                    Some(net) => nets.push(net),
                    None => {
                        list.words.insert(entry.to_ascii_lowercase());
                    }
                }
            }
            list.nets = nets.len();
            list.networks = Networks::new(nets);
            if let Some((prev, _)) = by_name.get(&name) {
                errors.push(LoadError::new(
                    &f.name,
                    None,
                    None,
                    format!("list `{name}` is already loaded from {prev}"),
                ));
            } else {
                by_name.insert(name, (f.name.clone(), Arc::new(list)));
            }
        }
        if errors.is_empty() {
            Ok(Lists {
                by_name: by_name.into_iter().map(|(k, (_, l))| (k, l)).collect(),
            })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// The list called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<List>> {
        self.by_name.get(name).cloned()
    }

    /// Every list name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// A list entry that looks like an address or a network but is not one
/// (`192.168.1.300`, `10.0.0.0/33`, `2001:db8::1::2`): it is kept as text,
/// so it never matches an address, which is rarely what its writer meant.
/// A warning, not an error: lists also hold names and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubtfulEntry {
    /// The list file.
    pub file: String,
    /// The entry's line (1-based).
    pub line: usize,
    /// The entry, as written.
    pub entry: String,
}

impl std::fmt::Display for DoubtfulEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: list entry `{}` looks like an address or network but is not one: \
             it is compared as text and matches no address",
            self.file, self.line, self.entry
        )
    }
}

/// The entries of list files that look like an address or a network but
/// do not parse as one (see [`DoubtfulEntry`]): four dotted numbers, a
/// prefix length after an address, or text of hex digits and colons with
/// `::` or seven colons (a MAC address has five).
pub fn doubtful_entries(files: &[SourceFile]) -> Vec<DoubtfulEntry> {
    let mut out = Vec::new();
    for f in files {
        for (line, entry) in entries(&f.text) {
            if looks_like_net(entry) && parse_net(entry).is_none() {
                out.push(DoubtfulEntry {
                    file: f.name.clone(),
                    line,
                    entry: entry.to_owned(),
                });
            }
        }
    }
    out
}

/// The entries of a list file with their lines (1-based): one a line,
/// `#` starts a comment, blank lines hold none.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(n, line)| {
        let entry = line.split('#').next().unwrap_or("").trim();
        (!entry.is_empty()).then_some((n + 1, entry))
    })
}

fn looks_like_net(entry: &str) -> bool {
    let (address, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let dotted_quad = address.split('.').count() == 4 && address.split('.').all(digits);
    let v6 = address
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && (address.contains("::") || address.bytes().filter(|&b| b == b':').count() == 7);
    // An address with anything after a `/`, or text shaped like one,
    // alone or with a number after a `/`.
    address.parse::<IpAddr>().is_ok() && prefix.is_some()
        || (dotted_quad || v6) && prefix.is_none_or(digits)
}

/// `text.parse::<IpAddr>().ok()`, with a dotted quad (the form of nearly
/// every address in a log) read in one pass. Decoding checks each address
/// field and `cidr:` and `in_list:` tests read them again: the standard
/// parser, general enough for every form, took a few hundred instructions
/// a line.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    match dotted_quad(text.as_bytes()) {
        Some(ip) => Some(IpAddr::V4(ip)),
        None => text.parse().ok(),
    }
}

/// A dotted quad as the standard parser reads one (four numbers of one to
/// three digits up to 255, no leading zero); `None` for anything else,
/// which may still be an address in another form.
fn dotted_quad(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    if b.len() < 7 || b.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if b.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let start = at;
        let mut n: u32 = 0;
        while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
            if at - start == 3 {
                return None;
            }
            n = n * 10 + u32::from(d - b'0');
            at += 1;
        }
        let digits = at - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(n).ok()?;
    }
    (at == b.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// `10.0.0.0/8`, `fc00::/7` or one address (a network of one).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

/// Networks as sorted, disjoint ranges of addresses (first, last), IPv4
/// and IPv6 apart: whether one holds an address is a binary search. Lists
/// (`in_list:`) and `cidr:` tests keep their networks so.
#[derive(Debug, Clone, Default)]
pub(crate) struct Networks {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Networks {
    pub(crate) fn new(nets: impl IntoIterator<Item = IpNet>) -> Networks {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Networks {
            v4: disjoint(v4),
            v6: disjoint(v6),
        }
    }

    /// Whether one of the networks holds `ip`.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => in_ranges(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => in_ranges(&self.v6, u128::from(ip)),
        }
    }
}

/// `ranges` sorted, with the ranges that overlap merged into one.
fn disjoint<T: Ord + Copy>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some((_, end)) if first <= *end => *end = (*end).max(last),
            _ => out.push((first, last)),
        }
    }
    out.shrink_to_fit();
    out
}

/// Whether `x` is in one of the sorted, disjoint `ranges`.
fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range that starts at or before `x` is the only one that can
    // hold it.
    let after = ranges.partition_point(|&(first, _)| first <= x);
    after > 0 && x <= ranges[after - 1].1
}

/// `lists/blocklist-ip.txt` → `blocklist-ip`.
fn list_name(path: &str) -> String {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_look_like_addresses_but_are_not_are_doubtful() {
        let text = "10.0.0.1\n192.168.1.300 # typo\n10.0.0.0/33\n10.0.0.0/8\n\
                    2001:db8::1::2\nfc00::/7\nfc00::/129\nEicar-Signature\n0.103.8\n\
                    00:11:22:33:44:55\nTrojan:Win32/Agent\n1.2.3.4/x\n\n# 1.2.3.999\n";
        let got: Vec<(usize, String)> = doubtful_entries(&[SourceFile::new("l.txt", text)])
            .into_iter()
            .map(|d| (d.line, d.entry))
            .collect();
        let want: Vec<(usize, String)> = [
            (2, "192.168.1.300"),
            (3, "10.0.0.0/33"),
            (5, "2001:db8::1::2"),
            (7, "fc00::/129"),
            (12, "1.2.3.4/x"),
        ]
        .into_iter()
        .map(|(l, e)| (l, e.to_owned()))
        .collect();
        assert_eq!(got, want);
        let d = &doubtful_entries(&[SourceFile::new("l.txt", "10.0.0.0/33\n")])[0];
        assert_eq!(
            d.to_string(),
            "l.txt:1: list entry `10.0.0.0/33` looks like an address or network but is not one: \
             it is compared as text and matches no address"
        );
    }

    /// `parse_ip` reads every text as the standard parser does: texts
    /// near a dotted quad (every mix of digits, dots and a few other
    /// bytes up to six long, every quad of numbers that are octets or
    /// almost, and edited forms of real addresses).
    #[test]
    fn parse_ip_agrees_with_the_standard_parser() {
        let alphabet = ["0", "1", "2", "5", "9", ".", ":", "a", " ", "+"];
        let mut texts = crate::every_text(&alphabet, 6);
        for base in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.1",
            "192.168.1.255",
            "255.255.255.255",
            "198.51.100.7",
        ] {
            for prefix in ["", "0", "1", " ", "."] {
                for suffix in ["", "0", "9", " ", ".", ".1", ":80", "/24"] {
                    texts.push(format!("{prefix}{base}{suffix}"));
                }
            }
            for (i, _) in base.char_indices() {
                for ins in ["0", "9", "00", "256", "."] {
                    texts.push(format!("{}{ins}{}", &base[..i], &base[i..]));
                }
                texts.push(format!("{}{}", &base[..i], &base[i + 1..]));
            }
        }
        // Every quad of numbers that are octets or almost.
        let numbers = [
            "0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "255", "256", "299",
            "999", "1000",
        ];
        for a in numbers {
            for b in numbers {
                for c in numbers {
                    for d in numbers {
                        texts.push(format!("{a}.{b}.{c}.{d}"));
                    }
                }
            }
        }
        texts.extend(
            [
                "256.1.1.1",
                "1.1.1.256",
                "1.1.1.1000",
                "01.1.1.1",
                "1.1.1.01",
                "1.1.1",
                "1.1.1.1.1",
                "::1",
                "fc00::7",
                "::ffff:1.2.3.4",
                "1.2.3.4%eth0",
                "１.2.3.4",
                "",
            ]
            .map(String::from),
        );
        let mut quads = 0;
        for t in &texts {
            let want = t.parse::<IpAddr>().ok();
            assert_eq!(parse_ip(t), want, "{t:?}");
            quads += usize::from(want.is_some_and(|ip| ip.is_ipv4()));
        }
        assert!(
            texts.len() > 1_000_000 && quads > 10_000,
            "{} {quads}",
            texts.len()
        );
    }

    #[test]
    fn entries_networks_and_names() {
        let lists = Lists::from_sources(&[
            SourceFile::new(
                "/etc/soc/lists/blocklist-ip.txt",
                "# bad\n203.0.113.0/24\n198.51.100.7 # one host\n\nEvil.Example\n",
            ),
            SourceFile::new("malware.list", "Eicar-Test-Signature\n"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lists.names(), ["blocklist-ip", "malware"]);
        let bl = lists.get("blocklist-ip").unwrap_or_default();
        let table = [
            ("203.0.113.44", true),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
            ("evil.example", true),
            ("EVIL.EXAMPLE", true),
            ("Evil.Example", true),
            ("example", false),
        ];
        for (text, want) in table {
            assert_eq!(bl.contains(text), want, "{text}");
        }
        assert_eq!(bl.len(), 3);
        let dup = Lists::from_sources(&[
            SourceFile::new("a/x.txt", "1"),
            SourceFile::new("b/x.txt", "2"),
        ]);
        let msg = dup.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, "b/x.txt: list `x` is already loaded from a/x.txt");
    }

    /// `contains_read` (the engine's, with the address it read once)
    /// answers as `contains` for texts that are addresses, look like them
    /// or are words, in any case, on a list of networks, addresses and
    /// words.
    #[test]
    fn contains_read_answers_as_contains() {
        let lists = Lists::from_sources(&[SourceFile::new(
            "l.txt",
            "203.0.113.0/24\n2001:DB8::/32\n198.51.100.7\n010.1.1.1\nEvil.Example\n::ffff:192.0.2.1\n",
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let list = lists.get("l").unwrap_or_default();
        let words_only = Lists::from_sources(&[SourceFile::new("w.txt", "evil.example\n")])
            .unwrap_or_else(|e| panic!("{e}"))
            .get("w")
            .unwrap_or_default();
        let texts = [
            "203.0.113.9",
            "203.0.114.9",
            "2001:db8::1",
            "2001:DB8::1",
            "2001:db9::1",
            "198.51.100.7",
            "198.51.100.07",
            "010.1.1.1",
            "10.1.1.1",
            "evil.example",
            "EVIL.example",
            "::ffff:192.0.2.1",
            "::FFFF:192.0.2.1",
            " 198.51.100.7",
            "",
        ];
        let mut found = 0;
        for l in [&list, &words_only] {
            for text in texts {
                let ip = text.parse::<IpAddr>().ok();
                assert_eq!(
                    l.contains_read(text, ip),
                    l.contains(text),
                    "{}: {text:?}",
                    l.name
                );
                found += usize::from(l.contains(text));
            }
        }
        // Not vacuous: the lists hold some of the texts.
        assert_eq!(found, 11);
    }

    /// The ranges answer as a scan of every network would, on lists of
    /// nested, overlapping and adjacent networks of both families, for
    /// addresses at, inside, next to and far from their edges.
    #[test]
    fn ranges_answer_as_a_scan_of_the_networks() {
        let mut next = crate::decode::tests::xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..200 {
            let mut nets = Vec::new();
            let mut text = String::new();
            for _ in 0..(next() % 12) {
                // Addresses near a few bases, so networks overlap.
                let net = if next().is_multiple_of(4) {
                    let base = 0x2001_0db8_u128 << 96 | u128::from(next() % 3) << 64;
                    let prefix = 60 + (next() % 69) as u8;
                    let ip = std::net::Ipv6Addr::from(base | u128::from(next() % 0x1_0000) << 48);
                    IpNet::new(IpAddr::V6(ip), prefix).map(|n| n.trunc())
                } else {
                    let base = 0xc633_6400_u32 + (next() % 3) as u32 * 0x100;
                    let prefix = [0, 8, 22, 23, 24, 25, 26, 30, 31, 32][(next() % 10) as usize];
                    let ip = std::net::Ipv4Addr::from(base + (next() % 512) as u32);
                    IpNet::new(IpAddr::V4(ip), prefix).map(|n| n.trunc())
                };
                let Ok(net) = net else { continue };
                text.push_str(&format!("{net}\n"));
                nets.push(net);
            }
            let lists = Lists::from_sources(&[SourceFile::new("l.txt", &text)])
                .unwrap_or_else(|e| panic!("{e}"));
            let list = lists.get("l").unwrap_or_default();
            assert_eq!(list.len(), nets.len());
            let mut probes: Vec<IpAddr> = Vec::new();
            for n in &nets {
                for edge in [n.network(), n.broadcast()] {
                    probes.push(edge);
                    match edge {
                        IpAddr::V4(ip) => {
                            let v = u32::from(ip);
                            probes.push(IpAddr::V4(v.wrapping_sub(1).into()));
                            probes.push(IpAddr::V4(v.wrapping_add(1).into()));
                        }
                        IpAddr::V6(ip) => {
                            let v = u128::from(ip);
                            probes.push(IpAddr::V6(v.wrapping_sub(1).into()));
                            probes.push(IpAddr::V6(v.wrapping_add(1).into()));
                        }
                    }
                }
            }
            probes.push(IpAddr::V4((0xc633_6400 + (next() % 1024) as u32).into()));
            probes.push(IpAddr::V4(std::net::Ipv4Addr::BROADCAST));
            probes.push(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
            for ip in probes {
                let want = nets.iter().any(|n| n.contains(&ip));
                assert_eq!(
                    list.contains(&ip.to_string()),
                    want,
                    "round {round}: {ip} in {text}"
                );
            }
        }
    }
}
