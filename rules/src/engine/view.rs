//! The engine's compiled form of the rules: field names resolved to slots,
//! and a per-event [`FieldView`] that looks each field up at most once.
//!
//! An event's fields are a map keyed by name; a rule set of a hundred rules
//! tests the same few fields (`event.module`, `event.action`, `source.ip`)
//! over and over, and every lookup is a walk of string comparisons. The
//! engine numbers every field its rules read when it is built; the view
//! caches the value of each number for one event, and the parsed address for
//! `cidr:` tests.

use crate::Fields;
use crate::event::SortedNames;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::state::GroupKey;
use crate::rule::condition::{Condition, Test, test_text, test_value};

/// Field names numbered in first-seen order, and the distinct group keys
/// rules build from them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slots {
    names: Vec<String>,
    index: HashMap<String, usize>,
    keys: HashMap<(Vec<String>, Vec<usize>), u32>,
    /// The keys by number.
    specs: Vec<KeySpec>,
    /// Distinct field tests (a field and what is tested of it), numbered:
    /// a test many rules make is made once per event (see [`Fast::eval`]).
    tests: HashMap<(usize, String), u32>,
    /// How many conditions make each numbered test.
    test_uses: Vec<u32>,
    /// Tests whose results a view keeps: all of them until
    /// [`Slots::settle_tests`], then those of several conditions.
    memo_len: usize,
    /// The field tests of every condition built with these slots, in the
    /// order they were built ([`Fast`] holds their places): a rule's are
    /// side by side, and next to those of the rule after it, so that the
    /// candidates of an event, taken in rule order, read them going
    /// forward through one block of memory.
    leaves: Vec<Leaf>,
}

/// How a stateful rule (or a sequence step) builds its group key: the
/// names it shows and the slots it reads. Numbered ([`Slots::key`]), so
/// that the rules that group alike (`group_by: [source.ip]`) share the key
/// one event builds.
#[derive(Debug, Clone)]
struct KeySpec {
    names: Vec<String>,
    slots: Vec<usize>,
}

impl Slots {
    /// The slot of `name`, numbered on first sight.
    pub(crate) fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    pub(crate) fn ids(&mut self, names: &[String]) -> Vec<usize> {
        names.iter().map(|n| self.id(n)).collect()
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of the key shown as `names`, read from the fields
    /// `read` (the same fields, but for the later steps of a sequence),
    /// numbered on first sight (see [`FieldView::shared_key`]).
    pub(crate) fn key(&mut self, names: &[String], read: &[String]) -> u32 {
        let slots = self.ids(read);
        let next = self.specs.len() as u32;
        let id = *self
            .keys
            .entry((names.to_vec(), slots.clone()))
            .or_insert(next);
        if id == next {
            self.specs.push(KeySpec {
                names: names.to_vec(),
                slots,
            });
        }
        id
    }

    /// How many distinct keys [`Slots::key`] numbered.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The number of the tests `tests` of slot `slot`, numbered on first
    /// sight.
    fn test_id(&mut self, slot: usize, tests: &[Test]) -> u32 {
        let mut key = String::new();
        for t in tests {
            t.memo_key(&mut key);
        }
        let next = self.tests.len() as u32;
        let id = *self.tests.entry((slot, key)).or_insert(next);
        if id == next {
            self.test_uses.push(0);
        }
        self.test_uses[id as usize] += 1;
        self.memo_len = self.tests.len();
        id
    }

    /// Renumbers the tests once every condition is built: those that
    /// several conditions make keep a number (their result is kept for the
    /// event), the others get [`NO_MEMO`] (kept, it would only cost).
    /// The field tests built so far take their new numbers.
    pub(crate) fn settle_tests(&mut self) {
        let mut next = 0;
        let renumbered: Vec<u32> = self
            .test_uses
            .iter()
            .map(|&uses| {
                if uses < 2 {
                    return NO_MEMO;
                }
                next += 1;
                next - 1
            })
            .collect();
        self.memo_len = next as usize;
        for l in &mut self.leaves {
            if let Some(&memo) = renumbered.get(l.memo as usize) {
                l.memo = memo;
            }
        }
    }

    /// Adds a field test; returns its place.
    fn leaf(&mut self, field: &str, tests: &[Test]) -> u32 {
        let slot = self.id(field);
        let leaf = Leaf {
            slot: slot as u32,
            memo: self.test_id(slot, tests),
            tests: tests.into(),
        };
        self.leaves.push(leaf);
        (self.leaves.len() - 1) as u32
    }

    /// How many test results a view keeps.
    pub(crate) fn test_count(&self) -> usize {
        self.memo_len
    }
}

/// A field test whose result a view does not keep.
pub(crate) const NO_MEMO: u32 = u32::MAX;

/// [`Condition`] with its fields resolved to slots; evaluates exactly like
/// it. Its field tests are kept in the [`Slots`] it was built with, which
/// the [`FieldView`] it is evaluated with reads.
#[derive(Debug, Clone)]
pub(crate) enum Fast {
    All(Box<[Fast]>),
    Any(Box<[Fast]>),
    Not(Box<Fast>),
    /// The place of the field test in [`Slots::leaves`].
    Field(u32),
    /// An `all` of field tests and nothing else, the shape of most rules:
    /// made in one loop, without a call per test. The places of its tests,
    /// `start..end`, in [`Slots::leaves`].
    AllFields(u32, u32),
}

/// One field and its tests.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    slot: u32,
    /// The number of this field and these tests among all the rules' (see
    /// [`Slots::test_id`]), or [`NO_MEMO`].
    memo: u32,
    tests: Box<[Test]>,
}

