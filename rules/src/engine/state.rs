//! [`EngineState`]: everything that changes while events flow, kept apart
//! from the immutable rules so that the caller can commit it with its journal
//! cursor, snapshot it and carry it across rule reloads.
//!
//! Every map here is bounded (see [`crate::EngineOptions`]); when a bound is
//! reached the least recently touched group is evicted and counted in
//! [`EngineStats`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

use super::Evidence;

/// The format version written by this build. Format 4 added the alert a
/// suppression window reports its repeats to ([`Suppression::tag`]);
/// format 5 the first steps that sequences share ([`GroupData::Start`],
/// [`RuleState::shared_by`]).
pub const ENGINE_STATE_FORMAT: u32 = 5;

/// The oldest format this build reads: format 3 only added a kind of group
/// data ([`GroupData::Usual`]), after the others, so a format 2 snapshot
/// decodes as it is.
pub const ENGINE_STATE_OLDEST_FORMAT: u32 = 2;

/// Per-rule, per-key state of stateful rules, the reorder buffer and the
/// counters. The format version lets a newer collector recognise (and reset)
/// an older snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineState {
    /// Format version of this snapshot ([`ENGINE_STATE_FORMAT`] when created).
    pub format: u32,
    /// State by rule id.
    #[serde(default)]
    pub rules: RuleStates,
    /// The newest event time seen (ms); `i64::MIN` before the first event.
    /// Events older than this minus the allowed lateness are late.
    pub watermark_ms: i64,
    /// Events held back until the watermark passes them, sorted by
    /// (time, id), so out-of-order input is processed in time order.
    pub pending: VecDeque<PendingEvent>,
    /// Logical clock for least-recently-touched eviction.
    pub touch: u64,
    /// Number of groups over all rules (for the total bound).
    pub total_groups: u64,
    /// Counters for metrics; they only grow.
    pub stats: EngineStats,
    /// Fingerprint of the rule set the state was last reconciled with.
    pub rules_fingerprint: u64,
    /// Working memory of the engine, reused from event to event so that the
    /// common path does not allocate; not part of the state's value.
    #[serde(skip)]
    pub(crate) candidates: Scratch<Vec<u32>>,
    /// Working memory of the prefilter, likewise.
    #[serde(skip)]
    pub(crate) index_scratch: Scratch<super::index::IndexScratch>,
    /// The vectors of the engine's view of an event, likewise.
    #[serde(skip)]
    pub(crate) view_buffers: Scratch<super::view::ViewBuffers>,
    /// The first steps and completions of two-step sequences met while one
    /// event is handled, likewise.
    #[serde(skip)]
    pub(crate) pairs: Scratch<PairScratch>,
    /// Repeats swallowed by tagged windows, by tag, not yet taken
    /// ([`EngineState::take_repeats`]). Not saved: the caller takes them
    /// before it commits the state.
    #[serde(skip)]
    pub(crate) repeats: BTreeMap<u64, Repeat>,
}

/// What two-step sequences met in one event, applied once every rule has
/// seen it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PairScratch {
    /// A first step, by family, and its key.
    pub(crate) starts: Vec<(u32, GroupKey)>,
    /// The sequences the event completed (family, rule position).
    pub(crate) done: Vec<(u32, u32)>,
}

/// A buffer or cache that holds nothing of value between calls: it is not
/// saved, and two states are equal whatever their scratch holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch<T>(pub(crate) T);

impl<T> PartialEq for Scratch<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            format: ENGINE_STATE_FORMAT,
            rules: RuleStates::default(),
            watermark_ms: i64::MIN,
            pending: VecDeque::new(),
            touch: 0,
            total_groups: 0,
            stats: EngineStats::default(),
            rules_fingerprint: 0,
            candidates: Scratch::default(),
            index_scratch: Scratch::default(),
            view_buffers: Scratch::default(),
            pairs: Scratch::default(),
            repeats: BTreeMap::new(),
        }
    }
}

/// The state of every rule, by rule id. Saved as a map from id to
/// [`RuleState`]; in memory, once an engine has reconciled it, in the order
/// of that engine's rules, so that the engine finds a rule's state by the
/// rule's position rather than by comparing ids.
#[derive(Debug, Clone, Default)]
pub struct RuleStates {
    entries: Vec<(String, RuleState)>,
    /// The fingerprint of the rule set whose order `entries` follow; 0 when
    /// they follow no engine's order (new, or just loaded).
    pub(crate) aligned: Scratch<u64>,
}

