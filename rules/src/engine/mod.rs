//! The detection engine: events in, detections out.
//!
//! The engine holds only the immutable rules; the caller owns the
//! [`EngineState`] and passes it to every call. That split is what lets the
//! collector commit the state together with its journal cursor (after a crash
//! the same events give the same detections) and snapshot it for backups. The
//! engine never reads a clock: time is the events' time, so a replay gives the
//! same answer as the live run.
//!
//! **Order.** Stateful rules see events in (time, id) order: with an allowed
//! lateness `L`, an event waits in the state's reorder buffer until an event
//! at least `L` newer has been seen ([`Engine::flush`] releases the rest at
//! the end of a replay). Input shuffled by less than `L` therefore gives the
//! same detections. An event older than the newest minus `L` is processed at
//! once and counted in [`EngineStats::late_events`].
//!
//! **Bounds.** Groups per rule, groups in total and the reorder buffer are
//! bounded by [`EngineOptions`]; at a bound the least recently touched group
//! is evicted and counted in [`EngineStats::evicted`].
//!
//! **Speed.** Rules are indexed by one or two values their condition
//! requires (`index.rs`: `event.action: deny`, `user.name: [admin, root]`,
//! ...), so an event is only tested against the rules filed under its own
//! values and the rules without such a requirement. Conditions and key
//! fields are resolved to field slots when the engine is built (`view.rs`),
//! so each field of an event is looked up once however many rules test it.
//! A rule's state is found by the rule's position (the state is kept in rule
//! order, see [`RuleStates`]), and a group that exists is touched without
//! allocating.

mod index;
mod state;
#[cfg(test)]
mod tests;
mod view;

use crate::Fields;
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::event::Event;
use crate::rule::template::Template;
use crate::rule::{RuleKind, RuleSet, Severity};
use index::RuleIndex;
use state::PairScratch;
pub use state::{
    DistinctSet, ENGINE_STATE_FORMAT, ENGINE_STATE_OLDEST_FORMAT, EngineState, EngineStats, Group,
    GroupData, GroupKey, Groups, KeyHash, PendingEvent, Repeat, RuleState, RuleStates,
    StateFormatError, Suppression, Usual,
};
use view::{Fast, FieldView, Slots};

/// What the engine raises; the collector turns it into a stored alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// The rule that fired.
    pub rule_id: Arc<str>,
    /// Its title at the time.
    pub rule_title: Arc<str>,
    /// Its version at the time.
    pub rule_version: u32,
    /// Its severity.
    pub severity: Severity,
    /// Its tags (ATT&CK ids).
    pub tags: Arc<[String]>,
    /// The grouping key of stateful rules (`source.ip=…`); `""` for
    /// single-event rules.
    pub group_key: Arc<str>,
    /// Event time of the event that completed the detection.
    pub timestamp_ms: i64,
    /// [`Event::id`] of the events behind the detection, oldest first, at
    /// most [`EngineOptions::max_evidence`] (the newest are kept).
    pub evidence: Evidence,
    /// One sentence for people, from the rule's `summary`.
    pub summary: String,
    /// With `suppress:`, how many detections for the same key were
    /// suppressed in the period before this one, when the detection that
    /// opened that period was not tagged (see [`Engine::tag_window`]; the
    /// repeats of a tagged one were reported as they came).
    #[serde(default)]
    pub suppressed: u64,
    /// With `suppress:`, the window this detection opened: tag it
    /// ([`Engine::tag_window`]) to have its repeats reported as they come.
    #[serde(skip)]
    pub window: Option<SuppressionWindow>,
}

/// The [`Event::id`]s behind a detection, oldest first. Most detections
/// have one event behind them: it is kept in place, so that raising such a
/// detection allocates nothing for it. Reads as a slice of ids; written and
/// read (serde) as a list, like a `Vec<u64>`, and equal to another with the
/// same ids however each keeps them. Shown (`{:?}`) as the list too.
#[derive(Clone)]
pub struct Evidence(EvidenceRepr);

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Debug, Clone)]
enum EvidenceRepr {
    One(u64),
    Many(Vec<u64>),
}

impl Evidence {
    /// One event.
    pub fn one(id: u64) -> Evidence {
        Evidence(EvidenceRepr::One(id))
    }

    /// Adds `id` after the others.
    fn push(&mut self, id: u64) {
        match &mut self.0 {
            EvidenceRepr::One(first) => self.0 = EvidenceRepr::Many(vec![*first, id]),
            EvidenceRepr::Many(ids) => ids.push(id),
        }
    }

    /// Keeps the newest `max` ids.
    fn keep_last(&mut self, max: usize) {
        if let EvidenceRepr::Many(ids) = &mut self.0
            && ids.len() > max
        {
            ids.drain(..ids.len() - max);
        }
    }
}

/// No event (allocates nothing).
impl Default for Evidence {
    fn default() -> Evidence {
        Evidence(EvidenceRepr::Many(Vec::new()))
    }
}

impl From<Vec<u64>> for Evidence {
    fn from(ids: Vec<u64>) -> Evidence {
        match ids[..] {
            [id] => Evidence::one(id),
            _ => Evidence(EvidenceRepr::Many(ids)),
        }
    }
}

impl std::ops::Deref for Evidence {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match &self.0 {
            EvidenceRepr::One(id) => std::slice::from_ref(id),
            EvidenceRepr::Many(ids) => ids,
        }
    }
}

impl<'a> IntoIterator for &'a Evidence {
    type Item = &'a u64;
    type IntoIter = std::slice::Iter<'a, u64>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Evidence) -> bool {
        **self == **other
    }
}

impl Eq for Evidence {}

impl PartialEq<[u64]> for Evidence {
    fn eq(&self, other: &[u64]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<[u64; N]> for Evidence {
    fn eq(&self, other: &[u64; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Vec<u64>> for Evidence {
    fn eq(&self, other: &Vec<u64>) -> bool {
        **self == other[..]
    }
}

impl serde::Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u64>::deserialize(deserializer).map(Evidence::from)
    }
}

/// A suppression window a detection opened (see [`Engine::tag_window`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionWindow {
    /// The rule's place in the engine's rule set, and its id.
    rule: (usize, Arc<str>),
    /// The suppression key.
    key: String,
}

/// Bounds and the allowed lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// How far (ms) an event may arrive behind the newest one and still be
    /// processed in time order. 0 processes every event at once.
    pub allowed_lateness_ms: i64,
    /// Open groups per rule; the least recently touched is evicted beyond.
    pub max_groups_per_rule: usize,
    /// Open groups over all rules.
    pub max_total_groups: usize,
    /// Events held in the reorder buffer; the oldest is released early beyond.
    pub max_pending: usize,
    /// Event ids kept as evidence per detection.
    pub max_evidence: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            allowed_lateness_ms: 0,
            max_groups_per_rule: 100_000,
            max_total_groups: 1_000_000,
            max_pending: 10_000,
            max_evidence: 100,
        }
    }
}

