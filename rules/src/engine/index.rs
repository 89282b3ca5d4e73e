//! The prefilter: which rules an event can match, found with a few hash
//! lookups instead of by testing every rule.
//!
//! Most rules require a field to hold one of a few values (`event.action:
//! deny`, `user.name: [admin, root]`, `destination.port: 3389`). When the
//! engine is built, each rule is filed under one such requirement, or under
//! the combination of two on different fields (see [`requirements`]); an
//! event then looks up its own values of the indexed fields, alone and in
//! those pairs, and gets the rules filed under them, plus the rules that have
//! no requirement. A sequence is filed once per step, under that step's
//! requirements. The index only ever narrows down: every candidate is still
//! tested with its full condition, so a rule matches exactly the events it
//! matched without the index.
//!
//! What a rule is filed under: the requirement, or pair, that lets the
//! smallest share of events through, estimated from the rule set alone (a
//! value that many rules ask for, like `event.module: sshd`, is taken to be
//! common; one that few ask for, like `user.name: oracle`, rare). A pair is
//! taken as the product of its parts: `event.action: ssh_login` with
//! `host.name: web01` narrows far more than either alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use super::view::{FieldView, Slots};
use crate::event::SortedNames;
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
fn any_of(branches: Vec<Vec<Requirement>>) -> Vec<Requirement> {
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

fn mix(h: u64, word: u64) -> u64 {
    (h ^ word)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

/// A hash of `tag` and `bytes`, eight bytes at a time. Not keyed: the
/// tables are built from the rules and never grow, so a value an attacker
/// makes collide with a rule's can only add a candidate that its condition
/// then rejects.
fn hash_bytes(tag: u8, bytes: &[u8]) -> u64 {
    let mut h = mix(u64::from(tag), bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = mix(h, u64::from_le_bytes(b));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(b));
    }
    h ^ (h >> 32)
}

fn text_hash(s: &str) -> u64 {
    hash_bytes(b'T', s.as_bytes())
}

fn num_hash(n: f64) -> u64 {
    hash_bytes(b'N', &num_key(n).to_le_bytes())
}

fn key_hash(k: &Key) -> u64 {
    match k {
        Key::Text(t) => text_hash(t),
        Key::Num(n) => hash_bytes(b'N', &n.to_le_bytes()),
    }
}

/// The table key of a combination of field keys (in the table's field
/// order).
fn combine(hashes: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for x in hashes {
        h = (h.rotate_left(23) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h ^ (h >> 29)
}

/// The table keys are hashes already: hashing them again buys nothing.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A field some table reads, and which kinds of keys rules require of it.
#[derive(Debug, Clone)]
struct IndexedField {
    slot: usize,
    text: bool,
    num: bool,
}

/// The rules filed under one combination of one or two fields, by the
/// hash of their required values. A hash collision only adds a candidate,
/// which its full condition then rejects.
#[derive(Debug, Clone)]
struct Table {
    /// Positions in [`RuleIndex::fields`].
    fields: Vec<usize>,
    rules: HashMap<u64, Vec<u32>, BuildHasherDefault<Identity>>,
    /// The key hashes of its first field that some rule is filed under,
    /// as bits (see [`Firsts`]): an event whose value of that field is
    /// none of them skips the table without a lookup. Most tables are
    /// filed under a few values of a field most events hold
    /// (`event.action: signature_update`), so most events skip most
    /// tables this way.
    firsts: Firsts,
}

/// A set of key hashes as 256 bits, one per hash's top byte: a hash whose
/// bit is clear is not in the set; one whose bit is set may be.
#[derive(Debug, Clone, Default)]
struct Firsts([u64; 4]);

impl Firsts {
    fn insert(&mut self, hash: u64) {
        let bit = (hash >> 56) as usize;
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    #[inline]
    fn may_hold(&self, hash: u64) -> bool {
        let bit = (hash >> 56) as usize;
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// Rules by required value, see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    fields: Vec<IndexedField>,
    /// The names of `fields`, looked up together for each event.
    names: SortedNames,
    tables: Vec<Table>,
    /// Rules with no requirement: candidates for every event.
    always: Vec<u32>,
}

/// At most this many key combinations per filing of a rule under two
/// fields (`in:` lists of 20 and 20 values would make 400).
const MAX_COMBINATIONS: usize = 64;

/// Per-event working memory of [`RuleIndex::candidates`].
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexScratch {
    /// The key hashes of every indexed field's value, field after field.
    hashes: Vec<u64>,
    /// Where each field's hashes start and end in `hashes`.
    spans: Vec<(u32, u32)>,
    /// One bit per rule, for putting a long candidate list in order; all
    /// zero between events.
    seen: Vec<u64>,
}

/// Candidate lists up to this long are put in order by sorting; longer ones
/// (with many rules, an event is filed under many) with a bit per rule,
/// whose cost does not grow with the list.
const SORT_UP_TO: usize = 32;

impl RuleIndex {
    /// Files each of `rules` (rule index; the alternatives it can match
    /// by, each a list of requirements: one for most rules, one per step
    /// for a sequence) under the most selective one or two requirements of
    /// each alternative. A rule with an alternative that requires nothing
    /// is a candidate for every event.
    pub(crate) fn new(rules: &[(usize, Vec<Vec<Requirement>>)], slots: &mut Slots) -> RuleIndex {
        // How often the rule set asks for each value of each field.
        let mut asked: BTreeMap<&str, (usize, BTreeMap<&Key, usize>)> = BTreeMap::new();
        for (_, alternatives) in rules {
            for (f, keys) in alternatives.iter().flatten() {
                let (total, by_key) = asked.entry(f).or_default();
                for k in keys {
                    *total += 1;
                    *by_key.entry(k).or_default() += 1;
                }
            }
        }
        // The share of events a requirement lets through, estimated from
        // the rule set alone: how often rules ask for its values, out of
        // how often they ask anything of its field. A value many rules ask
        // for is a common one (`event.module: sshd`), one few ask for is
        // rarer (`user.name: oracle`, `destination.port: 3389`); a field
        // only one rule reads tells little, hence the one added below.
        let share = |(f, keys): &Requirement| {
            let (total, by_key) = &asked[f.as_str()];
            let mine: usize = keys
                .iter()
                .map(|k| by_key.get(k).copied().unwrap_or(0))
                .sum();
            (mine + 1) as f64 / (total + 2) as f64
        };
        let mut index = RuleIndex::default();
        let mut field_at: BTreeMap<&str, usize> = BTreeMap::new();
        let mut table_at: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        for (rule, alternatives) in rules {
            let rule = *rule as u32;
            let mut filed = Vec::new();
            for reqs in alternatives {
                // The best single requirement, or pair of requirements on
                // two different fields; a pair only when it lets fewer
                // events through.
                let mut options: Vec<(f64, Vec<&Requirement>)> = Vec::new();
                for (i, a) in reqs.iter().enumerate() {
                    options.push((share(a), vec![a]));
                    for b in &reqs[i + 1..] {
                        if a.0 != b.0 && a.1.len() * b.1.len() <= MAX_COMBINATIONS {
                            options.push((share(a) * share(b), vec![a, b]));
                        }
                    }
                }
                // The first of the cheapest: singles come before the pairs
                // they start, so a pair must be strictly better.
                let best = options
                    .into_iter()
                    .reduce(|best, o| if o.0 < best.0 { o } else { best });
                match best {
                    Some((_, mut pick)) => {
                        pick.sort_by(|a, b| a.0.cmp(&b.0));
                        filed.push(pick);
                    }
                    None => {
                        filed.clear();
                        break;
                    }
                }
            }
            if filed.is_empty() {
                index.always.push(rule);
                continue;
            }
            for pick in filed {
                let mut positions = Vec::new();
                for (field, keys) in &pick {
                    let at = *field_at.entry(field).or_insert_with(|| {
                        index.fields.push(IndexedField {
                            slot: slots.id(field),
                            text: false,
                            num: false,
                        });
                        index.fields.len() - 1
                    });
                    let f = &mut index.fields[at];
                    for k in keys.iter() {
                        match k {
                            Key::Text(_) => f.text = true,
                            Key::Num(_) => f.num = true,
                        }
                    }
                    positions.push(at);
                }
                let t = *table_at.entry(positions.clone()).or_insert_with(|| {
                    index.tables.push(Table {
                        fields: positions,
                        rules: HashMap::default(),
                        firsts: Firsts::default(),
                    });
                    index.tables.len() - 1
                });
                let table = &mut index.tables[t];
                let mut combos: Vec<Vec<u64>> = vec![Vec::new()];
                for (_, keys) in &pick {
                    combos = combos
                        .iter()
                        .flat_map(|c| {
                            keys.iter().map(move |k| {
                                let mut c = c.clone();
                                c.push(key_hash(k));
                                c
                            })
                        })
                        .collect();
                }
                for c in combos {
                    if let Some(&first) = c.first() {
                        table.firsts.insert(first);
                    }
                    let list = table.rules.entry(combine(&c)).or_default();
                    if list.last() != Some(&rule) {
                        list.push(rule);
                    }
                }
            }
        }
        index.names = SortedNames::new(
            index
                .fields
                .iter()
                .map(|f| (slots.names()[f.slot].as_str(), f.slot)),
        );
        index
    }

    /// The rules `view`'s event may match, in rule order, into `out`.
    pub(crate) fn candidates(
        &self,
        view: &mut FieldView<'_>,
        scratch: &mut IndexScratch,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        out.extend_from_slice(&self.always);
        let mut sources = usize::from(!self.always.is_empty());
        let IndexScratch {
            hashes,
            spans,
            seen,
        } = scratch;
        hashes.clear();
        spans.clear();
        view.resolve(&self.names);
        for f in &self.fields {
            let start = hashes.len() as u32;
            if let Some(v) = view.get(f.slot) {
                let mut add = |v: &Value| {
                    if f.text {
                        match v {
                            Value::String(s) => hashes.push(text_hash(s)),
                            Value::Number(n) => hashes.push(text_hash(&n.to_string())),
                            Value::Bool(b) => {
                                hashes.push(text_hash(if *b { "true" } else { "false" }))
                            }
                            _ => {}
                        }
                    }
                    if f.num {
                        let n = match v {
                            Value::Number(n) => n.as_f64(),
                            Value::String(s) => s.trim().parse::<f64>().ok(),
                            _ => None,
                        };
                        if let Some(n) = n {
                            hashes.push(num_hash(n));
                        }
                    }
                };
                match v {
                    Value::Array(items) => items.iter().for_each(&mut add),
                    v => add(v),
                }
            }
            spans.push((start, hashes.len() as u32));
        }
        let of = |at: usize| {
            let (a, b) = spans[at];
            &hashes[a as usize..b as usize]
        };
        for t in &self.tables {
            let mut hit = |key: u64| {
                if let Some(list) = t.rules.get(&key) {
                    out.extend_from_slice(list);
                    sources += 1;
                }
            };
            match t.fields[..] {
                [a] => of(a)
                    .iter()
                    .filter(|&&h| t.firsts.may_hold(h))
                    .for_each(|&h| hit(combine(&[h]))),
                [a, b] => {
                    for &ha in of(a).iter().filter(|&&h| t.firsts.may_hold(h)) {
                        for &hb in of(b) {
                            hit(combine(&[ha, hb]));
                        }
                    }
                }
                _ => {}
            }
        }
        if sources > 1 {
            if out.len() <= SORT_UP_TO {
                out.sort_unstable();
                out.dedup();
            } else {
                for &r in out.iter() {
                    let w = r as usize / 64;
                    if w >= seen.len() {
                        seen.resize(w + 1, 0);
                    }
                    seen[w] |= 1 << (r % 64);
                }
                out.clear();
                for (w, word) in seen.iter_mut().enumerate() {
                    let mut bits = std::mem::take(word);
                    while bits != 0 {
                        out.push((w * 64) as u32 + bits.trailing_zeros());
                        bits &= bits - 1;
                    }
                }
            }
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
        let reqs: Vec<(usize, Vec<Vec<Requirement>>)> = conds
            .iter()
            .enumerate()
            .map(|(i, c)| (i, vec![requirements(c)]))
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
        let mut scratch = IndexScratch::default();
        for ev in &events {
            let mut view = FieldView::new(ev, &slots);
            index.candidates(&mut view, &mut scratch, &mut got);
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
        let mut view = FieldView::new(&events[0], &slots);
        index.candidates(&mut view, &mut scratch, &mut got);
        assert!(!got.contains(&1));
    }

    /// Pairs and steps narrow down: a rule that needs two values is not a
    /// candidate for an event that has only one of them, and a sequence is
    /// a candidate for the events of each of its steps only.
    #[test]
    fn pairs_and_sequence_steps_narrow_the_candidates() {
        let step_one = cond(
            "{all: [{field: event.action, equals: ssh_invalid_user}, {field: event.module, equals: sshd}]}",
        );
        let step_two = cond(
            "{all: [{field: event.action, equals: ssh_login}, {field: user.name, equals: root}]}",
        );
        let on_host = cond(
            "{all: [{field: event.action, equals: ssh_login}, {field: host.name, equals: web01}]}",
        );
        // Other rules, so that the values above look specific.
        let others: Vec<Condition> = (0..6)
            .map(|i| cond(&format!("{{all: [{{field: event.action, equals: a{i}}}, {{field: host.name, equals: h{i}}}]}}")))
            .collect();
        let mut rules: Vec<(usize, Vec<Vec<Requirement>>)> = vec![
            (0, vec![requirements(&step_one), requirements(&step_two)]),
            (1, vec![requirements(&on_host)]),
        ];
        rules.extend(
            others
                .iter()
                .enumerate()
                .map(|(i, c)| (i + 2, vec![requirements(c)])),
        );
        let mut slots = Slots::default();
        let index = RuleIndex::new(&rules, &mut slots);
        let cases = [
            (
                serde_json::json!({"event.action": "ssh_invalid_user", "event.module": "sshd", "host.name": "web01"}),
                vec![0],
            ),
            (
                serde_json::json!({"event.action": "ssh_login", "user.name": "root", "host.name": "web01"}),
                vec![0, 1],
            ),
            (
                serde_json::json!({"event.action": "ssh_login", "user.name": "alice", "host.name": "web02"}),
                vec![],
            ),
            (
                serde_json::json!({"event.action": "deny", "host.name": "web01"}),
                vec![],
            ),
        ];
        let mut got = Vec::new();
        let mut scratch = IndexScratch::default();
        for (fields, want) in cases {
            let ev: Fields = serde_json::from_value(fields.clone()).unwrap_or_default();
            let mut view = FieldView::new(&ev, &slots);
            index.candidates(&mut view, &mut scratch, &mut got);
            assert_eq!(got, want, "{fields}");
        }
    }

    /// Property, over random rules and events: every rule (or sequence
    /// step) whose condition holds for an event is among its candidates,
    /// whatever requirements, pairs and alternatives it was filed under.
    #[test]
    fn random_rules_never_lose_a_matching_event() {
        let mut rng = crate::decode::tests::xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| rng() % n;
        // A few fields and values, numbers among them, so that rules and
        // events often meet.
        const VALUES: [&str; 6] = ["a", "b", "c", "22", "22.0", "3389"];
        fn leaf(next: &mut impl FnMut(u64) -> u64) -> String {
            let field = format!("f{}", next(4));
            match next(4) {
                0 => format!("{{field: {field}, equals: '{}'}}", VALUES[next(6) as usize]),
                1 => format!(
                    "{{field: {field}, in: ['{}', '{}']}}",
                    VALUES[next(6) as usize],
                    VALUES[next(6) as usize]
                ),
                2 => format!(
                    "{{field: {field}, contains: '{}'}}",
                    VALUES[next(3) as usize]
                ),
                _ => format!("{{field: {field}, exists: true}}"),
            }
        }
        fn condition(next: &mut impl FnMut(u64) -> u64, depth: u32) -> String {
            if depth == 0 || next(3) == 0 {
                return leaf(next);
            }
            let parts: Vec<String> = (0..1 + next(3))
                .map(|_| condition(next, depth - 1))
                .collect();
            match next(5) {
                0 => format!("{{any: [{}]}}", parts.join(", ")),
                1 => format!("{{not: {}}}", parts[0]),
                _ => format!("{{all: [{}]}}", parts.join(", ")),
            }
        }
        let mut rules: Vec<(usize, Vec<Condition>)> = Vec::new();
        // Enough rules that many events have more candidates than
        // `SORT_UP_TO` (put in order with a bit per rule).
        for i in 0..200 {
            // Every fourth is a sequence of two or three steps.
            let steps = if i % 4 == 0 { 2 + next(2) } else { 1 };
            let conds = (0..steps).map(|_| cond(&condition(&mut next, 3))).collect();
            rules.push((i, conds));
        }
        let filed: Vec<(usize, Vec<Vec<Requirement>>)> = rules
            .iter()
            .map(|(i, cs)| (*i, cs.iter().map(requirements).collect()))
            .collect();
        let mut slots = Slots::default();
        let index = RuleIndex::new(&filed, &mut slots);
        let fast: Vec<Vec<super::super::view::Fast>> = rules
            .iter()
            .map(|(_, cs)| {
                cs.iter()
                    .map(|c| super::super::view::Fast::new(c, &mut slots))
                    .collect()
            })
            .collect();
        let mut got = Vec::new();
        let mut scratch = IndexScratch::default();
        let mut matched = 0;
        let mut long = 0;
        for _ in 0..3000 {
            let mut ev = Fields::new();
            for f in 0..4 {
                let value = |next: &mut dyn FnMut(u64) -> u64| -> Value {
                    match VALUES[next(6) as usize] {
                        v if next(3) == 0 => v
                            .parse::<f64>()
                            .map_or_else(|_| Value::from(v), Value::from),
                        v => Value::from(v),
                    }
                };
                match next(4) {
                    0 => {}
                    1 => {
                        let items = vec![value(&mut next), value(&mut next)];
                        ev.insert(&format!("f{f}"), Value::Array(items));
                    }
                    _ => {
                        let v = value(&mut next);
                        ev.insert(&format!("f{f}"), v);
                    }
                }
            }
            let mut view = FieldView::new(&ev, &slots);
            index.candidates(&mut view, &mut scratch, &mut got);
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "in order, once each: {got:?}"
            );
            long += usize::from(got.len() > SORT_UP_TO);
            for ((i, cs), fs) in rules.iter().zip(&fast) {
                for (c, f) in cs.iter().zip(fs) {
                    let holds = c.eval(&ev);
                    assert_eq!(f.eval(&mut view), holds);
                    if holds {
                        matched += 1;
                        assert!(got.contains(&(*i as u32)), "rule {i} on {ev:?}");
                    }
                }
            }
        }
        assert!(
            matched > 1000,
            "the rules must match often to prove anything: {matched}"
        );
        assert!(long > 300, "only {long} events had a long candidate list");
    }
}