impl Leaf {
    /// Whether the field passes its tests.
    ///
    /// A field test is made once per event: rules share many of them
    /// (`event.module` is `sshd`, `event.action` is `deny`), and a thousand
    /// rules would otherwise compare the same texts again and again.
    #[inline(always)]
    fn holds(&self, view: &mut FieldView<'_>) -> bool {
        let slot = self.slot as usize;
        if self.memo == NO_MEMO {
            return field_holds(slot, &self.tests, view);
        }
        let memo = self.memo as usize;
        match view.memo[memo] {
            MEMO_FALSE => return false,
            MEMO_TRUE => return true,
            _ => {}
        }
        let holds = field_holds(slot, &self.tests, view);
        view.memo[memo] = if holds { MEMO_TRUE } else { MEMO_FALSE };
        holds
    }

    fn memo(&self) -> Option<u32> {
        (self.memo != NO_MEMO).then_some(self.memo)
    }
}

impl Fast {
    pub(crate) fn new(c: &Condition, slots: &mut Slots) -> Fast {
        match c {
            Condition::All(cs) => {
                let leaves: Option<Vec<(&String, &Vec<Test>)>> = cs
                    .iter()
                    .map(|c| match c {
                        Condition::Field { field, tests } => Some((field, tests)),
                        _ => None,
                    })
                    .collect();
                match leaves {
                    Some(leaves) if !leaves.is_empty() => {
                        let start = slots.leaves.len() as u32;
                        for (f, t) in leaves {
                            slots.leaf(f, t);
                        }
                        Fast::AllFields(start, slots.leaves.len() as u32)
                    }
                    _ => Fast::All(cs.iter().map(|c| Fast::new(c, slots)).collect()),
                }
            }
            Condition::Any(cs) => Fast::Any(cs.iter().map(|c| Fast::new(c, slots)).collect()),
            Condition::Not(c) => Fast::Not(Box::new(Fast::new(c, slots))),
            Condition::Field { field, tests } => Fast::Field(slots.leaf(field, tests)),
        }
    }

    /// The numbers of the field tests whose results a view keeps, at the
    /// top of the condition (all of which must pass), each `None` when the
    /// part is something else.
    pub(crate) fn top_memos(&self, slots: &Slots) -> Vec<Option<u32>> {
        let memo = |at: &u32| slots.leaves.get(*at as usize).and_then(Leaf::memo);
        match self {
            Fast::All(cs) => cs
                .iter()
                .map(|c| match c {
                    Fast::Field(at) => memo(at),
                    _ => None,
                })
                .collect(),
            Fast::AllFields(start, end) => (*start..*end).map(|at| memo(&at)).collect(),
            Fast::Field(at) => vec![memo(at)],
            _ => vec![None],
        }
    }

