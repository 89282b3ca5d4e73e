//! What goes into the decoders and what comes out of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

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
    pub fields: Fields,
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

/// The named fields of an [`Event`]: a map from field name to value, kept
/// sorted by name in a vector.
///
/// Events hold a few dozen fields at most and are built once, read a few
/// times and dropped, so a sorted vector beats a tree: two allocations (the
/// entries and their name prefixes) instead of several nodes, and no
/// rebalancing. Lookups are binary
/// searches; iteration, `Debug` and serialisation go in name order, exactly
/// as a `BTreeMap` would. The decoders' field names are interned once for
/// the process, so building an event neither allocates a name
/// nor counts a reference: decoding threads share the names without writing
/// to a common cache line.
/// The first 16 bytes of each name are kept as an integer in an array of
/// their own, so a lookup is a binary search over a few contiguous cache
/// lines of integers, and reads a name only on a tie (names like
/// `destination.port` and `destination.ip` differ within 16 bytes).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// [`prefix`] of each entry's name, in the same order.
    prefixes: Vec<u128>,
    /// Sorted by name, names unique.
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    name: Name,
    value: Value,
}

impl Entry {
    fn new(name: Arc<str>, value: Value) -> Entry {
        Entry {
            name: Name::Shared(name),
            value,
        }
    }
}

/// A field's name: interned for the process (the decoders' names), or
/// shared by reference count (names made at run time, such as the keys of a
/// JSON record).
#[derive(Clone)]
enum Name {
    Interned(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        match self {
            Name::Interned(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        **self == **other
    }
}

impl Eq for Name {}

impl From<Name> for Arc<str> {
    fn from(n: Name) -> Arc<str> {
        match n {
            Name::Interned(s) => Arc::from(s),
            Name::Shared(s) => s,
        }
    }
}

/// The interned names: each distinct name is stored once for the life of the
/// process, so the table is bounded by the names the loaded decoder files
/// have ever declared (a few hundred), however often they are reloaded.
fn intern(name: &str) -> &'static str {
    static TABLE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::LazyLock::new(Default::default);
    // A poisoned lock still holds a valid set: insertion cannot half-happen.
    let mut table = TABLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = table.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.into());
    table.insert(s);
    s
}

/// A field name made once and shared by many events (the decoders' names),
/// with its [`prefix`] computed once too.
#[derive(Debug, Clone)]
pub(crate) struct SharedName {
    prefix: u128,
    name: &'static str,
}

impl SharedName {
    pub(crate) fn new(name: &str) -> SharedName {
        SharedName {
            prefix: prefix(name),
            name: intern(name),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        self.name
    }
}

/// The first 16 bytes of a name, big-endian, zero-padded. Ordering by it and
/// then by the whole name is the same as ordering by the name: where two
/// prefixes differ, they differ at the first byte where the names differ (or
/// where the shorter one ends, which pads with 0, below every other byte).
#[inline]
fn prefix(name: &str) -> u128 {
    let b = name.as_bytes();
    let mut buf = [0u8; 16];
    let n = b.len().min(16);
    buf[..n].copy_from_slice(&b[..n]);
    u128::from_be_bytes(buf)
}

/// The order of two names whose [`prefix`]es are equal. Names of 16 bytes
/// or fewer are all in the prefix, so they differ only by trailing NULs, and
/// the shorter is first (the length is in the name, not in the prefix).
/// Only longer names need their rest read.
#[inline]
fn past_prefix(have: &str, name: &str) -> std::cmp::Ordering {
    if have.len() <= 16 && name.len() <= 16 {
        have.len().cmp(&name.len())
    } else {
        have.cmp(name)
    }
}

/// Field names to look up together with [`Fields::positions_sorted`],
/// each with a number of the caller's (a slot), kept in the fields' order.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedNames(Vec<(u128, String, usize)>);

impl SortedNames {
    /// `names` with their slots; a name given twice is kept once.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = (&'a str, usize)>) -> SortedNames {
        let mut v: Vec<(u128, String, usize)> = names
            .into_iter()
            .map(|(n, slot)| (prefix(n), n.to_string(), slot))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v.dedup_by(|a, b| a.1 == b.1);
        SortedNames(v)
    }
}

