//! Patterns that read a line in one way only, matched without the regex
//! engine.
//!
//! Most decoder patterns are a line's fixed words with fields between them:
//! `^(?P<verdict>Failed|Accepted) (?P<method>\S+) for (?P<user>\S*) from
//! (?P<ip>\S+) port (?P<port>\d+)`. Each field is a run of one class of
//! characters that the text after it cannot start with, so there is only one
//! place it can end: its last character of the class. Such a pattern is read
//! here from left to right, comparing the words and scanning the runs, with
//! no automaton: for the pattern above, about a tenth of the instructions the
//! regex engine spends to find the same groups.
//!
//! [`Plain::compile`] takes a pattern only when it can prove that reading
//! it this way gives what the regex gives (the same match or none, the
//! same groups): it is anchored at the start (`^`), or it starts with a
//! word (after `\b`, maybe), found in the line with a substring search,
//! the first place where the rest matches being the regex's match; it is
//! made of words,
//! alternatives of words none of which begins another, single characters
//! of a class, greedy runs of a class (`+`, `*`) whose class holds no
//! character the rest of the pattern could start with there, parts
//! repeated an exact number of times (`\d{4}`) or at least so many times
//! (`\d{2,}`, then a run), greedy optional parts (`?`, tried first with
//! the part, then without, as the regex prefers) that what follows them
//! cannot start as they do, groups and the end (`$`). So an anchored
//! reading never goes back more than a step, and its time grows with the
//! line as the regex engine's does; a search that would read the line
//! over and over gives up and leaves it to the regex engine. Any other pattern (lazy `*?`, a count within a range `{2,4}`,
//! alternatives of more than words, a run the text after it could
//! continue, ...) goes to the regex engine, as before.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Groups a plain pattern may number (the whole match is group 0); a
/// pattern with more goes to the regex engine.
pub(crate) const MAX_GROUPS: usize = 16;

/// What a search may read (characters of runs and words compared, over
/// all the places it tries) before it leaves the line to the regex engine:
/// this many times the line's length, plus [`SEARCH_BUDGET`].
const SEARCH_BUDGET_PER_BYTE: usize = 8;
const SEARCH_BUDGET: usize = 4096;

/// The most times a counted repetition (`{4}`) is written out.
const MAX_COUNT: u32 = 64;

/// Where each group matched: `(start, end)` byte offsets, `None` when the
/// group took no part in the match.
pub(crate) type Slots = [Option<(usize, usize)>; MAX_GROUPS];

/// A pattern that reads a line in one way only (see the module's text).
#[derive(Debug, Clone)]
pub(crate) struct Plain {
    insts: Vec<Inst>,
    /// Where a match may start: at the start of the text (`^`), or at
    /// each place the pattern's first word is found.
    start: Start,
}

#[derive(Debug, Clone)]
enum Start {
    Anchored,
    /// At each place `word` is found (the leftmost that matches wins),
    /// there only when a word boundary is there too with `boundary`.
    Search {
        word: Box<memchr::memmem::Finder<'static>>,
        boundary: Option<Boundary>,
    },
}

/// `\b`: Unicode word characters, or with `(?-u:\b)` ASCII ones.
#[derive(Debug, Clone, Copy)]
enum Boundary {
    Unicode,
    Ascii,
}

impl Boundary {
    fn is_word(self, c: char) -> bool {
        match self {
            // The regex crate's `\w`, which its `\b` goes by.
            Boundary::Unicode => regex_syntax::is_word_character(c),
            Boundary::Ascii => c.is_ascii_alphanumeric() || c == '_',
        }
    }

    /// Whether `at` in `text` lies between a word character and another.
    fn at(self, text: &str, at: usize) -> bool {
        let before = text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| self.is_word(c));
        let after = text[at..].chars().next().is_some_and(|c| self.is_word(c));
        before != after
    }
}

#[derive(Debug, Clone)]
enum Inst {
    /// These bytes.
    Word(Box<[u8]>),
    /// One of these words (none begins another, so at most one can match).
    Either(Vec<Box<[u8]>>),
    /// One character of the class.
    One(CharClass),
    /// As many characters of the class as there are; at least one with
    /// `at_least_one`.
    Run {
        class: CharClass,
        at_least_one: bool,
    },
    /// A group starts (`Open`) or ends (`Close`) here.
    Open(usize),
    Close(usize),
    /// These, or nothing: tried with them first.
    Maybe(Vec<Inst>),
    /// The end of the text.
    End,
}

