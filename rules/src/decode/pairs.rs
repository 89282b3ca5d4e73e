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

/// The slot of the pair `(a, b)` (multiplicative hashing, top 8 bits).
#[inline]
fn slot(a: u8, b: u8) -> usize {
    ((u32::from(a) << 8 | u32::from(b)).wrapping_mul(0x9E37_79B1) >> 24) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

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
