//! Which byte pairs a text holds, in 256 slots: a cheap first test of the
//! `when: contains` texts of many decoders at once.
//!
//! A line of a program no decoder names (cron, systemd, postfix), or of one
//! whose decoders come late in load order (sshd), is tested against the
//! `contains` texts of every decoder that names no program, some thirty
//! searches. A text can only contain a needle if it holds every byte pair
//! of the needle: reading the line's pairs once rules most needles out with
//! a few lookups, and only the others are searched for. Pairs share slots,
//! so a needle may pass without being there; it is then searched for, and
//! the answer is the same as without this test.

/// The byte pairs of a text, each hashed to one of 256 slots: one byte per
/// slot, so that reading a pair is one store, with no bit to merge into a
/// word already written (half the instructions per byte of a 256-bit set).
#[derive(Clone)]
pub(crate) struct Pairs([bool; 256]);

impl Pairs {
    /// The pairs of `text` (none for a text shorter than two bytes).
    pub(crate) fn of(text: &[u8]) -> Pairs {
        let mut seen = [false; 256];
        for w in text.windows(2) {
            seen[slot(w[0], w[1])] = true;
        }
        Pairs(seen)
    }

    /// Whether every pair of `needle` is among these: false means that the
    /// text these came from cannot contain the needle.
    #[inline]
    pub(crate) fn may_contain(&self, needle: &NeedlePairs) -> bool {
        needle.0.iter().all(|&at| self.0[usize::from(at)])
    }
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairs({} of 256)", self.0.iter().filter(|b| **b).count())
    }
}

/// The slots of a needle's pairs (see [`Pairs`]), each once, in the order
/// they first occur: a text that lacks the first is ruled out at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NeedlePairs(Box<[u8]>);

impl NeedlePairs {
    pub(crate) fn of(needle: &[u8]) -> NeedlePairs {
        let mut slots = Vec::new();
        for w in needle.windows(2) {
            // `slot` is below 256 (the top 8 bits of a u32).
            let at = slot(w[0], w[1]) as u8;
            if !slots.contains(&at) {
                slots.push(at);
            }
        }
        NeedlePairs(slots.into_boxed_slice())
    }
}

/// Which candidates of a list (up to [`Gate::MAX`]) a text may pass, told
/// from its pairs and first byte, without reading the candidates' own
/// conditions.
///
/// Most lines are turned down by every candidate of their level but one or
/// two; testing thirty decoders' conditions one after the other was most
/// of what such a line cost. A candidate whose `contains` texts all lack a
/// pair of the line, or whose `starts_with` texts all begin with another
/// byte, cannot accept it: the gate leaves it out. The others are tested
/// in full, in list order, so the first that accepts is the same.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    /// (slot of a `contains` text's first pair, candidate): the text may
    /// be there only if that pair is.
    firsts: Vec<(u8, u8)>,
    /// Candidates that no `contains` text rules out: those without
    /// `contains`, and those with a text too short to have a pair.
    free_contains: u64,
    /// For each byte, the candidates with a `starts_with` text beginning
    /// with it.
    starting: Vec<(u8, u8)>,
    /// Candidates that no first byte rules out: those without
    /// `starts_with`, and those with an empty text among them.
    free_start: u64,
}

impl Gate {
    /// Most candidates a gate tells apart (one bit each).
    pub(crate) const MAX: usize = 64;