impl RuleStates {
    /// The state of rule `id`.
    pub fn get(&self, id: &str) -> Option<&RuleState> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, rs)| rs)
    }

    /// The state of rule `id`, to change.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut RuleState> {
        self.entries
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, rs)| rs)
    }

    /// Whether rule `id` has a state.
    pub fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Rule ids and their states.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RuleState)> {
        self.entries.iter().map(|(id, rs)| (id.as_str(), rs))
    }

    /// How many rules have a state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no rule has a state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id and state at `at` (the engine's rule position once aligned).
    pub(crate) fn at(&self, at: usize) -> Option<&(String, RuleState)> {
        self.entries.get(at)
    }

    pub(crate) fn at_mut(&mut self, at: usize) -> Option<&mut RuleState> {
        self.entries.get_mut(at).map(|(_, rs)| rs)
    }

    /// Takes every entry out, for re-ordering.
    pub(crate) fn take(&mut self) -> Vec<(String, RuleState)> {
        *self.aligned = 0;
        std::mem::take(&mut self.entries)
    }

    /// Sets the entries, in the order of the rule set `fingerprint`.
    pub(crate) fn set_aligned(&mut self, entries: Vec<(String, RuleState)>, fingerprint: u64) {
        self.entries = entries;
        *self.aligned = fingerprint;
    }

    fn sorted(&self) -> Vec<&(String, RuleState)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Equal when the same ids have equal states, whatever the order.
impl PartialEq for RuleStates {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

/// A map from id to state, ids in order, as the format has always been.
impl serde::Serialize for RuleStates {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let sorted = self.sorted();
        let mut map = serializer.serialize_map(Some(sorted.len()))?;
        for (id, rs) in sorted {
            map.serialize_entry(id, rs)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for RuleStates {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, RuleState>::deserialize(deserializer)?;
        Ok(RuleStates {
            entries: map.into_iter().collect(),
            aligned: Scratch::default(),
        })
    }
}

/// Counters the collector turns into metrics. Monotonic for one state.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Groups evicted because a bound was reached, by rule id.
    pub evicted: BTreeMap<String, u64>,
    /// Events that arrived later than the allowed lateness (processed at
    /// once, out of order).
    pub late_events: u64,
    /// Events released early because the reorder buffer was full.
    pub pending_overflow: u64,
    /// Detections dropped by suppression, by rule id.
    pub suppressed: BTreeMap<String, u64>,
}

/// An event waiting in the reorder buffer.
///
/// Held as decoded, so that holding events back costs a copy, not an
/// encoding and a decoding each. Saved with its fields as JSON text (an
/// `id`, `timestamp_ms`, `fields_json` record), so that compact binary
/// encodings (postcard) can hold them; the text is made at the first save
/// and kept for the next ones (the collector saves the state at every
/// commit, several times within a lateness).
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub(crate) event: crate::Event,
    /// Its fields as JSON text, once saved.
    json: std::sync::OnceLock<String>,
}

impl PendingEvent {
    /// `event`, to be held back.
    pub fn new(event: crate::Event) -> PendingEvent {
        PendingEvent {
            event,
            json: std::sync::OnceLock::new(),
        }
    }

    /// The event (not to be changed: its saved text is kept).
    pub fn event(&self) -> &crate::Event {
        &self.event
    }
}

impl PartialEq for PendingEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

/// How a [`PendingEvent`] is saved.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "PendingEvent")]
struct PendingRecord<'a> {
    id: u64,
    timestamp_ms: i64,
    #[serde(borrow)]
    fields_json: std::borrow::Cow<'a, str>,
}

impl serde::Serialize for PendingEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = match self.json.get() {
            Some(json) => json,
            None => {
                let json =
                    serde_json::to_string(&self.event.fields).map_err(serde::ser::Error::custom)?;
                self.json.get_or_init(|| json)
            }
        };
        PendingRecord {
            id: self.event.id,
            timestamp_ms: self.event.timestamp_ms,
            fields_json: json.as_str().into(),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for PendingEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = PendingRecord::deserialize(deserializer)?;
        let fields = serde_json::from_str(&r.fields_json)
            .map_err(|e| serde::de::Error::custom(format_args!("held-back event {}: {e}", r.id)))?;
        Ok(PendingEvent {
            event: crate::Event {
                id: r.id,
                timestamp_ms: r.timestamp_ms,
                fields,
            },
            json: std::sync::OnceLock::from(r.fields_json.into_owned()),
        })
    }
}

/// A group key (`source.ip=203.0.113.7`) with its hash, computed once when
/// the key is built (for an event, once however many rules group by the
/// same fields) with std's SipHash under keys chosen at random for the
/// process: group keys are made of what senders write (addresses, user
/// names), which must not be able to pick colliding keys. Saved as text.
#[derive(Debug, Clone)]
pub struct GroupKey {
    hash: u64,
    text: Arc<str>,
}

fn group_hasher() -> &'static RandomState {
    static HASHER: OnceLock<RandomState> = OnceLock::new();
    HASHER.get_or_init(RandomState::new)
}

