//! The prefilter: which rules an event can match, found with a few hash
//! lookups instead of by testing every rule.
//!
//! Most rules require a field to hold one of a few values (`event.action:
//! deny`, `user.name: [admin, root]`, `destination.port: 3389`). When the
//! engine is built, each rule is filed under one such requirement (see
//! [`requirements`]); an event then looks up its own values of the indexed
//! fields and gets the rules filed under them, plus the rules that have no
//! requirement. The index only ever narrows down: every candidate is still
//! tested with its full condition, so a rule matches exactly the events it
//! matched without the index.
//!
//! Which requirement a rule is filed under: the one whose field has the most
//! distinct required values over the whole rule set (on real rule sets,
//! `user.name` or `event.action` rather than `event.module`), so that an
//! event's lookups hit short lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use super::view::{FieldView, Slots};
use crate::rule::condition::{Condition, Scalar, Test};

/// A value a requirement names, as the equality test compares it: numbers by
/// value (`22`, `"22"` and `22.0` are equal), everything else by text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    Text(String),
    Num(u64),
}

/// `n` as a map key: equal numbers give equal keys (`-0.0` is `0.0`).
fn num_key(n: f64) -> u64 {
    if n == 0.0 { 0 } else { n.to_bits() }
}

impl Key {
    fn of(s: &Scalar) -> Key {
        match s.num() {
            Some(n) => Key::Num(num_key(n)),
            None => Key::Text(s.text().to_string()),
        }
    }
}

/// "`field` holds one of `keys`", which every matching event satisfies.
type Requirement = (String, BTreeSet<Key>);

/// The requirements of `c`: conditions every event that satisfies `c`
/// satisfies too. Case-sensitive `equals` and `in` count; `all` adds up its
/// parts' requirements; `any` requires what all of its branches require on
/// the same field (the union of their values); `not` requires nothing.
pub(crate) fn requirements(c: &Condition) -> Vec<Requirement> {
    match c {
        Condition::Field { field, tests } => tests
            .iter()
            .find_map(|t| match t {
                Test::Equals(s, false) => Some(BTreeSet::from([Key::of(s)])),
                Test::In(list, false) => Some(list.iter().map(Key::of).collect()),
                _ => None,
            })
            .map(|keys| vec![(field.clone(), keys)])
            .unwrap_or_default(),
        Condition::All(cs) => cs.iter().flat_map(requirements).collect(),
        Condition::Any(cs) => any_of(cs.iter().map(requirements).collect()),
        Condition::Not(_) => Vec::new(),
    }
}

/// What every one of `branches` requires, per field (values joined).
pub(crate) fn any_of(branches: Vec<Vec<Requirement>>) -> Vec<Requirement> {
    let mut branches = branches.into_iter();
    let Some(first) = branches.next() else {
        return Vec::new();
    };
    let mut common: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
    for (f, keys) in first {
        common.entry(f).or_insert(keys);
    }
    for branch in branches {
        let mut next = BTreeMap::new();
        for (f, keys) in branch {
            if let Some(mut have) = common.remove(&f) {
                have.extend(keys);
                next.insert(f, have);
            }
        }
        common = next;
    }
    common.into_iter().collect()
}

/// FNV-1a: the index maps are built from the rules and only looked up with
/// event values, so a keyed hash buys nothing and costs time.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The rules filed under one field.
#[derive(Debug, Clone)]
struct FieldIndex {
    slot: usize,
    text: FnvMap<String, Vec<u32>>,
    num: FnvMap<u64, Vec<u32>>,
}

/// Rules by required value, see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    fields: Vec<FieldIndex>,
    /// Rules with no requirement: candidates for every event.
    always: Vec<u32>,
}

impl RuleIndex {
    /// Files each of `rules` (rule index, its requirements) under one of
    /// its requirements.
    pub(crate) fn new(rules: &[(usize, Vec<Requirement>)], slots: &mut Slots) -> RuleIndex {
        let mut distinct: BTreeMap<&str, BTreeSet<&Key>> = BTreeMap::new();
        for (_, reqs) in rules {
            for (f, keys) in reqs {
                distinct.entry(f).or_default().extend(keys);
            }
        }
        let mut index = RuleIndex::default();
        let mut by_field: BTreeMap<&str, usize> = BTreeMap::new();
        for (rule, reqs) in rules {
            let best = reqs.iter().max_by(|(fa, ka), (fb, kb)| {
                (
                    distinct[fa.as_str()].len(),
                    std::cmp::Reverse(ka.len()),
                    std::cmp::Reverse(fa),
                )
                    .cmp(&(
                        distinct[fb.as_str()].len(),
                        std::cmp::Reverse(kb.len()),
                        std::cmp::Reverse(fb),
                    ))
            });
            let rule = *rule as u32;
            let Some((field, keys)) = best else {
                index.always.push(rule);
                continue;
            };
            let at = *by_field.entry(field).or_insert_with(|| {
                index.fields.push(FieldIndex {
                    slot: slots.id(field),
                    text: FnvMap::default(),
                    num: FnvMap::default(),
                });
                index.fields.len() - 1
            });
            let fi = &mut index.fields[at];
            for k in keys {
                let list = match k {
                    Key::Text(t) => fi.text.entry(t.clone()).or_default(),
                    Key::Num(n) => fi.num.entry(*n).or_default(),
                };
                list.push(rule);
            }
        }
        index
    }