/// A set of characters: ranges, and what a line's byte tells at once.
#[derive(Debug, Clone)]
struct CharClass {
    /// For each byte: [`IN`] or [`OUT`] for an ASCII character,
    /// [`DECODE`] for the first byte of a longer one (looked up in
    /// `ranges`). A table rather than bits: one load per byte of a run.
    bytes: Box<[u8; 256]>,
    ranges: Vec<(char, char)>,
}

const OUT: u8 = 0;
const IN: u8 = 1;
const DECODE: u8 = 2;

impl Default for CharClass {
    fn default() -> CharClass {
        CharClass::from_ranges(Vec::new())
    }
}

impl CharClass {
    fn from_ranges(mut ranges: Vec<(char, char)>) -> CharClass {
        ranges.sort_unstable();
        let mut bytes = Box::new([OUT; 256]);
        bytes[128..].fill(DECODE);
        for &(a, b) in &ranges {
            let (a, b) = (u32::from(a), u32::from(b).min(127));
            for c in a..=b {
                bytes[c as usize] = IN;
            }
        }
        CharClass { bytes, ranges }
    }

    fn holds(&self, c: char) -> bool {
        if c.is_ascii() {
            return self.bytes[c as usize] == IN;
        }
        let at = self.ranges.partition_point(|&(_, end)| end < c);
        self.ranges.get(at).is_some_and(|&(start, _)| start <= c)
    }

    fn meets(&self, other: &CharClass) -> bool {
        self.ranges
            .iter()
            .any(|&(a, b)| other.ranges.iter().any(|&(c, d)| a <= d && c <= b))
    }

    fn add(&mut self, other: &CharClass) {
        let mut ranges = std::mem::take(&mut self.ranges);
        ranges.extend_from_slice(&other.ranges);
        *self = CharClass::from_ranges(ranges);
    }

    fn of_char(c: char) -> CharClass {
        CharClass::from_ranges(vec![(c, c)])
    }
}

/// The first character of a word (words are whole characters of UTF-8).
fn first_char(word: &[u8]) -> Option<char> {
    std::str::from_utf8(word).ok()?.chars().next()
}

impl Plain {
    /// The plain reading of a parsed pattern, when it has one that is sure
    /// to agree with the regex (see the module's text).
    pub(crate) fn compile(hir: &Hir) -> Option<Plain> {
        let parts = match hir.kind() {
            HirKind::Concat(parts) => parts.as_slice(),
            _ => std::slice::from_ref(hir),
        };
        let (rest, anchored, boundary) = match parts.first().map(Hir::kind) {
            Some(HirKind::Look(Look::Start)) => (&parts[1..], true, None),
            Some(HirKind::Look(Look::WordUnicode)) => (&parts[1..], false, Some(Boundary::Unicode)),
            Some(HirKind::Look(Look::WordAscii)) => (&parts[1..], false, Some(Boundary::Ascii)),
            _ => (parts, false, None),
        };
        let mut insts = Vec::new();
        for h in rest {
            flatten(h, &mut insts)?;
        }
        if !one_way(&insts, &CharClass::default()) {
            return None;
        }
        let start = if anchored {
            Start::Anchored
        } else {
            // Unanchored: the first thing matched must be a word, whose
            // places in the line are where a match can start.
            match insts.iter().find(|i| !matches!(i, Inst::Open(_))) {
                Some(Inst::Word(w)) if !w.is_empty() => Start::Search {
                    word: Box::new(memchr::memmem::Finder::new(w).into_owned()),
                    boundary,
                },
                _ => return None,
            }
        };
        Some(Plain { insts, start })
    }

    /// Matches `text`; on a match, fills `slots` (group 0 is the whole
    /// match) and returns `Some(true)`; `Some(false)` when nothing matches.
    /// `None` when a search gave up: the word is at so many places of the
    /// line, each read far before failing, that going on could cost more
    /// than the regex engine, whose time grows only with the line; the
    /// caller asks the regex then.
    pub(crate) fn captures(&self, text: &str, slots: &mut Slots) -> Option<bool> {
        let whole = Rest {
            insts: &self.insts,
            then: None,
        };
        let mut budget = usize::MAX;
        let try_at = |at: usize, slots: &mut Slots, budget: &mut usize| {
            *slots = [None; MAX_GROUPS];
            let end = run(text, at, &whole, slots, budget);
            if let Some(end) = end {
                slots[0] = Some((at, end));
            }
            end.is_some()
        };
        match &self.start {
            Start::Anchored => Some(try_at(0, slots, &mut budget)),
            Start::Search { word, boundary } => {
                let bytes = text.as_bytes();
                budget = SEARCH_BUDGET_PER_BYTE * bytes.len() + SEARCH_BUDGET;
                let mut from = 0;
                // Every place, overlapping ones too: `aa` in `aaa` is at 0
                // and at 1. A word starts with a whole character, so each
                // place found is on a character boundary.
                while let Some(found) = word.find(&bytes[from..]) {
                    let at = from + found;
                    if boundary.is_none_or(|b| b.at(text, at)) && try_at(at, slots, &mut budget) {
                        return Some(true);
                    }
                    if budget == 0 {
                        return None;
                    }
                    from = at + 1;
                }
                Some(false)
            }
        }
    }
}