impl GroupKey {
    /// The key `text`, hashed.
    pub fn new(text: Arc<str>) -> GroupKey {
        GroupKey {
            hash: group_hasher().hash_one(&*text),
            text,
        }
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its text, shared.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        // The same text when it is the same allocation (the order's entry
        // and its group share it), without reading it: `Arc<str>`'s own
        // `==` compares the bytes even then (callgrind showed a `memcmp`,
        // and its cache miss, per group `expire_idle` looked at).
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for GroupKey {}

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for GroupKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for GroupKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(GroupKey::new(Arc::<str>::deserialize(deserializer)?))
    }
}

/// Hands the hash a [`GroupKey`] carries to the map as it is; other keys
/// (text) are hashed with FNV, for maps only the loaded content fills.
#[derive(Default)]
pub struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `GroupKey` uses only `write_u64`; text comes here.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Open groups by key.
pub type Groups = HashMap<GroupKey, Group, BuildHasherDefault<KeyHash>>;

/// The state of one rule.
///
/// Laid out so that touching a group reads two cache lines: the groups and
/// their order in the first, the expiry hint in the second.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub struct RuleState {
    /// Open groups by group key. A key is shared with its `order` entry
    /// (and, while one event is handled, with the other rules that group
    /// by the same fields), and hashed once (see [`GroupKey`]). Saved in
    /// the map's own order, which differs from process to process: sorting
    /// a rule's 100,000 groups at every commit would more than double the
    /// time a commit spends encoding the state.
    pub groups: Groups,
    /// (touch time, group key), least recently touched first: the eviction
    /// and expiry order. Touching a group appends an entry and leaves its
    /// old one behind, stale (its touch time is no longer the group's);
    /// stale entries are skipped when they reach the front, and dropped all
    /// at once when they outnumber the groups. Saved as a map from touch
    /// time to key of the live entries only, as the format has always been.
    pub(crate) order: VecDeque<(u64, GroupKey)>,
    /// The touch time and newest event time of the least recently touched
    /// group, when [`RuleState::expire_idle`] last found it young and it
    /// has neither moved nor gone since, so that the next call need not
    /// look at the groups at all.
    pub(crate) oldest: Scratch<Option<(u64, i64)>>,
    /// The rule's fingerprint when this state was built; a changed rule
    /// starts from an empty state.
    pub fingerprint: u64,
    /// Silence rules that learn each source's limit: the sources by the
    /// time they are filed under (`GroupData::Usual::due_ms`), soonest
    /// first (the sources' limits differ, so the eviction order does not
    /// tell). Built from the groups when first needed (not saved); an entry
    /// whose group is gone or filed under another time is stale and
    /// skipped.
    pub(crate) due: Scratch<Option<Due>>,
    /// Suppression windows by suppression key.
    pub suppress: BTreeMap<String, Suppression>,
    /// Empty for a rule. Not empty, this is the state of the first step of
    /// the two-step sequences listed (rule id, fingerprint), which start
    /// alike and keep one group per key for it ([`GroupData::Start`]).
    /// Saved from format 5 on.
    pub shared_by: Vec<(String, u64)>,
}

// The layout above, where pointers take 8 bytes.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::offset_of!(RuleState, oldest) == 64);

impl RuleState {
    fn live(&self, (touched, key): &(u64, GroupKey)) -> bool {
        self.groups.get(key).is_some_and(|g| g.touched == *touched)
    }

    /// The live order entries, least recently touched first.
    pub fn order(&self) -> impl Iterator<Item = (u64, &GroupKey)> {
        self.order
            .iter()
            .filter(|e| self.live(e))
            .map(|(t, k)| (*t, k))
    }

    /// Drops the stale entries at the front; returns the first live one.
    pub(crate) fn first_live(&mut self) -> Option<&(u64, GroupKey)> {
        while let Some(e) = self.order.front() {
            if self.live(e) {
                break;
            }
            self.order.pop_front();
        }
        self.order.front()
    }

    /// Drops the stale entries of the order when they outnumber the
    /// groups, before an entry is appended, so that the order stays within
    /// twice the groups (plus a little).
    pub(crate) fn make_order_room(&mut self) {
        if self.order.len() >= 2 * self.groups.len() + 64 {
            let order = std::mem::take(&mut self.order);
            self.order = order.into_iter().filter(|e| self.live(e)).collect();
        }
    }

    /// The group last touched at `touched` was touched again or removed:
    /// it may no longer be the least recently touched one.
    pub(crate) fn moved(&mut self, touched: u64) {
        if matches!(*self.oldest, Some((t, _)) if t == touched) {
            *self.oldest = None;
        }
    }