    /// Whether the condition holds for the viewed event.
    pub(crate) fn eval(&self, view: &mut FieldView<'_>) -> bool {
        let leaves = view.leaves;
        match self {
            Fast::AllFields(start, end) => leaves[*start as usize..*end as usize]
                .iter()
                .all(|l| l.holds(view)),
            Fast::All(cs) => cs.iter().all(|c| c.eval(view)),
            Fast::Any(cs) => cs.iter().any(|c| c.eval(view)),
            Fast::Not(c) => !c.eval(view),
            Fast::Field(at) => leaves[*at as usize].holds(view),
        }
    }
}

/// Whether the field at `slot` passes every test of `tests`.
fn field_holds(slot: usize, tests: &[Test], view: &mut FieldView<'_>) -> bool {
    let value = view.get(slot);
    tests.iter().all(|t| match (t, value) {
        (Test::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        // The common tests on text, without `test_value`'s general path
        // (same answers).
        (Test::Equals(s, false), Some(Value::String(v))) if s.num().is_none() => v == s.text(),
        (Test::In(list, false), Some(Value::String(v)))
            if list.iter().all(|s| s.num().is_none()) =>
        {
            list.iter().any(|s| v == s.text())
        }
        (Test::Cidr(nets), Some(Value::String(_))) => {
            view.ip(slot).is_some_and(|ip| nets.contains(ip))
        }
        // The address read once per event, for lists as for `cidr:`.
        (Test::InList(list), Some(Value::String(v))) => list.contains_read(v, view.ip(slot)),
        // Ignoring case: the value is lower-cased once per event, not
        // once per test.
        (t, Some(Value::String(v))) if t.ignores_case() => {
            test_text(t, v, || v.trim().parse().ok(), Some(view.lower(slot)))
        }
        (t, Some(v)) => test_value(t, v),
    })
}

/// One event's fields by slot, each looked up once.
pub(crate) struct FieldView<'e> {
    fields: &'e Fields,
    names: &'e [String],
    /// The field tests of the engine's conditions ([`Slots::leaves`]).
    leaves: &'e [Leaf],
    /// The group keys by number ([`Slots::specs`]).
    specs: &'e [KeySpec],
    /// This view's number ([`ViewBuffers::epoch`]): the slot caches below
    /// hold this event's entries where they carry it, and entries of
    /// earlier events elsewhere, so that a new view clears nothing.
    epoch: u32,
    /// Where each slot's field is in `fields` (low half; [`ABSENT`] when
    /// the event lacks it), and the epoch it was looked up in (high half).
    values: Vec<u64>,
    /// Each slot parsed as an address (only string values), and the epoch
    /// it was parsed in.
    ips: Vec<(u32, Option<IpAddr>)>,
    /// Group keys by [`KeySpec`] number (`None`: a key field is missing),
    /// and the epoch they were built in.
    keys: Vec<(u32, Option<GroupKey>)>,
    /// Where key texts are written before they are shared.
    text: String,
    /// Field test results by [`Slots::test_id`] number: [`MEMO_UNKNOWN`]
    /// until made.
    memo: Vec<u8>,
    /// Lower-cased string values by slot (for tests that ignore case),
    /// and the epoch they were lower-cased in.
    lower: Vec<(u32, String)>,
    /// Where [`FieldView::text_at`] writes a number.
    number: String,
}

/// A field test not made yet for this event.
const MEMO_UNKNOWN: u8 = 0;
const MEMO_FALSE: u8 = 1;
const MEMO_TRUE: u8 = 2;

/// A slot whose field the event lacks.
const ABSENT: u32 = u32::MAX - 1;

/// The vectors of a [`FieldView`], kept from one event to the next so that
/// viewing an event allocates nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewBuffers {
    /// The number of the last view (0: none yet); see [`FieldView::epoch`].
    epoch: u32,
    values: Vec<u64>,
    ips: Vec<(u32, Option<IpAddr>)>,
    keys: Vec<(u32, Option<GroupKey>)>,
    text: String,
    memo: Vec<u8>,
    lower: Vec<(u32, String)>,
    number: String,
}