/// Appends the instructions of `h`; `None` when it is not plain.
fn flatten(h: &Hir, out: &mut Vec<Inst>) -> Option<()> {
    match h.kind() {
        HirKind::Empty => {}
        HirKind::Literal(lit) => match out.last_mut() {
            Some(Inst::Word(w)) => {
                let mut joined = w.to_vec();
                joined.extend_from_slice(&lit.0);
                *w = joined.into_boxed_slice();
            }
            _ => out.push(Inst::Word(lit.0.clone())),
        },
        HirKind::Class(c) => out.push(Inst::One(class(c)?)),
        HirKind::Concat(hs) => {
            for h in hs {
                flatten(h, out)?;
            }
        }
        HirKind::Capture(c) => {
            let index = c.index as usize;
            if index >= MAX_GROUPS {
                return None;
            }
            out.push(Inst::Open(index));
            flatten(&c.sub, out)?;
            out.push(Inst::Close(index));
        }
        HirKind::Alternation(hs) => {
            let mut words: Vec<Box<[u8]>> = Vec::new();
            for h in hs {
                let HirKind::Literal(lit) = h.kind() else {
                    return None;
                };
                words.push(lit.0.clone());
            }
            let begins_another = words.iter().enumerate().any(|(i, a)| {
                words
                    .iter()
                    .enumerate()
                    .any(|(j, b)| i != j && b.starts_with(a))
            });
            if begins_another || words.iter().any(|w| w.is_empty()) {
                return None;
            }
            out.push(Inst::Either(words));
        }
        HirKind::Repetition(r) if !r.greedy => return None,
        HirKind::Repetition(r) => match (r.min, r.max, r.sub.kind()) {
            (0 | 1, None, sub) => out.push(Inst::Run {
                class: run_class(sub)?,
                at_least_one: r.min == 1,
            }),
            (0, Some(1), _) => {
                let mut inner = Vec::new();
                flatten(&r.sub, &mut inner)?;
                out.push(Inst::Maybe(inner));
            }
            // `\d{4}`, `[0-9a-f]{32}`: that many times over; `{2,}`: twice,
            // then a run.
            (n @ 2..=MAX_COUNT, max, sub) if max.is_none_or(|m| m == n) => {
                for _ in 0..n {
                    flatten(&r.sub, out)?;
                }
                if max.is_none() {
                    out.push(Inst::Run {
                        class: run_class(sub)?,
                        at_least_one: false,
                    });
                }
            }
            _ => return None,
        },
        HirKind::Look(Look::End) => out.push(Inst::End),
        HirKind::Look(_) => return None,
    }
    Some(())
}