    /// Drops the least recently touched groups whose newest event is at or
    /// before `before`; stops at the first younger one. Returns how many
    /// groups it removed (for [`EngineState::total_groups`]).
    pub(crate) fn expire_idle(&mut self, before: i64) -> u64 {
        if let Some((_, ms)) = *self.oldest
            && ms > before
        {
            return 0;
        }
        let mut removed = 0;
        while let Some((touched, key)) = self.order.front() {
            // One lookup tells whether the entry is live and how old.
            match self.groups.get(key) {
                Some(g) if g.touched == *touched => {
                    if g.last_ms > before {
                        *self.oldest = Some((*touched, g.last_ms));
                        break;
                    }
                    *self.oldest = None;
                    if let Some((_, key)) = self.order.pop_front()
                        && self.groups.remove(&key).is_some()
                    {
                        removed += 1;
                    }
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        removed
    }
}

/// Equal when the groups, the live order and the suppressions are.
impl PartialEq for RuleState {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.groups == other.groups
            && self.suppress == other.suppress
            && self.shared_by == other.shared_by
            && self.order().eq(other.order())
    }
}

/// Fingerprint, groups, the live order as a map from touch time to key,
/// suppressions: the layout of the format.
impl serde::Serialize for RuleState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Order<'a>(&'a RuleState);
        impl serde::Serialize for Order<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // Each group's live entry is its own touch time: no need
                // to sort out the stale ones (a map loads in any order).
                let groups = &self.0.groups;
                let mut map = serializer.serialize_map(Some(groups.len()))?;
                for (k, g) in groups {
                    map.serialize_entry(&g.touched, k)?;
                }
                map.end()
            }
        }
        let shares = CODING_FORMAT.with(std::cell::Cell::get) >= 5;
        let mut st = serializer.serialize_struct("RuleState", 4 + usize::from(shares))?;
        st.serialize_field("fingerprint", &self.fingerprint)?;
        st.serialize_field("groups", &self.groups)?;
        st.serialize_field("order", &Order(self))?;
        st.serialize_field("suppress", &self.suppress)?;
        if shares {
            st.serialize_field("shared_by", &self.shared_by)?;
        }
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for RuleState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "RuleState")]
        struct Format4 {
            fingerprint: u64,
            groups: Groups,
            order: BTreeMap<u64, GroupKey>,
            suppress: BTreeMap<String, Suppression>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename = "RuleState")]
        struct Format5 {
            fingerprint: u64,
            groups: Groups,
            order: BTreeMap<u64, GroupKey>,
            suppress: BTreeMap<String, Suppression>,
            #[serde(default)]
            shared_by: Vec<(String, u64)>,
        }
        let s = if CODING_FORMAT.with(std::cell::Cell::get) >= 5 {
            Format5::deserialize(deserializer)?
        } else {
            let s = Format4::deserialize(deserializer)?;
            Format5 {
                fingerprint: s.fingerprint,
                groups: s.groups,
                order: s.order,
                suppress: s.suppress,
                shared_by: Vec::new(),
            }
        };
        Ok(RuleState {
            fingerprint: s.fingerprint,
            groups: s.groups,
            order: s.order.into_iter().collect(),
            suppress: s.suppress,
            shared_by: s.shared_by,
            oldest: Scratch::default(),
            due: Scratch::default(),
        })
    }
}

/// Groups by the time they are filed under (then key text, so that
/// sources due at the same time are looked at in one order).
pub(crate) type Due = BTreeMap<(i64, Arc<str>), GroupKey>;

/// One group of a stateful rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// When it was last touched (see [`EngineState::touch`]).
    pub touched: u64,
    /// Event time of its newest event, for dropping idle groups.
    pub last_ms: i64,
    /// What the rule kind keeps.
    pub data: GroupData,
}

/// Per-kind group data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum GroupData {
    /// Threshold counting events: (time, event id) in the window, oldest first.
    Count(VecDeque<(i64, u64)>),
    /// Threshold counting distinct values: value → (newest time, event id).
    Distinct(DistinctSet),
    /// Sequence in progress.
    Sequence {
        /// Index of the step expected next.
        next: usize,
        /// Time of the first step.
        start_ms: i64,
        /// Event ids of the steps so far.
        evidence: Evidence,
    },
    /// Silence watch: when the source was last seen, and the key fields.
    Seen {
        /// Time of its newest event.
        last_ms: i64,
        /// Id of that event.
        last_id: u64,
        /// The key fields and their values (for the summary).
        key: Vec<(String, String)>,
    },
    /// Silence watch that learns the source's usual gap (`silence.learn`).
    /// Added in format 3, after the others, so that format 2 still reads.
    /// Boxed: the largest kind by far, and the rarest (one group per
    /// source), it would make every rule's group table half as large
    /// again. Saved as its fields, as when they were held inline.
    Usual(Box<Usual>),
    /// The first step of two-step sequences that start alike, kept once for
    /// all of them (see [`RuleState::shared_by`]): for each sequence not in
    /// `done`, a sequence in progress that started at `start_ms` with event
    /// `first`. Added in format 5.
    Start {
        /// Time of the first step.
        start_ms: i64,
        /// Its event id.
        first: u64,
        /// The sequences that have no group here: they completed from this
        /// first step, found it too old, or came after it (rule ids).
        done: Vec<String>,
    },
}