impl<'e> FieldView<'e> {
    #[cfg(test)]
    pub(crate) fn new(fields: &'e Fields, slots: &'e Slots) -> FieldView<'e> {
        FieldView::with_buffers(fields, slots, ViewBuffers::default())
    }

    /// A view whose vectors are `buffers` (see [`FieldView::into_buffers`]).
    pub(crate) fn with_buffers(
        fields: &'e Fields,
        slots: &'e Slots,
        buffers: ViewBuffers,
    ) -> FieldView<'e> {
        let names = slots.names();
        let ViewBuffers {
            epoch,
            mut values,
            mut ips,
            mut keys,
            text,
            mut memo,
            mut lower,
            number,
        } = buffers;
        let mut epoch = epoch.wrapping_add(1);
        if epoch == 0 {
            // Four billion events later: entries of epoch 1 would pass
            // for this event's.
            values.fill(0);
            ips.fill((0, None));
            keys.fill((0, None));
            lower.iter_mut().for_each(|(e, _)| *e = 0);
            epoch = 1;
        }
        // The slots of another engine (a reload) number other fields, but
        // their entries are all of earlier epochs.
        if values.len() < names.len() {
            values.resize(names.len(), 0);
            ips.resize(names.len(), (0, None));
            lower.resize(names.len(), (0, String::new()));
        }
        if keys.len() < slots.key_count() {
            keys.resize(slots.key_count(), (0, None));
        }
        memo.clear();
        memo.resize(slots.test_count(), MEMO_UNKNOWN);
        FieldView {
            fields,
            names,
            leaves: &slots.leaves,
            specs: &slots.specs,
            epoch,
            values,
            ips,
            keys,
            text,
            memo,
            lower,
            number,
        }
    }

    /// Its vectors, for the next event's view.
    pub(crate) fn into_buffers(self) -> ViewBuffers {
        let FieldView {
            epoch,
            values,
            ips,
            keys,
            text,
            memo,
            lower,
            number,
            ..
        } = self;
        ViewBuffers {
            epoch,
            values,
            ips,
            keys,
            text,
            memo,
            lower,
            number,
        }
    }

    /// Looks up the fields of `names` (slots of this view's engine) at
    /// once, for the [`FieldView::get`] calls that follow.
    pub(crate) fn resolve(&mut self, names: &SortedNames) {
        let (epoch, values) = (u64::from(self.epoch) << 32, &mut self.values);
        self.fields.positions_sorted(names, |slot, at| {
            if let Some(v) = values.get_mut(slot) {
                *v = epoch | u64::from(at.map_or(ABSENT, |i| i as u32));
            }
        });
    }

    #[inline(always)]
    pub(crate) fn get(&mut self, slot: usize) -> Option<&'e Value> {
        let entry = self.values[slot];
        let at = if (entry >> 32) as u32 == self.epoch {
            entry as u32
        } else {
            let at = self
                .fields
                .position(&self.names[slot])
                .map_or(ABSENT, |i| i as u32);
            self.values[slot] = u64::from(self.epoch) << 32 | u64::from(at);
            at
        };
        (at != ABSENT).then(|| self.fields.value_at(at as usize))
    }

    /// The field parsed as an address, when it is a string.
    fn ip(&mut self, slot: usize) -> Option<IpAddr> {
        if let (epoch, ip) = self.ips[slot]
            && epoch == self.epoch
        {
            return ip;
        }
        let ip = self
            .get(slot)
            .and_then(Value::as_str)
            .and_then(crate::lists::parse_ip);
        self.ips[slot] = (self.epoch, ip);
        ip
    }

    /// The result of the kept test `memo` when it was made for this event.
    #[inline]
    pub(crate) fn made(&self, memo: u32) -> Option<bool> {
        match self.memo[memo as usize] {
            MEMO_FALSE => Some(false),
            MEMO_TRUE => Some(true),
            _ => None,
        }
    }

    /// The field lower-cased, when it is a string (otherwise empty).
    fn lower(&mut self, slot: usize) -> &str {
        if self.lower[slot].0 != self.epoch {
            let text = self.get(slot).and_then(Value::as_str).unwrap_or_default();
            let (epoch, lower) = &mut self.lower[slot];
            *epoch = self.epoch;
            lower.clear();
            if text.is_ascii() {
                // The same as `to_lowercase`, in the slot's own buffer.
                lower.push_str(text);
                lower.make_ascii_lowercase();
            } else {
                lower.push_str(&text.to_lowercase());
            }
        }
        &self.lower[slot].1
    }

    /// The group key numbered `number` ([`Slots::key`]), built once per
    /// event.
    pub(crate) fn shared_key(&mut self, number: u32) -> Option<GroupKey> {
        let at = number as usize;
        if let (epoch, k) = &self.keys[at]
            && *epoch == self.epoch
        {
            return k.clone();
        }
        let spec = &self.specs[at];
        let mut text = std::mem::take(&mut self.text);
        let k = self
            .write_key(&spec.names, &spec.slots, &mut text)
            .then(|| GroupKey::new(Arc::from(text.as_str())));
        self.text = text;
        self.keys[at] = (self.epoch, k.clone());
        k
    }

    /// `name=value name=value` for the key fields `names` read from
    /// `slots`; `None` when one is missing.
    #[cfg(test)]
    pub(crate) fn key(&mut self, names: &[String], slots: &[usize]) -> Option<String> {
        let mut s = String::new();
        self.write_key(names, slots, &mut s).then_some(s)
    }

    /// Writes the key `name=value name=value` of the fields `names`, read
    /// from `slots`, into `out` (emptied first); false when a key field is
    /// missing.
    fn write_key(&mut self, names: &[String], slots: &[usize], out: &mut String) -> bool {
        out.clear();
        for (i, (name, &slot)) in names.iter().zip(slots).enumerate() {
            let Some(v) = self.get(slot) else {
                return false;
            };
            if i > 0 {
                out.push(' ');
            }
            out.push_str(name);
            out.push('=');
            if !push_value_text(v, out) {
                return false;
            }
        }
        true
    }

    /// [`value_text`] of the field at `slot`: a string as it is, a number
    /// written into a buffer of the view rather than a new string.
    pub(crate) fn text_at(&mut self, slot: usize) -> Option<&str> {
        let v = self.get(slot)?;
        if let Value::String(s) = v {
            return Some(s);
        }
        self.number.clear();
        push_value_text(v, &mut self.number).then_some(self.number.as_str())
    }
}