/// The class a run repeats: a class, or one character (`b*`, ` +`).
fn run_class(sub: &HirKind) -> Option<CharClass> {
    match sub {
        HirKind::Class(c) => class(c),
        HirKind::Literal(lit) => {
            let mut chars = std::str::from_utf8(&lit.0).ok()?.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(CharClass::of_char(c)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn class(c: &Class) -> Option<CharClass> {
    match c {
        Class::Unicode(u) => Some(CharClass::from_ranges(
            u.ranges().iter().map(|r| (r.start(), r.end())).collect(),
        )),
        // Byte classes come only with Unicode turned off (`(?-u)`).
        Class::Bytes(_) => None,
    }
}

/// The characters a match of `insts`, then of whatever comes after them
/// (which may start with `after`), can start with.
fn starts(insts: &[Inst], after: &CharClass) -> CharClass {
    let mut set = CharClass::default();
    for (i, inst) in insts.iter().enumerate() {
        match inst {
            Inst::Open(_) | Inst::Close(_) => {}
            Inst::Word(w) => {
                if let Some(c) = first_char(w) {
                    set.add(&CharClass::of_char(c));
                }
                return set;
            }
            Inst::Either(ws) => {
                for c in ws.iter().filter_map(|w| first_char(w)) {
                    set.add(&CharClass::of_char(c));
                }
                return set;
            }
            Inst::One(c)
            | Inst::Run {
                class: c,
                at_least_one: true,
            } => {
                set.add(c);
                return set;
            }
            Inst::Run { class, .. } => set.add(class),
            Inst::Maybe(inner) => {
                let rest = starts(&insts[i + 1..], after);
                set.add(&starts(inner, &rest));
            }
            // Nothing can follow the end.
            Inst::End => return set,
        }
    }
    set.add(after);
    set
}

/// Whether every run in `insts` (followed by what may start with `after`)
/// has only one place to end: no character of its class can start what
/// follows it.
fn one_way(insts: &[Inst], after: &CharClass) -> bool {
    insts.iter().enumerate().all(|(i, inst)| match inst {
        Inst::Run { class, .. } => !class.meets(&starts(&insts[i + 1..], after)),
        // The part and what follows it start differently, so that once the
        // next character is read only one of the two ways can go on: the
        // reading never goes back more than a step, whatever the line.
        Inst::Maybe(inner) => {
            let rest = starts(&insts[i + 1..], after);
            !starts(inner, &rest).meets(&rest) && one_way(inner, &rest)
        }
        _ => true,
    })
}

/// What is left to match: these instructions, then `then`'s.
struct Rest<'a> {
    insts: &'a [Inst],
    then: Option<&'a Rest<'a>>,
}

/// Matches `rest` at `at`; returns where the match ends. Each word and
/// run takes its length from `budget`; at 0 the reading stops (no match).
fn run(
    text: &str,
    mut at: usize,
    rest: &Rest<'_>,
    slots: &mut Slots,
    budget: &mut usize,
) -> Option<usize> {
    let bytes = text.as_bytes();
    for (i, inst) in rest.insts.iter().enumerate() {
        match inst {
            Inst::Word(w) => {
                spend(budget, w.len())?;
                if !bytes[at..].starts_with(w) {
                    return None;
                }
                at += w.len();
            }
            Inst::Either(ws) => {
                let w = ws.iter().find(|w| bytes[at..].starts_with(w))?;
                at += w.len();
            }
            Inst::One(class) => {
                let c = text[at..].chars().next()?;
                if !class.holds(c) {
                    return None;
                }
                at += c.len_utf8();
            }
            Inst::Run {
                class,
                at_least_one,
            } => {
                let start = at;
                while let Some(&b) = bytes.get(at) {
                    match class.bytes[usize::from(b)] {
                        IN => at += 1,
                        OUT => break,
                        _ => match text[at..].chars().next() {
                            Some(c) if class.holds(c) => at += c.len_utf8(),
                            _ => break,
                        },
                    }
                }
                spend(budget, at - start)?;
                if *at_least_one && at == start {
                    return None;
                }
            }
            Inst::Open(g) => slots[*g] = Some((at, at)),
            Inst::Close(g) => {
                if let Some((start, _)) = slots[*g] {
                    slots[*g] = Some((start, at));
                }
            }
            Inst::Maybe(inner) => {
                let after = Rest {
                    insts: &rest.insts[i + 1..],
                    then: rest.then,
                };
                let saved = *slots;
                let with = Rest {
                    insts: inner,
                    then: Some(&after),
                };
                if let Some(end) = run(text, at, &with, slots, budget) {
                    return Some(end);
                }
                if *budget == 0 {
                    return None;
                }
                *slots = saved;
                return run(text, at, &after, slots, budget);
            }
            Inst::End => {
                if at != bytes.len() {
                    return None;
                }
            }
        }
    }
    match rest.then {
        Some(then) => run(text, at, then, slots, budget),
        None => Some(at),
    }
}

/// Takes `n` from `budget`; `None`, and the budget at 0, when it has less.
fn spend(budget: &mut usize, n: usize) -> Option<()> {
    match budget.checked_sub(n) {
        Some(left) => {
            *budget = left;
            Some(())
        }
        None => {
            *budget = 0;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pattern: &str) -> Hir {
        regex_syntax::Parser::new().parse(pattern).expect("valid")
    }

    /// The groups `re` finds in `text`.
    fn by_regex(re: &regex::Regex, text: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let caps = re.captures(text)?;
        Some(
            (0..re.captures_len())
                .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
                .collect(),
        )
    }

    /// The same, read plainly.
    fn by_plain(plain: &Plain, groups: usize, text: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let mut slots = [None; MAX_GROUPS];
        plain
            .captures(text, &mut slots)
            .expect("a search of a short text does not give up")
            .then(|| slots[..groups].to_vec())
    }

    fn agree(pattern: &str, texts: &[&str]) {
        let plain = Plain::compile(&parse(pattern))
            .unwrap_or_else(|| panic!("`{pattern}` should be plain"));
        let re = regex::Regex::new(pattern).expect("valid");
        for text in texts {
            assert_eq!(
                by_plain(&plain, re.captures_len(), text),
                by_regex(&re, text),
                "`{pattern}` on {text:?}"
            );
        }
    }

    #[test]
    fn patterns_that_read_one_way_are_plain() {
        for p in [
            r"^(?P<verdict>Failed|Accepted) (?P<method>\S+) for (?P<user>\S*) from (?P<ip>\S+) port (?P<port>\d+)",
            r"^Invalid user (?P<user>\S*) from (?P<ip>\S+)(?: port (?P<port>\d+))?",
            r"^Connection closed by (?:authenticating|invalid) user (?P<user>\S*) (?P<ip>[0-9A-Fa-f:.]+) port (?P<port>\d+)",
            r"^SelfCheck: (?P<status>[^.]*)\.?$",
            r"^(?P<what>\+\+\+ Started|--- Stopped) at ",
            r"^(?P<level>ERROR|WARNING|Error|Warning): (?P<text>.*)$",
            r"^(?P<path>[^:]+): OK$",
            r"^(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}) -> (?P<body>.*)$",
            r"^(?P<path>[^:]+): (?P<signature>[^\s(]+)(?:\((?P<md5>[0-9a-f]{32}):(?P<size>\d+)\))? FOUND$",
            r"^(?P<n>\d{2,}) x",
            // Not anchored, starting with a word.
            r",User: (?P<user>[^,]*)",
            r"<ThreatName>(?P<threat>[^<]*)</ThreatName>",
            r"\bAction=(?P<act>\w+)",
            r"(?-u:\b)date=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2}) ",
        ] {
            assert!(Plain::compile(&parse(p)).is_some(), "{p}");
        }
    }

    #[test]
    fn patterns_with_more_than_one_reading_go_to_the_regex_engine() {
        for p in [
            // Not anchored and not starting with a word: the match may
            // start anywhere.
            r"(?P<user>\S+) from",
            r"\b(?:a|b) x",
            // `\S*` could take `invalid`, or leave it to the next part.
            r"^for (?P<user>\S*)(?:invalid)? from",
            // An optional part that what follows it could start as well:
            // the reading would have to go back to try without it, and
            // with many of them, back and forth without end.
            r"^for (?:invalid user )?(?P<user>\S*) from",
            r"^(?:a)?(?:a)?(?:a)?(?:a)?b",
            // The run could take the `:` the word after it starts with.
            r"^(?P<path>.+): OK$",
            // Lazy repetitions, and counts within a range.
            r"^(?P<a>\S+?) x",
            r"^(?P<a>\d{2,4}) x",
            r"^(?P<a>(?:ab){2,}) x",
            // One word begins another.
            r"^(?P<a>ab|abc) x",
            // Alternatives of more than words (which case-insensitive
            // words are: a class per letter).
            r"^(?:a (?P<x>\S+)|b)",
            r"^(?i)(?P<level>error|warning): ",
            // Two runs, either of which could take the spaces.
            r"^(?P<level>ERROR): *(?P<text>.*)$",
            // Look-arounds other than the two ends.
            r"^(?P<w>\w+)\b",
            // Unicode off: byte classes.
            r"(?-u)^(?P<b>\w+) ",
        ] {
            assert!(Plain::compile(&parse(p)).is_none(), "{p}");
        }
    }

    #[test]
    fn plain_reading_gives_the_regex_groups() {
        agree(
            r"^(?P<verdict>Failed|Accepted) (?P<method>\S+) for (?P<invalid>invalid user )(?P<user>\S*) from (?P<ip>\S+) port (?P<port>\d+)",
            &[
                "Failed password for invalid user admin from 203.0.113.7 port 51234 ssh2",
                "Failed password for invalid user  from 203.0.113.7 port 51234 ssh2",
                "Failed password for root from 203.0.113.7 port 51234 ssh2",
                "Accepted publickey for invalid user ßé from 2001:db8::1 port 22",
                "Accepted publickey for invalid user a from 1.2.3.4 port ",
                "Accepted publickey for invalid user a from 1.2.3.4 port ٣٤",
                "Failed",
                "",
                " Failed password for invalid user a from b port 1",
            ],
        );
        agree(
            r"^Invalid user (?P<user>\S*) from (?P<ip>\S+)(?: port (?P<port>\d+))?",
            &[
                "Invalid user admin from 203.0.113.7 port 51234",
                "Invalid user admin from 203.0.113.7",
                "Invalid user admin from 203.0.113.7 port x",
                "Invalid user admin from 203.0.113.7 port",
                "Invalid user  from 203.0.113.7\u{a0}port 1",
                "Invalid user admin from  port 1",
            ],
        );
        agree(
            r"^SelfCheck: (?P<status>[^.]*)\.?$",
            &[
                "SelfCheck: Database status OK.",
                "SelfCheck: Database status OK",
                "SelfCheck: Database. status OK",
                "SelfCheck: ..",
                "SelfCheck: ",
                "SelfCheck: a\nb.",
            ],
        );
        agree(
            r"^(?P<level>ERROR|WARNING|Error|Warning): (?P<text>.*)$",
            &[
                "ERROR: disk full",
                "Warning:   x",
                "Warning:",
                "Error: ",
                "Error: a\nb",
                "Errors: x",
            ],
        );
        agree(
            r"^(?:x(?P<a>\d+))?(?:y(?P<b>[a-y]+))?z$",
            &[
                "x1y2z", "x1yabz", "yabz", "x12z", "z", "x1yz", "xyz", "x1ya",
            ],
        );
    }

    /// A searched word at every place of a long line, each place read to
    /// the end before failing: the search gives up (the regex engine,
    /// whose time grows only with the line, reads it) instead of taking
    /// time that grows with the square of the line.
    #[test]
    fn a_search_that_would_read_the_line_over_and_over_gives_up() {
        let plain = Plain::compile(&parse("a(?P<x>[^:]*):")).expect("plain");
        let mut slots = [None; MAX_GROUPS];
        let long = "a".repeat(100_000);
        assert_eq!(plain.captures(&long, &mut slots), None);
        // Short lines, or a match found early, are read to the end.
        assert_eq!(plain.captures(&"a".repeat(20), &mut slots), Some(false));
        assert_eq!(plain.captures(&format!("{long}:"), &mut slots), Some(true));
        assert_eq!(slots[1], Some((1, 100_000)));
    }

    /// Every pattern of the shipped decoders (`pattern:` texts and lists).
    fn shipped_patterns() -> Vec<String> {
        fn walk(v: &serde_yaml_ng::Value, out: &mut Vec<String>) {
            match v {
                serde_yaml_ng::Value::Mapping(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v) {
                            (Some("pattern"), serde_yaml_ng::Value::String(p)) => {
                                out.push(p.clone())
                            }
                            (Some("pattern"), serde_yaml_ng::Value::Sequence(ps)) => {
                                out.extend(ps.iter().filter_map(|p| p.as_str().map(String::from)));
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for f in crate::builtin_decoder_sources() {
            let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&f.text).expect("parses");
            walk(&doc, &mut out);
        }
        out
    }

    /// Every line of the shared corpus, and each line's text after every
    /// `": "` and `"] "` (where a syslog message or a log's own record
    /// starts), as the decoders' patterns see them.
    fn corpus_texts() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
        assert!(
            root.is_dir(),
            "the shared corpus is missing at {}",
            root.display()
        );
        let mut texts = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                for line in text.lines() {
                    texts.push(line.to_string());
                    for sep in [": ", "] "] {
                        for (at, _) in line.match_indices(sep) {
                            texts.push(line[at + sep.len()..].to_string());
                        }
                    }
                }
            }
        }
        texts
    }

    /// Each shipped pattern read plainly gives what the regex gives, on
    /// every text of the corpus; the sshd patterns the bench corpus is full
    /// of are among those read plainly.
    #[test]
    fn shipped_patterns_read_plainly_agree_with_the_regex_on_the_corpus() {
        let texts = corpus_texts();
        assert!(texts.len() > 10_000, "only {} texts", texts.len());
        let mut plain_patterns = Vec::new();
        let shipped = shipped_patterns();
        for pattern in shipped.iter().cloned() {
            let Some(plain) = Plain::compile(&parse(&pattern)) else {
                continue;
            };
            let re = regex::Regex::new(&pattern).expect("valid");
            let mut matched = 0;
            for text in &texts {
                let got = by_plain(&plain, re.captures_len(), text);
                matched += usize::from(got.is_some());
                assert_eq!(got, by_regex(&re, text), "`{pattern}` on {text:?}");
            }
            plain_patterns.push((pattern, matched));
        }
        eprintln!(
            "{} of {} shipped patterns are read plainly; {} texts",
            plain_patterns.len(),
            shipped.len(),
            texts.len()
        );
        for lead in [
            "^(?P<verdict>Failed|Accepted) ",
            "^Invalid user ",
            "^Connection closed by ",
        ] {
            assert!(
                plain_patterns.iter().any(|(p, _)| p.starts_with(lead)),
                "no plain pattern starts with {lead}: {plain_patterns:#?}"
            );
        }
        // Not a vacuous check: the plain patterns match corpus lines.
        assert!(
            plain_patterns.iter().filter(|(_, n)| *n > 0).count() >= 5,
            "{plain_patterns:#?}"
        );
    }

    /// A text the plain program `insts` matches, made with `next` from
    /// `chars` (for the classes).
    fn sample(insts: &[Inst], chars: &[char], next: &mut impl FnMut() -> u64, out: &mut String) {
        let pick = |class: &CharClass, next: &mut dyn FnMut() -> u64| {
            let fits: Vec<char> = chars.iter().copied().filter(|c| class.holds(*c)).collect();
            (!fits.is_empty()).then(|| fits[next() as usize % fits.len()])
        };
        for inst in insts {
            match inst {
                Inst::Word(w) => out.push_str(std::str::from_utf8(w).expect("utf-8")),
                Inst::Either(ws) => {
                    let w = &ws[next() as usize % ws.len()];
                    out.push_str(std::str::from_utf8(w).expect("utf-8"));
                }
                Inst::One(class) => out.extend(pick(class, next)),
                Inst::Run {
                    class,
                    at_least_one,
                } => {
                    let n = next() % 4 + u64::from(*at_least_one);
                    for _ in 0..n {
                        out.extend(pick(class, next));
                    }
                }
                Inst::Maybe(inner) => {
                    if next().is_multiple_of(2) {
                        sample(inner, chars, next, out);
                    }
                }
                Inst::Open(_) | Inst::Close(_) | Inst::End => {}
            }
        }
    }

    /// Pieces of text the random texts are made of.
    const PIECES: &[&str] = &[
        "Failed",
        "invalid user ",
        "user",
        "for",
        "from",
        "port",
        ":",
        " ",
        "  ",
        ".",
        "1",
        "42",
        "٣",
        "ß",
        "\u{a0}",
        "\n",
        "a",
        "b",
        "c",
        "x",
        "::1",
        "10.0.0.1",
        "(",
        ")",
        "=",
        "-",
    ];

    /// Compares the plain reading of `pattern` with the regex on `texts`
    /// texts it matches, made from it, two in three of them then changed (a
    /// piece put in, a character taken out or changed, at a random place).
    /// Returns how many matched and how many did not.
    fn compare_on_random_texts(
        pattern: &str,
        plain: &Plain,
        texts: usize,
        next: &mut impl FnMut() -> u64,
    ) -> (usize, usize) {
        let chars: Vec<char> = PIECES
            .iter()
            .flat_map(|p| p.chars())
            .chain(' '..='~')
            .collect();
        let re = regex::Regex::new(pattern).expect("valid");
        let (mut matched, mut missed) = (0, 0);
        for _ in 0..texts {
            let mut text = String::new();
            sample(&plain.insts, &chars, next, &mut text);
            for _ in 0..next() % 3 {
                let at: Vec<usize> = (0..=text.len())
                    .filter(|i| text.is_char_boundary(*i))
                    .collect();
                let i = at[next() as usize % at.len()];
                let piece = PIECES[next() as usize % PIECES.len()];
                match (next() % 3, text[i..].chars().next()) {
                    (0, _) | (_, None) => text.insert_str(i, piece),
                    (1, Some(c)) => text.replace_range(i..i + c.len_utf8(), ""),
                    (_, Some(c)) => text.replace_range(i..i + c.len_utf8(), piece),
                }
            }
            let got = by_plain(plain, re.captures_len(), &text);
            if got.is_some() {
                matched += 1;
            } else {
                missed += 1;
            }
            assert_eq!(got, by_regex(&re, &text), "`{pattern}` on {text:?}");
        }
        (matched, missed)
    }

    /// The plain reading and the regex agree on random texts, matched or
    /// not, for these patterns and every shipped one read plainly.
    #[test]
    fn plain_reading_agrees_with_the_regex_on_random_texts() {
        let patterns = [
            r"^(?P<verdict>Failed|Accepted) (?P<method>\S+) for (?P<user>\S*) from (?P<ip>\S+) port (?P<port>\d+)",
            r"^Invalid user (?P<user>\S*) from (?P<ip>\S+)(?: port (?P<port>\d+))?",
            r"^SelfCheck: (?P<status>[^.]*)\.?$",
            r"^(?P<level>ERROR|WARNING|Error|Warning): (?P<text>.*)$",
            r"^(?:a(?P<x>\d*))?(?:b(?P<y>[ab]+))?c?$",
            r"^(?P<time>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}) -> (?P<body>.*)$",
            r"^(?P<n>\d{2,})(?:x(?P<hex>[0-9a-f]{4}))?:",
            r"aa(?P<b>b*)",
            r"^a +(?P<b>b{2,})c",
            r"\bx(?P<n>\d+)",
            r"(?-u:\b)ß(?P<n>[^ ]*) ",
        ];
        let mut next = crate::decode::tests::xorshift(0x9E37_79B9_7F4A_7C15);
        let shipped: Vec<String> = shipped_patterns()
            .into_iter()
            .filter(|p| Plain::compile(&parse(p)).is_some())
            .collect();
        let all = patterns
            .iter()
            .map(|p| (p.to_string(), 3000))
            .chain(shipped.into_iter().map(|p| (p, 600)));
        for (pattern, texts) in all {
            let plain = Plain::compile(&parse(&pattern))
                .unwrap_or_else(|| panic!("`{pattern}` should be plain"));
            let (matched, missed) = compare_on_random_texts(&pattern, &plain, texts, &mut next);
            // Not vacuous: both outcomes come up for every pattern.
            assert!(
                matched > 0 && missed > 0,
                "`{pattern}`: {matched} matched, {missed} did not"
            );
        }
    }

    /// Random patterns made of what plain patterns are made of (and of
    /// what makes a pattern read in more than one way): whenever one is
    /// taken as plain, its reading agrees with the regex on random texts.
    /// `SOC_PLAIN_ROUNDS` sets how many patterns (3,000).
    #[test]
    fn random_patterns_taken_as_plain_agree_with_the_regex() {
        const PARTS: &[&str] = &[
            "a",
            "ab",
            " ",
            ":",
            "x1",
            "(?:a|b)",
            "(?:ab|c)",
            "(?:ab|a)",
            r"\S+",
            r"\S*",
            r"\d+",
            r"\d*",
            "[^:]+",
            "[^ ]*",
            "[a-c]+",
            "[ \\d]",
            ".",
            ".*",
            r"\d{2}",
            "[ab]{2,}",
            "a?",
            " ?",
            ":?",
            "(?:a )?",
            "(?: x)?",
            r"(?:\d+)?",
            "ß",
            "٣+",
            "a+",
            " *",
            "b{2,}",
        ];
        let mut next = crate::decode::tests::xorshift(0x2545_F491_4F6C_DD1D);
        let (mut tried, mut taken, mut matched, mut missed) = (0, 0, 0, 0);
        let rounds = std::env::var("SOC_PLAIN_ROUNDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3000);
        for _ in 0..rounds {
            let mut pattern = String::from(["^", "^", "", r"\b", r"(?-u:\b)"][next() as usize % 5]);
            if !pattern.starts_with('^') {
                // A search starts at a word.
                pattern.push_str(["a", "ab", "x1", ":", "ß", " "][next() as usize % 6]);
            }
            let mut group = 0;
            for _ in 0..1 + next() % 6 {
                let part = PARTS[next() as usize % PARTS.len()];
                if next().is_multiple_of(2) {
                    group += 1;
                    pattern.push_str(&format!("(?P<g{group}>{part})"));
                } else {
                    pattern.push_str(part);
                }
            }
            if next().is_multiple_of(3) {
                pattern.push('$');
            }
            tried += 1;
            let Some(plain) = Plain::compile(&parse(&pattern)) else {
                continue;
            };
            taken += 1;
            let (m, n) = compare_on_random_texts(&pattern, &plain, 40, &mut next);
            matched += m;
            missed += n;
        }
        eprintln!(
            "{taken} of {tried} random patterns taken as plain; {matched} texts matched, {missed} did not"
        );
        assert!(
            matched > taken && missed > taken,
            "{matched} matched, {missed} did not"
        );
        // Both ways come up: some patterns are taken, some left to the regex.
        assert!(
            taken > tried / 10 && taken < tried,
            "{taken} of {tried} taken as plain"
        );
    }
}