    /// The gate of candidates with these `(contains, starts_with)` texts,
    /// in list order; `None` for a list too long.
    pub(crate) fn new<'a>(
        candidates: impl ExactSizeIterator<Item = (Vec<&'a [u8]>, Vec<&'a [u8]>)>,
    ) -> Option<Gate> {
        if candidates.len() > Gate::MAX {
            return None;
        }
        let mut gate = Gate::default();
        for (at, (contains, starts)) in candidates.enumerate() {
            let bit = 1u64 << at;
            let at = at as u8;
            if contains.is_empty() || contains.iter().any(|t| t.len() < 2) {
                gate.free_contains |= bit;
            } else {
                for t in contains {
                    gate.firsts.push((slot(t[0], t[1]) as u8, at));
                }
            }
            if starts.is_empty() || starts.iter().any(|t| t.is_empty()) {
                gate.free_start |= bit;
            } else {
                for t in starts {
                    gate.starting.push((t[0], at));
                }
            }
        }
        Some(gate)
    }

    /// The candidates (one bit each, in list order) that `text`, whose
    /// pairs are `pairs`, may pass.
    #[inline]
    pub(crate) fn open(&self, text: &[u8], pairs: &Pairs) -> u64 {
        let Some(&first) = text.first() else {
            // An empty text: no byte to tell by.
            return u64::MAX;
        };
        let mut contains = self.free_contains;
        for &(slot, at) in &self.firsts {
            if pairs.0[usize::from(slot)] {
                contains |= 1 << at;
            }
        }
        let mut start = self.free_start;
        for &(b, at) in &self.starting {
            if b == first {
                start |= 1 << at;
            }
        }
        contains & start
    }
}

/// The slot of the pair `(a, b)` (multiplicative hashing, top 8 bits).
#[inline]
fn slot(a: u8, b: u8) -> usize {
    ((u32::from(a) << 8 | u32::from(b)).wrapping_mul(0x9E37_79B1) >> 24) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate the gate shuts could not accept the text: one of its
    /// conditions fails. Checked on every text of a pool against every
    /// candidate.
    #[test]
    fn the_gate_shuts_only_candidates_that_turn_the_text_down() {
        let candidates: [(&[&str], &[&str]); 8] = [
            (&["%ASA-", "%%"], &[]),
            (&["SRC="], &["Mar", "Apr"]),
            (&[","], &[]),
            (&[], &[]),
            (&[], &["Failed ", "Accepted "]),
            (&["in:"], &[""]),
            (&[""], &["x"]),
            (&["DESCR=", "logid="], &["["]),
        ];
        let gate = Gate::new(candidates.iter().map(|(c, s)| {
            (
                c.iter().map(|t| t.as_bytes()).collect(),
                s.iter().map(|t| t.as_bytes()).collect(),
            )
        }))
        .expect("a gate");
        let texts = [
            "",
            "%%ASA-4: x",
            "Mar 1 SRC=1.2.3.4",
            "a,b",
            "Failed password",
            "Accepted in: x",
            "x",
            "[A-D-1] DESCR=\"y\"",
            "nothing here",
        ];
        for text in texts {
            let open = gate.open(text.as_bytes(), &Pairs::of(text.as_bytes()));
            for (at, (contains, starts)) in candidates.iter().enumerate() {
                let accepts = (contains.is_empty() || contains.iter().any(|c| text.contains(c)))
                    && (starts.is_empty() || starts.iter().any(|s| text.starts_with(s)));
                if accepts {
                    assert!(open & (1 << at) != 0, "{text:?} shut out candidate {at}");
                }
            }
        }
        // It does shut some: the line of no decoder passes only the free.
        let open = gate.open(b"nothing here", &Pairs::of(b"nothing here"));
        assert_eq!(open, 1 << 2 | 1 << 3 | 1 << 5);
        assert!(Gate::new((0..65).map(|_| (Vec::new(), Vec::new()))).is_none());
    }

    #[test]
    fn a_text_may_contain_what_it_contains_and_not_what_it_lacks_a_pair_of() {
        let line = Pairs::of(b"Accepted publickey for alice from 198.51.100.4 port 40022 ssh2");
        for needle in ["Accepted", "alice from", "ssh2", " port ", "1"] {
            assert!(
                line.may_contain(&NeedlePairs::of(needle.as_bytes())),
                "{needle}"
            );
        }
        // Every pair of these is absent from the line (no slot collides).
        for needle in ["%ASA-", "logid=", "[junos@", "<EPOevent>"] {
            assert!(
                !line.may_contain(&NeedlePairs::of(needle.as_bytes())),
                "{needle}"
            );
        }
        // One byte has no pair: it is never ruled out.
        assert!(Pairs::of(b"").may_contain(&NeedlePairs::of(b",")));
    }
}