/// What a silence watch that learns keeps ([`GroupData::Usual`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usual {
    /// Time of its newest event.
    pub last_ms: i64,
    /// Id of that event.
    pub last_id: u64,
    /// The key fields and their values (for the summary).
    pub key: Vec<(String, String)>,
    /// Time of its first event: it is learnt one period later.
    pub first_ms: i64,
    /// The learning period of its newest event (time ÷ period).
    pub period: i64,
    /// The longest gap learnt in that period, ms.
    pub longest_ms: i64,
    /// The longest gap learnt in the period before it, ms.
    pub before_ms: i64,
    /// The time it is filed under in the rule's silence index: when it
    /// would have become silent as it was then. Never after when it
    /// becomes silent now (a later time does not move it; an earlier
    /// one does), so the index is checked when needed and only then.
    pub due_ms: i64,
}

impl GroupData {
    /// A silence watch's limit, ms: [`crate::Learn::limit_ms`] of its
    /// usual gap once learnt, `after_ms` before.
    pub(crate) fn silence_limit_ms(&self, after_ms: i64, learn: Option<&crate::Learn>) -> i64 {
        match (self, learn) {
            (GroupData::Usual(u), Some(l)) if u.last_ms.saturating_sub(u.first_ms) >= l.over_ms => {
                l.limit_ms(u.longest_ms.max(u.before_ms), after_ms)
            }
            _ => after_ms,
        }
    }

    /// When a silence watch's source becomes silent (its newest event's
    /// time plus its limit); `None` for other data.
    pub(crate) fn silent_at(&self, after_ms: i64, learn: Option<&crate::Learn>) -> Option<i64> {
        let last_ms = match self {
            GroupData::Seen { last_ms, .. } => *last_ms,
            GroupData::Usual(u) => u.last_ms,
            _ => return None,
        };
        Some(last_ms.saturating_add(self.silence_limit_ms(after_ms, learn)))
    }

    /// The time a silence watch is filed under in its rule's index.
    pub(crate) fn filed_at(&self, after_ms: i64, learn: Option<&crate::Learn>) -> Option<i64> {
        match self {
            GroupData::Usual(u) => Some(u.due_ms),
            other => other.silent_at(after_ms, learn),
        }
    }
}

/// The distinct values a threshold group saw in its window, each with the
/// time and id of its newest event, in value order.
///
/// A group holds at most its rule's `count` values (it fires then), and
/// most hold one: a source seen once, then idle until it expires. Up to
/// [`DistinctSet::FEW`] values sit in one small sorted vector; more, in a
/// tree. A tree takes a node of some 450 bytes for its first value, so a
/// flood of one-off sources filled the cache with nodes, and dropping
/// their groups as they expired read each node back from memory.
///
/// Saved as the tree was (a map from value to time and id), so snapshots
/// of either layout read back the same.
#[derive(Debug, Clone)]
pub enum DistinctSet {
    /// At most [`DistinctSet::FEW`] values, sorted.
    Few(Vec<(String, (i64, u64))>),
    /// More.
    Many(BTreeMap<String, (i64, u64)>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Few(Vec::new())
    }
}

impl DistinctSet {
    /// Values kept in the vector; a binary search over them costs less than
    /// walking a tree, and inserting moves at most this many entries.
    pub const FEW: usize = 16;