/// Appends [`value_text`] of `v` to `out`, a number without making a
/// string of it first; false (and nothing appended) when it has none.
pub(crate) fn push_value_text(v: &Value, out: &mut String) -> bool {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Number(n) => push_number(n, out),
        v => match value_text(v) {
            Some(text) => out.push_str(&text),
            None => return false,
        },
    }
    true
}

/// Appends `n` as `n.to_string()` writes it.
fn push_number(n: &serde_json::Number, out: &mut String) {
    let (negative, mut rest) = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => (false, u),
        (None, Some(i)) => (true, i.unsigned_abs()),
        _ => {
            use std::fmt::Write as _;
            // A float: its own formatting (writing to a String cannot fail).
            let _ = write!(out, "{n}");
            return;
        }
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        out.push('-');
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The text of a field value used in keys; lists join with `,`. Borrows
/// strings.
pub(crate) fn value_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Array(items) => Some(Cow::Owned(
            items
                .iter()
                .filter_map(value_text)
                .collect::<Vec<_>>()
                .join(","),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rule::condition::compile_for_test as cond;

    /// Keys and distinct values write numbers as `to_string` does, without
    /// the string.
    #[test]
    fn numbers_are_written_as_to_string_writes_them() {
        let numbers: Vec<Value> = [
            Value::from(0),
            Value::from(7),
            Value::from(10),
            Value::from(65_535),
            Value::from(-1),
            Value::from(i64::MIN),
            Value::from(i64::MAX),
            Value::from(u64::MAX),
            Value::from(1.5),
            Value::from(-0.25),
            Value::from(1e300),
        ]
        .into();
        for n in &numbers {
            let mut out = String::from("k=");
            assert!(push_value_text(n, &mut out));
            assert_eq!(out, format!("k={n}"));
            assert_eq!(value_text(n).as_deref(), Some(&out[2..]));
        }
        let mut out = String::new();
        assert!(!push_value_text(&Value::Null, &mut out));
        assert!(out.is_empty());
    }

    /// The slot form answers exactly like the by-name form, with the cached
    /// lookups and addresses shared by every condition of one event.
    #[test]
    fn fast_conditions_agree_with_named_ones() {
        let events: Vec<Fields> = vec![
            serde_json::from_value(serde_json::json!({
                "source.ip": "10.1.2.3", "destination.port": 3389, "port_text": "22",
                "flags": ["DF", "SYN"], "ips": ["192.0.2.1", "10.9.9.9"], "ok": true,
                "event.action": "deny", "user.name": "Admin"
            }))
            .unwrap_or_default(),
            serde_json::from_value(serde_json::json!({
                "source.ip": "not an address", "destination.port": "80",
                "event.action": "allow", "n": 3232235777u64
            }))
            .unwrap_or_default(),
            Fields::new(),
        ];
        let table = [
            "{field: source.ip, cidr: [10.0.0.0/8]}",
            "{all: [{field: source.ip, cidr: 192.168.0.0/16}, {field: source.ip, exists: true}]}",
            // Only the second branch holds: the first must not hide it.
            "{any: [{field: source.ip, cidr: 192.168.0.0/16}, {field: source.ip, cidr: 10.1.0.0/16}]}",
            "{any: [{field: event.action, equals: allow}, {field: destination.port, in: [3389, 80]}]}",
            "{not: {field: source.ip, cidr: [10.0.0.0/8]}}",
            "{field: ips, cidr: 10.0.0.0/8}",
            "{field: n, cidr: 0.0.0.0/0}",
            "{field: port_text, equals: 22}",
            "{field: destination.port, gte: 100, lt: 4000}",
            "{field: flags, equals: SYN}",
            "{field: user.name, in: [admin, root], case_insensitive: true}",
            "{field: user.name, in: [admin, root]}",
            "{field: nope, exists: false}",
            "{all: [{field: ok, equals: true}, {not: {field: nope, equals: x}}]}",
        ];
        let mut slots = Slots::default();
        let compiled: Vec<(Condition, Fast)> = table
            .iter()
            .map(|y| {
                let c = cond(y);
                let f = Fast::new(&c, &mut slots);
                (c, f)
            })
            .collect();
        for ev in &events {
            // One view per event, as the engine does.
            let mut view = FieldView::new(ev, &slots);
            for ((c, f), yaml) in compiled.iter().zip(table) {
                assert_eq!(f.eval(&mut view), c.eval(ev), "{yaml} on {ev:?}");
            }
        }
    }

    /// After four billion views the epoch starts again at 1: what was
    /// cached under epoch 1 must not pass for the new event's.
    #[test]
    fn a_wrapped_epoch_does_not_read_old_entries() {
        let first: Fields = serde_json::from_value(
            serde_json::json!({"a": 1, "user.name": "Alice", "source.ip": "10.0.0.1"}),
        )
        .unwrap_or_default();
        let second: Fields = serde_json::from_value(
            serde_json::json!({"user.name": "Bob", "source.ip": "192.0.2.1"}),
        )
        .unwrap_or_default();
        let mut slots = Slots::default();
        let user = slots.id("user.name");
        let ip = slots.id("source.ip");
        let spec = slots.key(&["user.name".to_string()], &["user.name".to_string()]);
        let mut view = FieldView::new(&first, &slots);
        assert_eq!(view.epoch, 1);
        assert_eq!(view.lower(user), "alice");
        assert!(view.ip(ip).is_some_and(|a| a.is_ipv4()));
        assert!(view.shared_key(spec).is_some());
        let mut buffers = view.into_buffers();
        buffers.epoch = u32::MAX;
        let mut view = FieldView::with_buffers(&second, &slots, buffers);
        assert_eq!(view.epoch, 1);
        assert_eq!(view.get(user), Some(&Value::from("Bob")));
        assert_eq!(view.lower(user), "bob");
        assert_eq!(view.ip(ip), "192.0.2.1".parse().ok());
        assert_eq!(
            view.shared_key(spec).map(|k| k.as_str().to_string()),
            Some("user.name=Bob".to_string())
        );
    }

    #[test]
    fn keys_match_the_engine_format() {
        let ev: Fields = serde_json::from_value(serde_json::json!({
            "source.ip": "203.0.113.7", "destination.port": 22, "flags": ["DF", "SYN"]
        }))
        .unwrap_or_default();
        let mut slots = Slots::default();
        let names = vec![
            "source.ip".to_string(),
            "destination.port".to_string(),
            "flags".to_string(),
        ];
        let ids = slots.ids(&names);
        let missing = slots.ids(&["nope".to_string()]);
        let mut view = FieldView::new(&ev, &slots);
        assert_eq!(
            view.key(&names, &ids).as_deref(),
            Some("source.ip=203.0.113.7 destination.port=22 flags=DF,SYN")
        );
        assert_eq!(view.key(&names[..1], &missing), None);
        assert_eq!(view.key(&[], &[]).as_deref(), Some(""));
    }
}