    /// The rules `view`'s event may match, in rule order, into `out`.
    pub(crate) fn candidates(&self, view: &mut FieldView<'_>, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.always);
        let mut sources = usize::from(!self.always.is_empty());
        for fi in &self.fields {
            let Some(v) = view.get(fi.slot) else {
                continue;
            };
            let mut add = |v: &Value| {
                if !fi.text.is_empty() {
                    let text: std::borrow::Cow<'_, str> = match v {
                        Value::String(s) => s.as_str().into(),
                        Value::Number(n) => n.to_string().into(),
                        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
                        _ => return,
                    };
                    if let Some(list) = fi.text.get(text.as_ref()) {
                        out.extend_from_slice(list);
                        sources += 1;
                    }
                }
                if !fi.num.is_empty() {
                    let n = match v {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse::<f64>().ok(),
                        _ => None,
                    };
                    if let Some(list) = n.and_then(|n| fi.num.get(&num_key(n))) {
                        out.extend_from_slice(list);
                        sources += 1;
                    }
                }
            };
            match v {
                Value::Array(items) => items.iter().for_each(&mut add),
                v => add(v),
            }
        }
        if sources > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fields;

    use crate::rule::condition::compile_for_test as cond;

    /// Every rule whose condition holds is a candidate (the index only
    /// narrows down), and rules whose required values are absent are not.
    #[test]
    fn candidates_hold_every_matching_rule() {
        let table = [
            "{field: event.action, equals: deny}",
            "{all: [{field: event.module, equals: sshd}, {field: user.name, in: [root, admin]}]}",
            "{field: destination.port, in: [22, 3389]}",
            "{field: destination.port, equals: '80'}",
            "{field: flags, equals: SYN}",
            "{field: ok, equals: true}",
            "{any: [{field: event.action, equals: allow}, {all: [{field: event.action, equals: deny}, {field: x, exists: true}]}]}",
            "{any: [{field: event.action, equals: allow}, {field: user.name, equals: root}]}",
            "{not: {field: event.action, equals: deny}}",
            "{field: user.name, equals: ROOT, case_insensitive: true}",
            "{field: n, equals: 0}",
        ];
        let conds: Vec<Condition> = table.iter().map(|y| cond(y)).collect();
        let mut slots = Slots::default();
        let reqs: Vec<(usize, Vec<Requirement>)> = conds
            .iter()
            .enumerate()
            .map(|(i, c)| (i, requirements(c)))
            .collect();
        let index = RuleIndex::new(&reqs, &mut slots);
        let fast: Vec<super::super::view::Fast> = conds
            .iter()
            .map(|c| super::super::view::Fast::new(c, &mut slots))
            .collect();
        let events: Vec<Fields> = [
            serde_json::json!({"event.action": "deny", "destination.port": 3389, "x": 1}),
            serde_json::json!({"event.module": "sshd", "user.name": "root", "destination.port": "22.0"}),
            serde_json::json!({"user.name": "Root", "destination.port": 80, "flags": ["DF", "SYN"]}),
            serde_json::json!({"ok": true, "n": -0.0, "event.action": "allow"}),
            serde_json::json!({"ok": "true", "n": "0", "event.action": ["x", "allow"]}),
            serde_json::json!({}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap_or_default())
        .collect();
        let mut got = Vec::new();
        for ev in &events {
            let mut view = FieldView::new(ev, slots.names());
            index.candidates(&mut view, &mut got);
            for (i, (c, f)) in conds.iter().zip(&fast).enumerate() {
                let matches = c.eval(ev);
                assert_eq!(f.eval(&mut view), matches);
                if matches {
                    assert!(got.contains(&(i as u32)), "{} on {ev:?}", table[i]);
                }
            }
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "rule order, no repeats"
            );
        }
        // Without a user.name, the rule that requires one is not a candidate.
        let mut view = FieldView::new(&events[0], slots.names());
        index.candidates(&mut view, &mut got);
        assert!(!got.contains(&1));
    }
}