    /// Records `value` as seen at `seen` (time, event id).
    pub fn see(&mut self, value: std::borrow::Cow<'_, str>, seen: (i64, u64)) {
        match self {
            DistinctSet::Few(v) => match v.binary_search_by(|(k, _)| k.as_str().cmp(&value)) {
                Ok(i) => v[i].1 = seen,
                Err(i) if v.len() < Self::FEW => {
                    if v.is_empty() {
                        // Room for one: most groups never see a second.
                        v.reserve_exact(1);
                    }
                    v.insert(i, (value.into_owned(), seen));
                }
                Err(_) => {
                    let mut m: BTreeMap<String, (i64, u64)> =
                        std::mem::take(v).into_iter().collect();
                    m.insert(value.into_owned(), seen);
                    *self = DistinctSet::Many(m);
                }
            },
            DistinctSet::Many(m) => match m.get_mut(value.as_ref()) {
                Some(slot) => *slot = seen,
                None => {
                    m.insert(value.into_owned(), seen);
                }
            },
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Few(v) => v.len(),
            DistinctSet::Many(m) => m.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the values whose (time, event id) `keep` holds for.
    pub fn retain(&mut self, mut keep: impl FnMut(&(i64, u64)) -> bool) {
        match self {
            DistinctSet::Few(v) => v.retain(|(_, seen)| keep(seen)),
            DistinctSet::Many(m) => m.retain(|_, seen| keep(seen)),
        }
    }

    /// The values with their (time, event id), in value order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &(i64, u64))> {
        let (few, many) = match self {
            DistinctSet::Few(v) => (Some(v.iter().map(|(k, seen)| (k.as_str(), seen))), None),
            DistinctSet::Many(m) => (None, Some(m.iter().map(|(k, seen)| (k.as_str(), seen)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

/// Equal when they hold the same values, in whichever layout.
impl PartialEq for DistinctSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl serde::Serialize for DistinctSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // With its length first, as a map's (postcard needs it).
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (value, seen) in self.iter() {
            map.serialize_entry(value, seen)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for DistinctSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, (i64, u64)>::deserialize(deserializer)?;
        Ok(if m.len() <= Self::FEW {
            DistinctSet::Few(m.into_iter().collect())
        } else {
            DistinctSet::Many(m)
        })
    }
}

/// One suppression window.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// Detections for this key before this time are suppressed.
    pub until_ms: i64,
    /// How many were suppressed since the last raised detection.
    pub count: u64,
    /// What the caller tagged the detection that opened the window with
    /// (the collector: its alert id; see [`crate::Engine::tag_window`]), 0
    /// when untagged. The repeats of a tagged window are reported as they
    /// come ([`EngineState::take_repeats`]); those of an untagged one, on
    /// the next detection ([`crate::Detection::suppressed`]).
    pub tag: u64,
}

thread_local! {
    /// The format being encoded or decoded on this thread (see
    /// [`EngineState::to_bytes`]): a [`Suppression`] has no tag before
    /// format 4.
    static CODING_FORMAT: std::cell::Cell<u32> = const { std::cell::Cell::new(ENGINE_STATE_FORMAT) };
}

/// Runs `f` with [`CODING_FORMAT`] set to `format`.
fn in_format<T>(format: u32, f: impl FnOnce() -> T) -> T {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            CODING_FORMAT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CODING_FORMAT.with(|c| c.replace(format)));
    f()
}

impl serde::Serialize for Suppression {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let tagged = CODING_FORMAT.with(std::cell::Cell::get) >= 4;
        let mut st = serializer.serialize_struct("Suppression", 2 + usize::from(tagged))?;
        st.serialize_field("until_ms", &self.until_ms)?;
        st.serialize_field("count", &self.count)?;
        if tagged {
            st.serialize_field("tag", &self.tag)?;
        }
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for Suppression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "Suppression")]
        struct Format3 {
            until_ms: i64,
            count: u64,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename = "Suppression")]
        struct Format4 {
            until_ms: i64,
            count: u64,
            #[serde(default)]
            tag: u64,
        }
        if CODING_FORMAT.with(std::cell::Cell::get) >= 4 {
            let s = Format4::deserialize(deserializer)?;
            Ok(Suppression {
                until_ms: s.until_ms,
                count: s.count,
                tag: s.tag,
            })
        } else {
            let s = Format3::deserialize(deserializer)?;
            Ok(Suppression {
                until_ms: s.until_ms,
                count: s.count,
                tag: 0,
            })
        }
    }
}

/// The repeats a tagged suppression window swallowed so far (see
/// [`EngineState::take_repeats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    /// The window's tag ([`crate::Engine::tag_window`]).
    pub tag: u64,
    /// Detections swallowed since the window opened: the whole count, not
    /// an increment, so that applying it twice changes nothing.
    pub count: u64,
    /// Event time of the newest one.
    pub last_ms: i64,
}

/// A snapshot that this build cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFormatError {
    /// Written by another format version.
    #[error(
        "engine state has format {found}, this build reads formats {ENGINE_STATE_OLDEST_FORMAT} to {ENGINE_STATE_FORMAT}; start from an empty state or upgrade"
    )]
    Version {
        /// The format found in the snapshot.
        found: u32,
    },
    /// The bytes do not decode.
    #[error("engine state does not decode: {0}")]
    Decode(String),
    /// The bytes decode, but into a state that contradicts itself.
    #[error("engine state is inconsistent: {0}")]
    Inconsistent(String),
}

impl EngineState {
    /// Checks that a deserialized snapshot can be used by this build.
    pub fn check_format(&self) -> Result<(), StateFormatError> {
        if (ENGINE_STATE_OLDEST_FORMAT..=ENGINE_STATE_FORMAT).contains(&self.format) {
            Ok(())
        } else {
            Err(StateFormatError::Version { found: self.format })
        }
    }