impl Fields {
    /// An empty set of fields.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Fields set in order: when a name appears more than once the last value
    /// wins, as if each were inserted in turn.
    pub fn from_ordered(mut pairs: Vec<(Arc<str>, Value)>) -> Fields {
        // Stable: equal names keep their order, so the last one is the latest.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<Entry> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match entries.last_mut() {
                Some(last) if *last.name == *k => last.value = v,
                _ => entries.push(Entry::new(k, v)),
            }
        }
        Fields::with_entries(entries)
    }

    fn with_entries(entries: Vec<Entry>) -> Fields {
        Fields {
            prefixes: entries.iter().map(|e| prefix(&e.name)).collect(),
            entries,
        }
    }

    #[inline]
    fn find(&self, name: &str) -> Result<usize, usize> {
        let p = prefix(name);
        let (mut lo, mut hi) = (0, self.prefixes.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let order = self.prefixes[mid]
                .cmp(&p)
                .then_with(|| past_prefix(&self.entries[mid].name, name));
            match order {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Where each of `names` is among the fields (for
    /// [`Fields::value_at`]): `found(slot, position)` for each name, in
    /// name order. One walk over the fields, which costs less than a
    /// binary search per name once there are a few names to find.
    pub(crate) fn positions_sorted(
        &self,
        names: &SortedNames,
        mut found: impl FnMut(usize, Option<usize>),
    ) {
        let (prefixes, entries) = (&self.prefixes[..], &self.entries[..]);
        let mut i = 0;
        for (p, name, slot) in &names.0 {
            let mut at = None;
            while let Some(&have) = prefixes.get(i) {
                if have < *p {
                    i += 1;
                    continue;
                }
                if have > *p {
                    break;
                }
                match past_prefix(&entries[i].name, name) {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Equal => {
                        at = Some(i);
                        i += 1;
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            found(*slot, at);
        }
    }

    /// Where a field is among the fields in name order (for
    /// [`Fields::value_at`]).
    #[inline]
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.find(name).ok()
    }

    /// The value of the field at `i` (a [`Fields::position`]).
    #[inline]
    pub(crate) fn value_at(&self, i: usize) -> &Value {
        &self.entries[i].value
    }

    /// The value of a field.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.find(name).ok().map(|i| &self.entries[i].value)
    }

    /// The value of a field, to change it in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.find(name).ok().map(|i| &mut self.entries[i].value)
    }

    /// Whether the field is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets a field; returns the value it replaced.
    pub fn insert(&mut self, name: &str, value: Value) -> Option<Value> {
        match self.find(name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].value, value)),
            Err(i) => {
                self.prefixes.insert(i, prefix(name));
                self.entries.insert(i, Entry::new(Arc::from(name), value));
                None
            }
        }
    }

    /// Removes a field; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.find(name).ok()?;
        self.prefixes.remove(i);
        Some(self.entries.remove(i).value)
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Name and value of every field, in name order.
    pub fn iter(&self) -> FieldsIter<'_> {
        FieldsIter(self.entries.iter())
    }

    /// Every field name, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.name)
    }
}

/// [`Fields`] built in place from shared names, by a caller that keeps
/// them in name order (the decoders): no name is copied, no prefix computed,
/// and the finished fields are taken as they are.
pub(crate) struct FieldsBuilder(Fields);

impl FieldsBuilder {
    pub(crate) fn with_capacity(n: usize) -> FieldsBuilder {
        FieldsBuilder(Fields {
            prefixes: Vec::with_capacity(n),
            entries: Vec::with_capacity(n),
        })
    }

    /// Appends a field, whose name the caller keeps after every name
    /// pushed before.
    #[inline]
    pub(crate) fn push(&mut self, name: &SharedName, value: Value) {
        self.0.prefixes.push(name.prefix);
        self.0.entries.push(Entry {
            name: Name::Interned(name.name),
            value,
        });
    }

    pub(crate) fn finish(self) -> Fields {
        debug_assert!(self.0.entries.windows(2).all(|w| *w[0].name < *w[1].name));
        self.0
    }
}

