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
    /// Entries that are networks or addresses.
    nets: Vec<IpNet>,
}

impl List {
    /// Whether `text` is an entry or an address inside an entry's network.
    pub fn contains(&self, text: &str) -> bool {
        // Entries are stored lower-cased: one lookup, and a lower-cased
        // copy only for text that has upper case (addresses have none).
        let found = if text.bytes().any(|b| b.is_ascii_uppercase()) {
            self.words.contains(&text.to_ascii_lowercase())
        } else {
            self.words.contains(text)
        };
        if found {
            return true;
        }
        !self.nets.is_empty()
            && text
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.nets.iter().any(|n| n.contains(&ip)))
    }

    /// How many entries the list has.
    pub fn len(&self) -> usize {
        self.words.len() + self.nets.len()
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
            for line in f.text.lines() {
                let entry = line.split('#').next().unwrap_or("").trim();
                if entry.is_empty() {
                    continue;
                }
                match entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                {
                    Ok(net) => list.nets.push(net),
                    Err(_) => {
                        list.words.insert(entry.to_ascii_lowercase());
                    }
                }
            }
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
}