    /// Compact binary encoding (postcard), for committing with a cursor.
    /// Encoded in the state's [`EngineState::format`]: this build's, unless
    /// a test set an older one.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs into a Vec cannot fail.
        in_format(self.format, || postcard::to_stdvec(self)).unwrap_or_default()
    }

    /// The repeats swallowed by tagged suppression windows since the last
    /// call, one per window (its count so far). The collector applies them
    /// to the alerts the windows were tagged with, in the transaction that
    /// commits the state. At most one entry per window open since the last
    /// call, so this is bounded as the windows are.
    pub fn take_repeats(&mut self) -> Vec<Repeat> {
        std::mem::take(&mut self.repeats).into_values().collect()
    }

    /// Decodes [`EngineState::to_bytes`] and checks the format.
    pub fn from_bytes(bytes: &[u8]) -> Result<EngineState, StateFormatError> {
        // The format is the first field: read it alone first so an old
        // snapshot gets the version error rather than a decode error.
        let (format, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| StateFormatError::Decode(e.to_string()))?;
        if !(ENGINE_STATE_OLDEST_FORMAT..=ENGINE_STATE_FORMAT).contains(&format) {
            return Err(StateFormatError::Version { found: format });
        }
        let mut state: EngineState = in_format(format, || postcard::from_bytes(bytes))
            .map_err(|e| StateFormatError::Decode(e.to_string()))?;
        // Saved again, it is of this build's format.
        state.format = ENGINE_STATE_FORMAT;
        state.check().map_err(StateFormatError::Inconsistent)?;
        Ok(state)
    }

    /// Checks what the saved form says twice: each rule's eviction order
    /// holds exactly its groups, each under its own last touch; no two
    /// groups share a touch, and none is after the clock (the engine tells
    /// live order entries by their touch). The group count, which only
    /// sums the groups up, is counted again.
    fn check(&mut self) -> Result<(), String> {
        let mut touches = Vec::new();
        let mut total = 0u64;
        for (id, rs) in self.rules.iter() {
            if rs.order.len() != rs.groups.len() {
                return Err(format!(
                    "rule `{id}` has {} groups but {} entries in its eviction order",
                    rs.groups.len(),
                    rs.order.len()
                ));
            }
            for (touched, key) in &rs.order {
                if rs.groups.get(key).is_none_or(|g| g.touched != *touched) {
                    return Err(format!(
                        "rule `{id}`: the eviction order has group `{key}` at touch {touched}, which is not its last touch"
                    ));
                }
                if *touched > self.touch {
                    return Err(format!(
                        "rule `{id}`: group `{key}` was touched at {touched}, after the clock ({})",
                        self.touch
                    ));
                }
                touches.push(*touched);
            }
            total += rs.groups.len() as u64;
        }
        // Within a rule the saved order cannot repeat a touch; across rules,
        // sorted, two equal touches are neighbours.
        touches.sort_unstable();
        if let Some(w) = touches.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two groups share touch {}", w[0]));
        }
        self.total_groups = total;
        Ok(())
    }

    /// Open groups over all rules.
    pub fn group_count(&self) -> u64 {
        self.total_groups
    }

    /// Open groups of one rule (see [`EngineState::groups_by_rule`]).
    pub fn groups_of(&self, rule_id: &str) -> usize {
        self.groups_by_rule()
            .into_iter()
            .find(|(id, _)| *id == rule_id)
            .map_or(0, |(_, n)| n as usize)
    }

    /// Open groups of each rule, in the state's order: its own and, for a
    /// two-step sequence, the first steps it shares that it is not done
    /// with. One pass over the groups shared.
    pub fn groups_by_rule(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = Vec::with_capacity(self.rules.len());
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (id, rs) in self.rules.iter().filter(|(_, rs)| rs.shared_by.is_empty()) {
            at.insert(id, out.len());
            out.push((id, rs.groups.len() as u64));
        }
        for (_, rs) in self.rules.iter().filter(|(_, rs)| !rs.shared_by.is_empty()) {
            for (id, _) in &rs.shared_by {
                if let Some(&i) = at.get(id.as_str()) {
                    out[i].1 += rs.groups.len() as u64;
                }
            }
            for g in rs.groups.values() {
                if let GroupData::Start { done, .. } = &g.data {
                    for id in done {
                        if let Some(&i) = at.get(id.as_str())
                            && rs.shared_by.iter().any(|(m, _)| m == id)
                        {
                            out[i].1 = out[i].1.saturating_sub(1);
                        }
                    }
                }
            }
        }
        out
    }

    /// Open groups of the rule at `at`.
    pub(crate) fn groups_at(&self, at: usize) -> usize {
        self.rules.at(at).map_or(0, |(_, r)| r.groups.len())
    }

    /// Evicts the least recently touched group of the rule at `at`.
    pub(crate) fn evict_oldest_of(&mut self, at: usize) -> bool {
        let Some((rule_id, _)) = self.rules.at(at) else {
            return false;
        };
        let rule_id = rule_id.clone();
        let Some(rs) = self.rules.at_mut(at) else {
            return false;
        };
        let Some((touched, key)) = rs.first_live().cloned() else {
            return false;
        };
        rs.order.pop_front();
        rs.moved(touched);
        let gone = rs.groups.remove(&key);
        self.total_groups = self.total_groups.saturating_sub(1);
        if rs.shared_by.is_empty() {
            *self.stats.evicted.entry(rule_id).or_default() += 1;
            return true;
        }
        // A shared first step is a group of each sequence not done with it.
        let done: &[String] = match gone.as_ref().map(|g| &g.data) {
            Some(GroupData::Start { done, .. }) => done,
            _ => &[],
        };
        for (id, _) in &rs.shared_by {
            if !done.contains(id) {
                *self.stats.evicted.entry(id.clone()).or_default() += 1;
            }
        }
        true
    }

    /// Evicts the least recently touched group over all rules.
    pub(crate) fn evict_oldest(&mut self) -> bool {
        // The smallest front over all rules is the oldest group if it is
        // live; if it is stale, drop it and look again. One liveness check
        // per entry dropped, not one per rule.
        loop {
            let oldest = (0..self.rules.len())
                .filter_map(|at| {
                    let (_, rs) = self.rules.at(at)?;
                    rs.order.front().map(|(t, _)| (*t, at))
                })
                .min();
            let Some((_, at)) = oldest else {
                return false;
            };
            let Some(rs) = self.rules.at_mut(at) else {
                return false;
            };
            if rs.order.front().is_some_and(|e| rs.live(e)) {
                return self.evict_oldest_of(at);
            }
            rs.order.pop_front();
        }
    }

    /// Removes a group of the rule at `at` (it fired or expired).
    pub(crate) fn remove_group(&mut self, at: usize, key: &GroupKey) {
        if let Some(rs) = self.rules.at_mut(at)
            && let Some(g) = rs.groups.remove(key)
        {
            rs.moved(g.touched);
            self.total_groups = self.total_groups.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of group data, with values that are not all alike.
    fn every_kind() -> Vec<GroupData> {
        let mut distinct = DistinctSet::default();
        distinct.see("10.0.0.1".into(), (5, 6));
        vec![
            GroupData::Count(VecDeque::from([(1, 2), (3, 4)])),
            GroupData::Distinct(distinct),
            GroupData::Sequence {
                next: 1,
                start_ms: 7,
                evidence: Evidence::one(8),
            },
            GroupData::Seen {
                last_ms: 9,
                last_id: 10,
                key: vec![("agent.name".into(), "web-01".into())],
            },
            GroupData::Usual(Box::new(Usual {
                last_ms: 11,
                last_id: 12,
                key: vec![("log.source".into(), "fw".into())],
                first_ms: 13,
                period: 14,
                longest_ms: 15,
                before_ms: 16,
                due_ms: 17,
            })),
            GroupData::Start {
                start_ms: 18,
                first: 19,
                done: vec!["p1".into()],
            },
        ]
    }

    /// A group takes 64 bytes, and 88 with its key in a rule's table (120
    /// when the learning silence data was held inline): the tables of a
    /// thousand rules, up to their bounds, are what the engine's memory is.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn groups_stay_small() {
        assert_eq!(std::mem::size_of::<Group>(), 64);
        assert_eq!(std::mem::size_of::<(GroupKey, Group)>(), 88);
    }

    /// Group data is saved with the state (postcard) and shown as JSON: the
    /// bytes of each kind are pinned, so that a change of its layout in
    /// memory cannot change a format that snapshots and backups hold.
    #[test]
    fn group_data_formats_are_pinned() {
        let kinds = every_kind();
        let bytes: Vec<String> = kinds
            .iter()
            .map(|d| {
                postcard::to_stdvec(d)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let json: Vec<String> = kinds
            .iter()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .collect();
        assert_eq!(
            bytes,
            [
                "000202020604",
                "01010831302e302e302e310a06",
                "02010e0108",
                "03120a010a6167656e742e6e616d65067765622d3031",
                "04160c010a6c6f672e736f757263650266771a1c1e2022",
                "05241301027031",
            ]
        );
        assert_eq!(
            json,
            [
                r#"{"Count":[[1,2],[3,4]]}"#,
                r#"{"Distinct":{"10.0.0.1":[5,6]}}"#,
                r#"{"Sequence":{"next":1,"start_ms":7,"evidence":[8]}}"#,
                r#"{"Seen":{"last_ms":9,"last_id":10,"key":[["agent.name","web-01"]]}}"#,
                r#"{"Usual":{"last_ms":11,"last_id":12,"key":[["log.source","fw"]],"first_ms":13,"period":14,"longest_ms":15,"before_ms":16,"due_ms":17}}"#,
                r#"{"Start":{"start_ms":18,"first":19,"done":["p1"]}}"#,
            ]
        );
        for (d, b) in kinds.iter().zip(&bytes) {
            let raw: Vec<u8> = (0..b.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&b[i..i + 2], 16).ok())
                .collect();
            assert_eq!(
                postcard::from_bytes::<GroupData>(&raw).ok().as_ref(),
                Some(d)
            );
            assert_eq!(
                serde_json::from_str::<GroupData>(&serde_json::to_string(d).unwrap_or_default())
                    .ok()
                    .as_ref(),
                Some(d)
            );
        }
    }
}