/// Runs a rule set over events.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
    options: EngineOptions,
    fingerprint: u64,
    /// Enabled rules by the values they require (the prefilter).
    index: RuleIndex,
    /// Enabled silence rules (checked on every event).
    silences: Vec<usize>,
    /// Per rule, its conditions and key fields resolved to field slots.
    compiled: Vec<Compiled>,
    /// Per rule, its condition and the shared tests it needs, one cache
    /// line each: most candidates are decided from the tests alone (see
    /// [`Shared`]), the others by the condition next to them.
    shared: Vec<Shared>,
    /// The field name of every slot.
    slots: Slots,
    /// The group key of single-event rules' detections.
    no_key: Arc<str>,
    /// Two-step sequences that start alike: each family keeps its first
    /// step's groups once, in the state after the rules' (see
    /// [`GroupData::Start`]).
    families: Vec<Family>,
}

/// Enabled two-step sequences whose rule condition, first step and first
/// step's key are the same. Each of them has a group for a key where the
/// first step happened and it is not done with it; sharing those groups, a
/// first step costs one group update however many sequences start with it.
#[derive(Debug, Clone)]
struct Family {
    /// Its place in the state (after the rules').
    at: usize,
    /// The sequences, by rule position, in rule order.
    members: Vec<usize>,
    /// The longest `within` of them: a first step older is of no use.
    within_ms: i64,
}

/// A rule's (or a sequence step's) condition, with the tests of it (at
/// most [`Shared::MAX`] of the `all:` at its top) that other rules make
/// too, by [`Slots::settle_tests`] number: when one of them already failed
/// for the event, the condition fails; when the condition is only these and
/// all passed, it holds. Aligned to a cache line: a candidate rule's first
/// read brings all of it.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Shared {
    tests: [u32; Shared::MAX],
    len: u8,
    /// The condition is these tests and nothing else.
    only: bool,
    /// A sequence step's group key ([`Slots::key`]), in the same
    /// line as its condition; 0, and not read, for a rule's condition.
    key: u32,
    condition: Fast,
}

// One cache line, not two.
const _: () = assert!(std::mem::size_of::<Shared>() == 64);

impl Shared {
    const MAX: usize = 6;

    fn of(condition: Fast, slots: &Slots) -> Shared {
        let mut shared = Shared::unsettled(condition);
        shared.settle(slots);
        shared
    }

    /// `condition` before the tests are numbered: nothing is decided
    /// without evaluating it, until [`Shared::settle`].
    fn unsettled(condition: Fast) -> Shared {
        Shared {
            tests: [0; Shared::MAX],
            len: 0,
            only: false,
            key: 0,
            condition,
        }
    }

    /// Takes the shared tests' numbers, once [`Slots::settle_tests`] gave
    /// them.
    fn settle(&mut self, slots: &Slots) {
        let Shared {
            tests,
            len,
            only,
            condition,
            ..
        } = self;
        *len = 0;
        *only = true;
        for memo in condition.top_memos(slots) {
            match memo {
                Some(memo) if usize::from(*len) < Shared::MAX => {
                    tests[usize::from(*len)] = memo;
                    *len += 1;
                }
                _ => *only = false,
            }
        }
    }

    /// Whether the condition holds for the event of `view`: decided by the
    /// shared tests when they tell, else evaluated.
    #[inline]
    fn holds(&self, view: &mut FieldView<'_>) -> bool {
        match self.decide(view) {
            Some(answer) => answer,
            None => self.condition.eval(view),
        }
    }

    /// The condition's answer when the tests already made tell it.
    #[inline]
    fn decide(&self, view: &FieldView<'_>) -> Option<bool> {
        let mut all = self.only;
        for &t in &self.tests[..usize::from(self.len)] {
            match view.made(t) {
                Some(false) => return Some(false),
                Some(true) => {}
                None => all = false,
            }
        }
        all.then_some(true)
    }
}

/// One rule with its field names resolved to [`Slots`] (its condition is
/// in [`Engine::shared`]).
///
/// Two cache lines, in this order: the first holds what every matching
/// event reads (its kind) and what a detection reads first, the second the
/// rest of what a detection carries.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Compiled {
    kind: CompiledKind,
    /// What its detections carry, shared by all of them or copied, next to
    /// its kind: a detection need not read the rule itself.
    id: Arc<str>,
    version: u32,
    severity: Severity,
    /// It has `suppress:` (read from the rule when it does).
    suppresses: bool,
    title: Arc<str>,
    tags: Arc<[String]>,
    summary: Template,
}

// The layout above, where pointers take 8 bytes.
#[cfg(target_pointer_width = "64")]
const _: () =
    assert!(std::mem::size_of::<Compiled>() == 128 && std::mem::offset_of!(Compiled, title) == 64);

/// What a rule's kind needs for each event it matches, next to its
/// condition: a matching event need not read the rule itself (a thousand
/// rules' are far apart in memory) unless it raises a detection.
#[derive(Debug, Clone)]
enum CompiledKind {
    Single,
    Threshold(CompiledThreshold),
    Sequence(CompiledSequence),
    /// The key of `by` ([`Slots::key`]).
    Silence(u32),
}

#[derive(Debug, Clone)]
struct CompiledThreshold {
    /// The key of `group_by` ([`Slots::key`]).
    by: u32,
    /// The slot of `distinct`.
    distinct: Option<u32>,
    count: u64,
    window_ms: i64,
}

#[derive(Debug, Clone)]
struct CompiledSequence {
    /// Per step: its condition, with the tests other rules make too (many
    /// sequences start with the same step: once the first has made its
    /// tests, the others decide it from their answers without reading
    /// their own field tests), and its key (its `by`, shown under the
    /// first step's names), all in one cache line.
    steps: Vec<Shared>,
    within_ms: i64,
    /// Its family ([`Engine::families`]), when it has two steps.
    family: Option<u32>,
}