/// The iterator of [`Fields::iter`].
pub struct FieldsIter<'a>(std::slice::Iter<'a, Entry>);

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (&'a str, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|e| (&*e.name, &e.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for FieldsIter<'_> {}

/// The iterator of `Fields::into_iter`.
pub struct FieldsIntoIter(std::vec::IntoIter<Entry>);

impl Iterator for FieldsIntoIter {
    type Item = (Arc<str>, Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|e| (e.name.into(), e.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = FieldsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Fields {
    type Item = (Arc<str>, Value);
    type IntoIter = FieldsIntoIter;
    fn into_iter(self) -> Self::IntoIter {
        FieldsIntoIter(self.entries.into_iter())
    }
}

impl<K: Into<Arc<str>>> FromIterator<(K, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Fields {
        Fields::from_ordered(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<BTreeMap<String, Value>> for Fields {
    fn from(map: BTreeMap<String, Value>) -> Fields {
        // Already sorted and unique.
        // Already sorted by name, each name once.
        Fields::with_entries(
            map.into_iter()
                .map(|(k, v)| Entry::new(Arc::from(k), v))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of field names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(256));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    pairs.push((Arc::from(entry.0), entry.1));
                }
                Ok(Fields::from_ordered(pairs))
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_behave_like_a_sorted_map_where_the_last_value_set_wins() {
        let mut f = Fields::from_ordered(vec![
            ("source.ip".into(), Value::from("10.0.0.1")),
            ("event.module".into(), Value::from("a")),
            ("source.ip".into(), Value::from("10.0.0.2")),
        ]);
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("source.ip"), Some(&Value::from("10.0.0.2")));
        assert_eq!(
            f.insert("event.module", Value::from("b")),
            Some(Value::from("a"))
        );
        assert_eq!(f.insert("agent.name", Value::from("x")), None);
        assert!(!f.contains_key("missing"));
        let names: Vec<&str> = f.keys().collect();
        assert_eq!(names, ["agent.name", "event.module", "source.ip"]);
        assert_eq!(f.remove("agent.name"), Some(Value::from("x")));
        assert_eq!(f.get("agent.name"), None);

        let json = serde_json::to_string(&f).expect("serialises");
        assert_eq!(json, r#"{"event.module":"b","source.ip":"10.0.0.2"}"#);
        // Names that share their first 16 bytes, or differ by trailing NULs.
        let long: Fields = [
            ("destination.port.x", Value::from(1)),
            ("destination.port", Value::from(2)),
            ("destination.port\0", Value::from(3)),
            ("a", Value::from(4)),
            ("a\0", Value::from(5)),
            ("destination.portal", Value::from(6)),
        ]
        .into_iter()
        .collect();
        let names: Vec<&str> = long.keys().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for (name, want) in [
            ("destination.port.x", 1),
            ("destination.port", 2),
            ("destination.port\0", 3),
            ("a", 4),
            ("a\0", 5),
            ("destination.portal", 6),
        ] {
            assert_eq!(long.get(name), Some(&Value::from(want)), "{name:?}");
        }
        assert_eq!(long.get("destination.por"), None);
        assert_eq!(long.get("a\0\0"), None);
        assert_eq!(long.get("destination.port.y"), None);

        let back: Fields = serde_json::from_str(r#"{"z":1,"a":2,"z":3}"#).expect("a map");
        assert_eq!(
            serde_json::to_string(&back).expect("serialises"),
            r#"{"a":2,"z":3}"#
        );
        let map: BTreeMap<String, Value> = serde_json::from_str(&json).expect("a map");
        assert_eq!(Fields::from(map), f);
    }

    /// `positions_sorted` finds what a lookup of each name finds, over
    /// names that share prefixes or differ only by trailing NULs.
    #[test]
    fn positions_sorted_agrees_with_one_lookup_per_name() {
        let pool = [
            "a",
            "a\0",
            "a\0\0",
            "b",
            "destination.port",
            "destination.port\0",
            "destination.port.x",
            "destination.port.y",
            "destination.portal",
            "destination.porta",
            "destination.portb",
            "destination.por",
            "event.module",
            "message",
            "source.ip",
            "zz",
        ];
        let mut next = crate::decode::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let fields: Fields = pool
                .iter()
                .filter(|_| next().is_multiple_of(2))
                .map(|n| (*n, Value::from(*n)))
                .collect();
            let wanted: Vec<(&str, usize)> = pool
                .iter()
                .enumerate()
                .filter(|_| !next().is_multiple_of(3))
                .map(|(slot, n)| (*n, slot))
                .collect();
            let names = SortedNames::new(wanted.iter().copied());
            let mut seen = Vec::new();
            fields.positions_sorted(&names, |slot, at| seen.push((slot, at)));
            let mut expected: Vec<(usize, Option<usize>)> = wanted
                .iter()
                .map(|(n, slot)| (*slot, fields.position(n)))
                .collect();
            expected.sort_by_key(|(slot, _)| pool[*slot]);
            assert_eq!(seen, expected);
            for (slot, at) in seen {
                let value = at.map(|i| fields.value_at(i));
                assert_eq!(value, fields.get(pool[slot]));
            }
        }
    }
}