impl Engine {
    /// An engine over `rules` with default options.
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine::with_options(rules, EngineOptions::default())
    }

    /// An engine over `rules`.
    pub fn with_options(rules: Arc<RuleSet>, options: EngineOptions) -> Engine {
        let mut fingerprint: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut requirements = Vec::new();
        let mut silences = Vec::new();
        for (i, r) in rules.rules().iter().enumerate() {
            for b in r.id.bytes() {
                fingerprint = (fingerprint ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            fingerprint =
                (fingerprint ^ r.fingerprint ^ u64::from(r.enabled)).wrapping_mul(0x0100_0000_01b3);
            if !r.enabled {
                continue;
            }
            let reqs = index::requirements(&r.condition);
            let alternatives = match &r.kind {
                // A sequence's events match one of its steps.
                RuleKind::Sequence(s) => s
                    .steps
                    .iter()
                    .map(|st| {
                        let mut step = reqs.clone();
                        step.extend(index::requirements(&st.condition));
                        step
                    })
                    .collect(),
                RuleKind::Silence(_) => {
                    silences.push(i);
                    vec![reqs]
                }
                _ => vec![reqs],
            };
            requirements.push((i, alternatives));
        }
        let mut slots = Slots::default();
        let index = RuleIndex::new(&requirements, &mut slots);
        // Each rule's condition, then its steps, so that a rule's field
        // tests lie side by side in the slots.
        let (conditions, mut compiled): (Vec<Fast>, Vec<Compiled>) = rules
            .rules()
            .iter()
            .map(|r| {
                let condition = Fast::new(&r.condition, &mut slots);
                let kind = match &r.kind {
                    RuleKind::Single => CompiledKind::Single,
                    RuleKind::Threshold(t) => CompiledKind::Threshold(CompiledThreshold {
                        by: slots.key(&t.group_by, &t.group_by),
                        distinct: t.distinct.as_deref().map(|d| slots.id(d) as u32),
                        count: t.count,
                        window_ms: t.window_ms,
                    }),
                    RuleKind::Sequence(seq) => CompiledKind::Sequence(CompiledSequence {
                        steps: seq
                            .steps
                            .iter()
                            .map(|st| {
                                let condition = Fast::new(&st.condition, &mut slots);
                                let mut step = Shared::unsettled(condition);
                                step.key = slots.key(&seq.steps[0].by, &st.by);
                                step
                            })
                            .collect(),
                        within_ms: seq.within_ms,
                        family: None,
                    }),
                    RuleKind::Silence(si) => CompiledKind::Silence(slots.key(&si.by, &si.by)),
                };
                let compiled = Compiled {
                    id: Arc::from(r.id.as_str()),
                    title: Arc::from(r.title.as_str()),
                    tags: Arc::from(r.tags.as_slice()),
                    summary: r.summary.clone(),
                    version: r.version,
                    severity: r.severity,
                    suppresses: r.suppress.is_some(),
                    kind,
                };
                (condition, compiled)
            })
            .unzip();
        slots.settle_tests();
        for c in &mut compiled {
            if let CompiledKind::Sequence(s) = &mut c.kind {
                s.steps.iter_mut().for_each(|step| step.settle(&slots));
            }
        }
        let shared = conditions
            .into_iter()
            .map(|c| Shared::of(c, &slots))
            .collect();
        let families = families(&rules, &mut compiled);
        Engine {
            no_key: Arc::from(""),
            rules,
            options,
            fingerprint,
            index,
            silences,
            compiled,
            shared,
            slots,
            families,
        }
    }

    /// The rules it runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Its options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The names of every event field this engine reads: those its rules'
    /// conditions test, group and count by, and name in their summaries
    /// and suppression keys. Its detections of events that hold only these
    /// fields are those of the whole events (see
    /// [`crate::Decoders::projection`]).
    pub fn fields_read(&self) -> std::collections::BTreeSet<&str> {
        let mut names: std::collections::BTreeSet<&str> =
            self.slots.names().iter().map(String::as_str).collect();
        for rule in self.rules.rules() {
            names.extend(rule.summary.fields());
            if let Some(by) = rule.suppress.as_ref().and_then(|s| s.by.as_ref()) {
                names.extend(by.iter().map(String::as_str));
            }
        }
        names
    }

    /// Makes `state` fit this rule set: state of removed or changed rules
    /// (different fingerprint) is dropped, unchanged rules keep theirs. Runs
    /// by itself on the first event after a reload.
    pub fn reconcile(&self, state: &mut EngineState) {
        if state.rules_fingerprint == self.fingerprint && *state.rules.aligned == self.fingerprint {
            return;
        }
        // Also after loading a snapshot of this same rule set: the states
        // are then in id order and must be put in rule order.
        // The first steps families share are told apart from rules by
        // whom they are shared by, not by their ids.
        let (mut shares, had): (Vec<_>, Vec<_>) = state
            .rules
            .take()
            .into_iter()
            .partition(|(_, rs)| !rs.shared_by.is_empty());
        let mut had: HashMap<String, RuleState> = had.into_iter().collect();
        let mut entries: Vec<(String, RuleState)> = self
            .rules
            .rules()
            .iter()
            .map(|r| {
                let rs = match had.remove(&r.id) {
                    Some(rs) if rs.fingerprint == r.fingerprint => rs,
                    _ => RuleState {
                        fingerprint: r.fingerprint,
                        ..RuleState::default()
                    },
                };
                (r.id.clone(), rs)
            })
            .collect();
        for f in &self.families {
            let share = self.share(f, &mut shares, &mut entries);
            entries.push(share);
        }
        state.total_groups = entries.iter().map(|(_, rs)| rs.groups.len() as u64).sum();
        state.rules.set_aligned(entries, self.fingerprint);
        state.rules_fingerprint = self.fingerprint;
    }

    /// The state of family `f`'s first steps, from `shares` (those of the
    /// state being reconciled) when one of its sequences, unchanged, shared
    /// one there: then a sequence new to it is done with every first step
    /// it holds (it had not started from them). Otherwise made from the
    /// sequences' own groups (a state of format 4 or before kept each
    /// sequence's first step in its own groups): the newest first step of
    /// each key, which the sequences that have not started from it are
    /// done with. The sequences' own groups are left empty.
    fn share(
        &self,
        f: &Family,
        shares: &mut Vec<(String, RuleState)>,
        entries: &mut [(String, RuleState)],
    ) -> (String, RuleState) {
        let rules = self.rules.rules();
        let members: Vec<(String, u64)> = f
            .members
            .iter()
            .map(|&i| (rules[i].id.clone(), rules[i].fingerprint))
            .collect();
        let own: Vec<Groups> = f
            .members
            .iter()
            .map(|&i| {
                let rs = &mut entries[i].1;
                rs.order.clear();
                *rs.oldest = None;
                std::mem::take(&mut rs.groups)
            })
            .collect();
        // Saved in one map with the rules' states: no rule id has a space.
        let label = format!(
            "first step of {} (shared by {} sequences)",
            members[0].0,
            members.len()
        );
        let found = shares
            .iter()
            .position(|(_, rs)| rs.shared_by.iter().any(|m| members.contains(m)));
        let mut rs = match found {
            Some(p) => {
                let mut rs = shares.swap_remove(p).1;
                let new: Vec<&String> = members
                    .iter()
                    .filter(|m| !rs.shared_by.contains(m))
                    .map(|(id, _)| id)
                    .collect();
                for g in rs.groups.values_mut() {
                    if let GroupData::Start { done, .. } = &mut g.data {
                        for id in &new {
                            if !done.contains(id) {
                                done.push((*id).clone());
                            }
                        }
                    }
                }
                rs
            }
            None => {
                // Each sequence's first step by key, as it kept it.
                // (start time, first event id) and the group, by key.
                type Started<'g> = HashMap<&'g GroupKey, ((i64, u64), &'g Group)>;
                let started: Vec<Started<'_>> = own
                    .iter()
                    .map(|groups| {
                        groups
                            .iter()
                            .filter_map(|(k, g)| match &g.data {
                                GroupData::Sequence {
                                    next: 1,
                                    start_ms,
                                    evidence,
                                } => Some((k, ((*start_ms, *evidence.first()?), g))),
                                _ => None,
                            })
                            .collect()
                    })
                    .collect();
                let mut newest: Started<'_> = HashMap::new();
                for (&k, &(start, g)) in started.iter().flatten() {
                    let e = newest.entry(k).or_insert((start, g));
                    if start > e.0 {
                        *e = (start, g);
                    }
                }
                let mut rs = RuleState::default();
                for (k, ((start_ms, first), g)) in newest {
                    let done = members
                        .iter()
                        .zip(&started)
                        .filter(|(_, started)| {
                            started.get(k).map(|(start, _)| *start) != Some((start_ms, first))
                        })
                        .map(|((id, _), _)| id.clone())
                        .collect();
                    let data = GroupData::Start {
                        start_ms,
                        first,
                        done,
                    };
                    rs.order.push_back((g.touched, k.clone()));
                    rs.groups.insert(
                        k.clone(),
                        Group {
                            touched: g.touched,
                            last_ms: g.last_ms,
                            data,
                        },
                    );
                }
                rs.order.make_contiguous().sort_unstable_by_key(|(t, _)| *t);
                rs
            }
        };
        rs.shared_by = members;
        (label, rs)
    }

    /// Feeds one event; returns the detections it completes (with a
    /// lateness, possibly those of earlier-buffered events). Deterministic:
    /// the same state and event give the same result.
    pub fn process(&self, state: &mut EngineState, event: &Event) -> Vec<Detection> {
        let mut out = Vec::new();
        self.feed(state, event, &mut out, &mut |_, _| {});
        out
    }

    /// As [`Engine::process`], handing each detection to `each` with the
    /// event that raised it: `event`, or with a lateness an event held back
    /// earlier (whose fields the caller may no longer have).
    pub fn process_with(
        &self,
        state: &mut EngineState,
        event: &Event,
        mut each: impl FnMut(Detection, &Event),
    ) {
        let mut out = Vec::new();
        self.feed(state, event, &mut out, &mut |ev, out| {
            out.drain(..).for_each(|d| each(d, ev));
        });
    }

    /// Releases every buffered event (end of a replay or test).
    pub fn flush(&self, state: &mut EngineState) -> Vec<Detection> {
        let mut out = Vec::new();
        self.flush_with(state, |d, _| out.push(d));
        out
    }

    /// As [`Engine::flush`], handing each detection to `each` with the
    /// event that raised it.
    pub fn flush_with(&self, state: &mut EngineState, mut each: impl FnMut(Detection, &Event)) {
        let mut out = Vec::new();
        self.reconcile(state);
        self.release(state, |_| true, &mut out, &mut |ev, out| {
            out.drain(..).for_each(|d| each(d, ev));
        });
    }

    /// [`Engine::process`]: the detections of every event evaluated go to
    /// `out`, and then `raised` is called with that event.
    fn feed(
        &self,
        state: &mut EngineState,
        event: &Event,
        out: &mut Vec<Detection>,
        raised: &mut dyn FnMut(&Event, &mut Vec<Detection>),
    ) {
        self.reconcile(state);
        let lateness = self.options.allowed_lateness_ms.max(0);
        if event.timestamp_ms < state.watermark_ms.saturating_sub(lateness) {
            state.stats.late_events += 1;
            self.handle(state, event, out);
            raised(event, out);
            return;
        }
        state.watermark_ms = state.watermark_ms.max(event.timestamp_ms);
        if lateness == 0 && state.pending.is_empty() {
            self.handle(state, event, out);
            raised(event, out);
            return;
        }
        let at = state.pending.partition_point(|p| {
            (p.event.timestamp_ms, p.event.id) <= (event.timestamp_ms, event.id)
        });
        state.pending.insert(at, PendingEvent::new(event.clone()));
        let upto = state.watermark_ms.saturating_sub(lateness);
        self.release(state, |p| p.event.timestamp_ms <= upto, out, raised);
        while state.pending.len() > self.options.max_pending.max(1) {
            state.stats.pending_overflow += 1;
            let mut first = true;
            self.release(state, |_| std::mem::take(&mut first), out, raised);
        }
    }

    fn release(
        &self,
        state: &mut EngineState,
        mut ready: impl FnMut(&PendingEvent) -> bool,
        out: &mut Vec<Detection>,
        raised: &mut dyn FnMut(&Event, &mut Vec<Detection>),
    ) {
        while state.pending.front().is_some_and(&mut ready) {
            let Some(p) = state.pending.pop_front() else {
                break;
            };
            self.handle(state, &p.event, out);
            raised(&p.event, out);
        }
    }

    /// Runs every candidate rule over one event, in rule order.
    fn handle(&self, state: &mut EngineState, ev: &Event, out: &mut Vec<Detection>) {
        let rules = self.rules.rules();
        let buffers = std::mem::take(&mut state.view_buffers.0);
        let mut view = FieldView::with_buffers(&ev.fields, &self.slots, buffers);
        let mut candidates = std::mem::take(&mut state.candidates.0);
        self.index
            .candidates(&mut view, &mut state.index_scratch, &mut candidates);
        for &i in &candidates {
            let i = i as usize;
            // A thousand rules' conditions are far apart in memory; the
            // tests they share are decided once per event and read here
            // side by side.
            let shared = &self.shared[i];
            match shared.decide(&view) {
                Some(false) => continue,
                Some(true) => {}
                None if !shared.condition.eval(&mut view) => continue,
                None => {}
            }
            match &self.compiled[i].kind {
                CompiledKind::Threshold(t) => {
                    self.threshold(state, i, t, ev, &mut view, out);
                }
                CompiledKind::Sequence(s) => match s.family {
                    Some(family) => self.pair(state, i, s, family, ev, &mut view, out),
                    None => self.sequence(state, i, s, ev, &mut view, out),
                },
                CompiledKind::Silence(by) => {
                    let RuleKind::Silence(s) = &rules[i].kind else {
                        continue;
                    };
                    let Some(key) = view.shared_key(*by) else {
                        continue;
                    };
                    if let Some(learn) = &s.learn {
                        self.watch_usual(state, i, s, learn, &key, ev, out);
                        continue;
                    }
                    let Some(g) = self.touch_group(state, i, &key, ev.timestamp_ms, None, || {
                        GroupData::Seen {
                            last_ms: ev.timestamp_ms,
                            last_id: ev.id,
                            key: key_pairs(&s.by, &ev.fields).unwrap_or_default(),
                        }
                    }) else {
                        continue;
                    };
                    let mut resumed = None;
                    if let GroupData::Seen {
                        last_ms, last_id, ..
                    } = &mut g.data
                        && ev.timestamp_ms >= *last_ms
                    {
                        // The source itself shows the gap (no other event
                        // came in between to reveal it).
                        if ev.timestamp_ms - *last_ms > s.after_ms {
                            resumed = Some((*last_ms, *last_id));
                        }
                        *last_ms = ev.timestamp_ms;
                        *last_id = ev.id;
                    }
                    if let Some((last_ms, last_id)) = resumed {
                        let pairs = key_pairs(&s.by, &ev.fields).unwrap_or_default();
                        let fields = silence_fields(&pairs, last_ms, s.after_ms);
                        let at = last_ms.saturating_add(s.after_ms);
                        let fields = Facts::of(&fields);
                        let key = key.text().clone();
                        self.emit(state, i, key, at, Evidence::one(last_id), fields, out);
                    }
                }
                CompiledKind::Single => {
                    self.emit(
                        state,
                        i,
                        self.no_key.clone(),
                        ev.timestamp_ms,
                        Evidence::one(ev.id),
                        Facts::of(&ev.fields),
                        out,
                    );
                }
            }
        }
        state.candidates.0 = candidates;
        state.view_buffers.0 = view.into_buffers();
        if !state.pairs.starts.is_empty() || !state.pairs.done.is_empty() {
            self.start_pairs(state, ev);
        }
        for &i in &self.silences {
            self.check_silence(state, i, ev.timestamp_ms, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn threshold(
        &self,
        state: &mut EngineState,
        at: usize,
        t: &CompiledThreshold,
        ev: &Event,
        view: &mut FieldView<'_>,
        out: &mut Vec<Detection>,
    ) {
        let Some(key) = view.shared_key(t.by) else {
            return;
        };
        let since = ev.timestamp_ms.saturating_sub(t.window_ms);
        let mut fired: Option<(u64, Vec<u64>)> = None;
        match t.distinct {
            None => {
                let now = ev.timestamp_ms;
                let Some(g) = self.touch_group(state, at, &key, now, Some(t.window_ms), || {
                    GroupData::Count(VecDeque::new())
                }) else {
                    return;
                };
                if let GroupData::Count(q) = &mut g.data {
                    while q.front().is_some_and(|(ts, _)| *ts <= since) {
                        q.pop_front();
                    }
                    q.push_back((ev.timestamp_ms, ev.id));
                    if q.len() as u64 >= t.count {
                        fired = Some((q.len() as u64, q.iter().map(|(_, id)| *id).collect()));
                    }
                }
            }
            Some(slot) => {
                let Some(value) = view.text_at(slot as usize) else {
                    return;
                };
                let now = ev.timestamp_ms;
                let Some(g) = self.touch_group(state, at, &key, now, Some(t.window_ms), || {
                    GroupData::Distinct(DistinctSet::default())
                }) else {
                    return;
                };
                if let GroupData::Distinct(m) = &mut g.data {
                    m.see(Cow::Borrowed(value), (ev.timestamp_ms, ev.id));
                    if m.len() as u64 >= t.count {
                        m.retain(|(ts, _)| *ts > since);
                    }
                    if m.len() as u64 >= t.count {
                        let mut ev_ids: Vec<(i64, u64)> = m.iter().map(|(_, seen)| *seen).collect();
                        ev_ids.sort_unstable();
                        fired = Some((
                            m.len() as u64,
                            ev_ids.into_iter().map(|(_, id)| id).collect(),
                        ));
                    }
                }
            }
        }
        if let Some((count, evidence)) = fired {
            state.remove_group(at, &key);
            let count = Value::from(count);
            let fields = Facts {
                fields: &ev.fields,
                extra: Some(("threshold.count", &count)),
            };
            self.emit(
                state,
                at,
                key.text().clone(),
                ev.timestamp_ms,
                Evidence::from(evidence),
                fields,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &self,
        state: &mut EngineState,
        at: usize,
        s: &CompiledSequence,
        ev: &Event,
        view: &mut FieldView<'_>,
        out: &mut Vec<Detection>,
    ) {
        let last = s.steps.len() - 1;
        for (i, step) in s.steps.iter().enumerate().rev() {
            if !step.holds(view) {
                continue;
            }
            // Steps may name the key differently; the group is the values
            // under the first step's names.
            let Some(key) = view.shared_key(step.key) else {
                continue;
            };
            let current = state
                .rules
                .at(at)
                .and_then(|(_, rs)| rs.groups.get(&key))
                .and_then(|g| match &g.data {
                    GroupData::Sequence { next, start_ms, .. } => Some((*next, *start_ms)),
                    _ => None,
                });
            let live = current.filter(|(_, start)| ev.timestamp_ms - start <= s.within_ms);
            match live {
                Some((next, _)) if next == i && i > 0 => {
                    let now = ev.timestamp_ms;
                    let within = Some(s.within_ms);
                    let Some(g) = self.touch_group(state, at, &key, now, within, || {
                        GroupData::Count(VecDeque::new())
                    }) else {
                        return;
                    };
                    let mut done = None;
                    if let GroupData::Sequence { next, evidence, .. } = &mut g.data {
                        evidence.push(ev.id);
                        *next += 1;
                        if i == last {
                            done = Some(std::mem::take(evidence));
                        }
                    }
                    if let Some(evidence) = done {
                        state.remove_group(at, &key);
                        let fields = Facts::of(&ev.fields);
                        let key = key.text().clone();
                        self.emit(state, at, key, ev.timestamp_ms, evidence, fields, out);
                    }
                    return;
                }
                // A newer first step replaces one that has not advanced
                // (in place: the same as removing it and starting anew).
                None | Some((1, _)) if i == 0 => {
                    let (now, within) = (ev.timestamp_ms, Some(s.within_ms));
                    // The first step's evidence is one id, kept in
                    // place: starting a group allocates nothing for it.
                    let fresh = || GroupData::Sequence {
                        next: 1,
                        start_ms: now,
                        evidence: Evidence::one(ev.id),
                    };
                    if let Some(g) = self.touch_group(state, at, &key, now, within, fresh) {
                        g.last_ms = now;
                        // A group just made is fresh already; an older one
                        // starts anew.
                        g.data = fresh();
                    }
                    return;
                }
                None if current.is_some() => state.remove_group(at, &key),
                _ => {}
            }
        }
    }

    /// A two-step sequence of `family`: its second step completes it from
    /// the family's first step, unless the sequence is done with that;
    /// its first step is noted, to start the family anew once every rule
    /// has seen the event ([`Engine::start_pairs`]): the other sequences
    /// must still find the first step the event replaces.
    #[allow(clippy::too_many_arguments)]
    fn pair(
        &self,
        state: &mut EngineState,
        at: usize,
        s: &CompiledSequence,
        family: u32,
        ev: &Event,
        view: &mut FieldView<'_>,
        out: &mut Vec<Detection>,
    ) {
        let f = &self.families[family as usize];
        let (first_step, second) = (&s.steps[0], &s.steps[1]);
        if second.holds(view)
            && let Some(key) = view.shared_key(second.key)
        {
            let id = &self.compiled[at].id;
            let mut fired = None;
            let mut all_done = false;
            if let Some(rs) = state.rules.at_mut(f.at)
                && let Some(g) = rs.groups.get_mut(&key)
                && let GroupData::Start {
                    start_ms,
                    first,
                    done,
                } = &mut g.data
                && !done.iter().any(|d| **d == **id)
            {
                // Completed or too old, the sequence has no group here
                // any more.
                if ev.timestamp_ms - *start_ms <= s.within_ms {
                    fired = Some(*first);
                }
                done.push(id.to_string());
                all_done = done.len() >= f.members.len()
                    && f.members
                        .iter()
                        .all(|&m| done.iter().any(|d| **d == *self.compiled[m].id));
            }
            if all_done {
                state.remove_group(f.at, &key);
            }
            if let Some(first) = fired {
                // Completed by this event, it does not start from it.
                state.pairs.done.push((family, at as u32));
                let evidence = Evidence::from(vec![first, ev.id]);
                let fields = Facts::of(&ev.fields);
                let key = key.text().clone();
                self.emit(state, at, key, ev.timestamp_ms, evidence, fields, out);
                return;
            }
        }
        if state.pairs.starts.iter().any(|(fam, _)| *fam == family) {
            return;
        }
        if first_step.holds(view)
            && let Some(key) = view.shared_key(first_step.key)
        {
            state.pairs.starts.push((family, key));
        }
    }

    /// The first steps [`Engine::pair`] noted for `ev`: each replaces its
    /// family's group for the key, for every sequence but those `ev`
    /// completed.
    fn start_pairs(&self, state: &mut EngineState, ev: &Event) {
        let PairScratch {
            mut starts,
            mut done,
        } = std::mem::take(&mut *state.pairs);
        for (family, key) in &starts {
            let f = &self.families[*family as usize];
            let done: Vec<String> = done
                .iter()
                .filter(|(fam, _)| fam == family)
                .map(|(_, m)| self.compiled[*m as usize].id.to_string())
                .collect();
            if done.len() >= f.members.len() {
                state.remove_group(f.at, key);
                continue;
            }
            let now = ev.timestamp_ms;
            let data = GroupData::Start {
                start_ms: now,
                first: ev.id,
                done,
            };
            let made = || GroupData::Count(VecDeque::new());
            if let Some(g) = self.touch_group(state, f.at, key, now, Some(f.within_ms), made) {
                g.last_ms = now;
                g.data = data;
            }
        }
        starts.clear();
        done.clear();
        *state.pairs = PairScratch { starts, done };
    }

    fn check_silence(
        &self,
        state: &mut EngineState,
        at: usize,
        now: i64,
        out: &mut Vec<Detection>,
    ) {
        let RuleKind::Silence(s) = &self.rules.rules()[at].kind else {
            return;
        };
        if let Some(learn) = &s.learn {
            self.check_usual(state, at, s, learn, now, out);
            return;
        }
        loop {
            let Some(rs) = state.rules.at_mut(at) else {
                return;
            };
            let Some((touched, key)) = rs.order.front() else {
                return;
            };
            // Runs for every event: one lookup tells whether the oldest
            // entry is live and when its source was last seen.
            let (key, when, id, fields) = match rs.groups.get(key) {
                Some(g) if g.touched == *touched => {
                    let GroupData::Seen {
                        last_ms,
                        last_id,
                        key: pairs,
                    } = &g.data
                    else {
                        return;
                    };
                    if now.saturating_sub(*last_ms) <= s.after_ms {
                        return;
                    }
                    let fields = silence_fields(pairs, *last_ms, s.after_ms);
                    let when = last_ms.saturating_add(s.after_ms);
                    (key.clone(), when, *last_id, fields)
                }
                _ => {
                    rs.order.pop_front();
                    continue;
                }
            };
            state.remove_group(at, &key);
            let fields = Facts::of(&fields);
            self.emit(
                state,
                at,
                key.text().clone(),
                when,
                Evidence::one(id),
                fields,
                out,
            );
        }
    }

    /// A silence rule that learns each source's limit (`silence.learn`)
    /// sees an event of the source `key`: its gap since the source's
    /// previous event is learnt, unless it was longer than the source's
    /// limit, when it is reported (no other event revealed it before).
    #[allow(clippy::too_many_arguments)]
    fn watch_usual(
        &self,
        state: &mut EngineState,
        at: usize,
        s: &crate::rule::Silence,
        learn: &crate::rule::Learn,
        key: &GroupKey,
        ev: &Event,
        out: &mut Vec<Detection>,
    ) {
        let now = ev.timestamp_ms;
        let period = now.div_euclid(learn.over_ms.max(1));
        let first = || {
            GroupData::Usual(Box::new(Usual {
                last_ms: now,
                last_id: ev.id,
                key: key_pairs(&s.by, &ev.fields).unwrap_or_default(),
                first_ms: now,
                period,
                longest_ms: 0,
                before_ms: 0,
                due_ms: now.saturating_add(s.after_ms),
            }))
        };
        let mut created = false;
        let Some(g) = self.touch_group(state, at, key, now, None, || {
            created = true;
            first()
        }) else {
            return;
        };
        let limit = g.data.silence_limit_ms(s.after_ms, Some(learn));
        let mut resumed = None;
        match &mut g.data {
            _ if created => {}
            GroupData::Usual(u) => {
                let Usual {
                    last_ms,
                    last_id,
                    key: pairs,
                    period: p,
                    longest_ms,
                    before_ms,
                    ..
                } = &mut **u;
                // An event older than the newest one (allowed lateness)
                // tells nothing about the gaps.
                if now >= *last_ms {
                    if period > *p {
                        *before_ms = if period == *p + 1 { *longest_ms } else { 0 };
                        *longest_ms = 0;
                        *p = period;
                    }
                    let gap = now - *last_ms;
                    if gap > limit {
                        // Reported, so not learnt as usual.
                        resumed = Some((*last_ms, *last_id, pairs.clone()));
                    } else {
                        *longest_ms = (*longest_ms).max(gap);
                    }
                    *last_ms = now;
                    *last_id = ev.id;
                }
            }
            // A group of another kind (the rule cannot have changed under
            // the same fingerprint, but a state is input): start learning.
            other => {
                *other = first();
                created = true;
            }
        }
        // Filed again only when it becomes silent sooner than the time it
        // is filed under (a new source, a limit just learnt): a later time
        // is found when the filed one comes (see `check_usual`).
        let silent_at = g.data.silent_at(s.after_ms, Some(learn));
        let mut file = None;
        if let (GroupData::Usual(u), Some(when)) = (&mut g.data, silent_at)
            && (created || when < u.due_ms)
        {
            u.due_ms = when;
            file = Some(when);
        }
        if let Some(when) = file
            && let Some(due) = state.rules.at_mut(at).and_then(|rs| rs.due.0.as_mut())
        {
            due.insert((when, key.text().clone()), key.clone());
        }
        if let Some((last_ms, last_id, pairs)) = resumed {
            let fields = silence_fields(&pairs, last_ms, limit);
            let when = last_ms.saturating_add(limit);
            let key = key.text().clone();
            self.emit(
                state,
                at,
                key,
                when,
                Evidence::one(last_id),
                Facts::of(&fields),
                out,
            );
        }
    }

    /// Reports the sources of a learning silence rule that have been
    /// silent past their own limit at `now`, soonest first.
    fn check_usual(
        &self,
        state: &mut EngineState,
        at: usize,
        s: &crate::rule::Silence,
        learn: &crate::rule::Learn,
        now: i64,
        out: &mut Vec<Detection>,
    ) {
        let Some(rs) = state.rules.at_mut(at) else {
            return;
        };
        // Built when missing (a state just loaded) or when stale entries
        // (groups evicted) outnumber the live ones.
        if rs
            .due
            .0
            .as_ref()
            .is_none_or(|d| d.len() > 2 * rs.groups.len() + 64)
        {
            let due = rs
                .groups
                .iter()
                .filter_map(|(k, g)| {
                    let when = g.data.filed_at(s.after_ms, Some(learn))?;
                    Some(((when, k.text().clone()), k.clone()))
                })
                .collect();
            rs.due.0 = Some(due);
        }
        loop {
            let Some(rs) = state.rules.at_mut(at) else {
                return;
            };
            let Some(due) = rs.due.0.as_mut() else {
                return;
            };
            if due
                .first_key_value()
                .is_none_or(|((when, _), _)| *when >= now)
            {
                return;
            }
            let Some(((filed, text), key)) = due.pop_first() else {
                return;
            };
            let Some(g) = rs.groups.get_mut(&key) else {
                // Stale: the group is gone.
                continue;
            };
            if g.data.filed_at(s.after_ms, Some(learn)) != Some(filed) {
                // Stale: the group was filed again, sooner.
                continue;
            }
            let Some(when) = g.data.silent_at(s.after_ms, Some(learn)) else {
                continue;
            };
            if when >= now {
                // The source was seen since it was filed: filed again.
                if let GroupData::Usual(u) = &mut g.data {
                    u.due_ms = when;
                }
                due.insert((when, text), key);
                continue;
            }
            let (last_ms, last_id, pairs) = match &g.data {
                GroupData::Usual(u) => (&u.last_ms, &u.last_id, &u.key),
                GroupData::Seen {
                    last_ms,
                    last_id,
                    key,
                } => (last_ms, last_id, key),
                _ => continue,
            };
            let limit = g.data.silence_limit_ms(s.after_ms, Some(learn));
            let fields = silence_fields(pairs, *last_ms, limit);
            let last_id = *last_id;
            state.remove_group(at, &key);
            let fields = Facts::of(&fields);
            self.emit(
                state,
                at,
                key.text().clone(),
                when,
                Evidence::one(last_id),
                fields,
                out,
            );
        }
    }

    /// The group `key` of the rule at `at`, created with `init` (evicting the oldest
    /// at a bound) when absent, and marked as touched at `now`. With
    /// `idle_ms`, groups untouched for that long (in event time) are dropped
    /// first, oldest first, so windows that can no longer fire do not pile up.
    #[allow(clippy::too_many_arguments)]
    fn touch_group<'s>(
        &self,
        state: &'s mut EngineState,
        at: usize,
        key: &GroupKey,
        now: i64,
        idle_ms: Option<i64>,
        init: impl FnOnce() -> GroupData,
    ) -> Option<&'s mut Group> {
        let per_rule = self.options.max_groups_per_rule.max(1);
        let max_total = self.options.max_total_groups.max(1) as u64;
        let full = {
            let rs = state.rules.at_mut(at)?;
            let expired = match idle_ms {
                Some(idle) => rs.expire_idle(now.saturating_sub(idle)),
                None => 0,
            };
            state.total_groups = state.total_groups.saturating_sub(expired);
            let len = state.rules.at(at)?.1.groups.len();
            len >= per_rule || state.total_groups >= max_total
        };
        // At a bound, a new group first makes room.
        if full && !state.rules.at(at)?.1.groups.contains_key(key) {
            while state.groups_at(at) >= per_rule && state.evict_oldest_of(at) {}
            while state.total_groups >= max_total && state.evict_oldest() {}
        }
        let EngineState {
            rules,
            touch,
            total_groups,
            ..
        } = state;
        let rs = rules.at_mut(at)?;
        *touch += 1;
        let t = *touch;
        // The group's entry goes to the back of the order; an entry it had
        // is left behind, stale.
        rs.make_order_room();
        let RuleState {
            groups,
            order,
            oldest,
            ..
        } = rs;
        // One lookup, whether the group exists or not.
        match groups.entry(key.clone()) {
            Entry::Occupied(e) => {
                // The entry shares the map's key, not this event's copy of
                // its text: looking the entry up later compares pointers
                // and need not read the text, long out of the cache.
                order.push_back((t, e.key().clone()));
                let g = e.into_mut();
                if matches!(**oldest, Some((old, _)) if old == g.touched) {
                    **oldest = None;
                }
                g.touched = t;
                g.last_ms = g.last_ms.max(now);
                Some(g)
            }
            Entry::Vacant(e) => {
                order.push_back((t, key.clone()));
                *total_groups += 1;
                Some(e.insert(Group {
                    touched: t,
                    last_ms: now,
                    data: init(),
                }))
            }
        }
    }

    /// Applies suppression and pushes the detection.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        state: &mut EngineState,
        at: usize,
        group_key: Arc<str>,
        timestamp_ms: i64,
        mut evidence: Evidence,
        fields: Facts<'_>,
        out: &mut Vec<Detection>,
    ) {
        let meta = &self.compiled[at];
        let mut suppressed = 0;
        let mut window = None;
        if meta.suppresses
            && let rule = &self.rules.rules()[at]
            && let Some(sup) = &rule.suppress
        {
            let skey: Cow<'_, str> = match &sup.by {
                // A key field the event lacks counts as empty: the other
                // fields still tell detections apart.
                // Written in one go (most detections of such a rule are
                // repeats, and only need the text to find their window).
                Some(by) => {
                    let mut key = String::with_capacity(64);
                    for (i, f) in by.iter().enumerate() {
                        if i > 0 {
                            key.push(' ');
                        }
                        key.push_str(f);
                        key.push('=');
                        if let Some(v) = fields.get(f) {
                            view::push_value_text(v, &mut key);
                        }
                    }
                    Cow::Owned(key)
                }
                // Copied only when a new suppression window opens.
                None => Cow::Borrowed(&group_key),
            };
            let limit = self.options.max_groups_per_rule.max(1);
            let Some(rs) = state.rules.at_mut(at) else {
                return;
            };
            match rs.suppress.get_mut(&*skey) {
                Some(s) if timestamp_ms < s.until_ms => {
                    s.count += 1;
                    if s.tag != 0 {
                        let r = state.repeats.entry(s.tag).or_insert(Repeat {
                            tag: s.tag,
                            count: 0,
                            last_ms: timestamp_ms,
                        });
                        r.count = s.count;
                        r.last_ms = r.last_ms.max(timestamp_ms);
                    }
                    // The rule's id is copied into the counts once.
                    match state.stats.suppressed.get_mut(&rule.id) {
                        Some(n) => *n += 1,
                        None => {
                            state.stats.suppressed.insert(rule.id.clone(), 1);
                        }
                    }
                    return;
                }
                Some(s) => {
                    // The repeats of a tagged window were reported already.
                    let count = std::mem::take(&mut s.count);
                    if std::mem::take(&mut s.tag) == 0 {
                        suppressed = count;
                    }
                    s.until_ms = timestamp_ms.saturating_add(sup.period_ms);
                }
                None => {
                    if rs.suppress.len() >= limit {
                        rs.suppress.retain(|_, s| s.until_ms > timestamp_ms);
                    }
                    if rs.suppress.len() >= limit {
                        let evicted = evict_oldest_windows(&mut rs.suppress, limit);
                        *state.stats.evicted.entry(rule.id.clone()).or_default() += evicted;
                    }
                    rs.suppress.insert(
                        skey.to_string(),
                        Suppression {
                            until_ms: timestamp_ms.saturating_add(sup.period_ms),
                            count: 0,
                            tag: 0,
                        },
                    );
                }
            }
            window = Some(SuppressionWindow {
                rule: (at, self.compiled[at].id.clone()),
                key: skey.into_owned(),
            });
        }
        evidence.keep_last(self.options.max_evidence.max(1));
        out.push(Detection {
            rule_id: meta.id.clone(),
            rule_title: meta.title.clone(),
            rule_version: meta.version,
            severity: meta.severity,
            tags: meta.tags.clone(),
            group_key,
            timestamp_ms,
            evidence,
            summary: meta.summary.render_with(|f| fields.get(f)),
            suppressed,
            window,
        });
    }

    /// Tags the suppression window `window` (of a detection this engine
    /// just raised) with `tag` (not 0), e.g. the id of the alert the
    /// detection was stored as: the window's repeats are then reported
    /// under that tag as they come ([`EngineState::take_repeats`]), and the
    /// next detection for its key does not count them again. Returns
    /// whether the window is still open (it may have been evicted).
    pub fn tag_window(
        &self,
        state: &mut EngineState,
        window: &SuppressionWindow,
        tag: u64,
    ) -> bool {
        let (at, id) = &window.rule;
        let rs = match state.rules.at(*at) {
            Some((i, _)) if **i == **id => state.rules.at_mut(*at),
            // Not in this engine's order: looked up by id.
            _ => state.rules.get_mut(id),
        };
        match rs.and_then(|rs| rs.suppress.get_mut(&window.key)) {
            Some(s) if tag != 0 => {
                s.tag = tag;
                true
            }
            _ => false,
        }
    }
}

/// What a detection's summary and suppression key read: the event's fields
/// (or the key fields of a silence), and one more the rule kind adds
/// (`threshold.count`), without copying the fields to add it.
#[derive(Clone, Copy)]
struct Facts<'a> {
    fields: &'a Fields,
    extra: Option<(&'a str, &'a Value)>,
}

impl<'a> Facts<'a> {
    fn of(fields: &'a Fields) -> Facts<'a> {
        Facts {
            fields,
            extra: None,
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.extra {
            Some((k, v)) if k == name => Some(v),
            _ => self.fields.get(name),
        }
    }
}

/// What a silence detection's summary reads: the source's key fields,
/// `silence.last_seen_ms`, and the source's limit as `silence.limit_ms` and
/// as text (`silence.limit`, e.g. `1h30m`).
fn silence_fields(pairs: &[(String, String)], last_ms: i64, limit_ms: i64) -> Fields {
    let mut fields: Fields = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    fields.insert("silence.last_seen_ms", Value::from(last_ms));
    fields.insert("silence.limit_ms", Value::from(limit_ms));
    fields.insert("silence.limit", Value::from(duration_text(limit_ms)));
    fields
}

/// `ms` written the way durations are written in rules: `1d2h`, `1h30m`,
/// `15m`, `45s`, `500ms` (the largest units, leaving out those at zero).
fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut rest = ms / 1000;
    let mut text = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= secs {
            text.push_str(&format!("{}{unit}", rest / secs));
            rest %= secs;
        }
    }
    text
}

/// The families of `rules`' enabled two-step sequences, in the order of
/// their first sequences; tells each sequence its family.
fn families(rules: &RuleSet, compiled: &mut [Compiled]) -> Vec<Family> {
    let after = rules.rules().len();
    let mut by_start: HashMap<String, usize> = HashMap::new();
    let mut families: Vec<Family> = Vec::new();
    for (i, r) in rules.rules().iter().enumerate() {
        let RuleKind::Sequence(seq) = &r.kind else {
            continue;
        };
        if !r.enabled || seq.steps.len() != 2 {
            continue;
        }
        // Alike: the same rule condition, first step and key names.
        let mut start = String::new();
        r.condition.memo(&mut start);
        start.push('|');
        seq.steps[0].condition.memo(&mut start);
        start.push_str(&format!("|{:?}", seq.steps[0].by));
        let next = families.len();
        let at = *by_start.entry(start).or_insert(next);
        if at == next {
            families.push(Family {
                at: after + at,
                members: Vec::new(),
                within_ms: 0,
            });
        }
        let f = &mut families[at];
        f.members.push(i);
        f.within_ms = f.within_ms.max(seq.within_ms);
        if let CompiledKind::Sequence(s) = &mut compiled[i].kind {
            s.family = Some(at as u32);
        }
    }
    families
}

/// (field, value) for every key field; `None` when one is missing.
fn key_pairs(by: &[String], fields: &Fields) -> Option<Vec<(String, String)>> {
    by.iter()
        .map(|f| {
            let v = fields.get(f).and_then(view::value_text)?;
            Some((f.clone(), v.into_owned()))
        })
        .collect()
}

/// Makes room in a full suppression map: drops the windows that end first
/// (ties broken by key, so a replay drops the same ones), a sixteenth of
/// `limit` at a time, so a map kept full by many keys costs one pass per
/// sixteenth of its size rather than one pass per new key. Returns how many
/// it dropped.
fn evict_oldest_windows(map: &mut BTreeMap<String, Suppression>, limit: usize) -> u64 {
    let target = limit.saturating_sub((limit / 16).max(1));
    let excess = map.len().saturating_sub(target);
    if excess == 0 {
        return 0;
    }
    let mut ends: Vec<(i64, &String)> = map.iter().map(|(k, s)| (s.until_ms, k)).collect();
    ends.select_nth_unstable(excess - 1);
    let drop: Vec<String> = ends[..excess].iter().map(|(_, k)| (*k).clone()).collect();
    for k in &drop {
        map.remove(k);
    }
    excess as u64
}
