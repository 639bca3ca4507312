//! The decisions a ledger remembers by key: the most recent ones only, so
//! that what a partition's owner holds is bounded by what is live, not by
//! the SKU's history (a drop of a million buyers).
//!
//! Forgetting is safe because the store is the authority: a key decided
//! before what is remembered is refused by the store's one-decision-per-key
//! constraint, and the processor then learns its recorded decision and
//! decides the batch again. Memory only saves that round trip, for the
//! repeats that matter most: a buyer's retry seconds after the first press.
//!
//! Must not count anything: what a buyer has won is the ledger's, kept for
//! every winner (bounded by the stock).

use std::collections::HashMap as StdHashMap;
use std::mem;

use crate::domain::IdempotencyKey;
use crate::ledger::Decision;

/// Hashed like the ledger's other maps (see `ledger`).
type HashMap<K, V> = StdHashMap<K, V, foldhash::quality::RandomState>;

/// Decisions remembered per generation. Two generations are kept, so a
/// decision is remembered for at least this many later ones: at a hot
/// drop's pace (tens of thousands a second) longer than a client waits
/// before it retries, at about 25 MiB per SKU at most.
pub const REMEMBERED_PER_GENERATION: usize = 50_000;

/// Two generations of decisions by key: when the current one is full, it
/// becomes the previous one and the previous one is forgotten. Decisions
/// learned from the store are held apart until the batch that needed them
/// is applied: remembering others must not forget them before that batch
/// is decided again, or a batch of many old keys would never settle.
#[derive(Debug, Clone)]
pub(crate) struct RecentDecisions {
    current: HashMap<IdempotencyKey, Decision>,
    previous: HashMap<IdempotencyKey, Decision>,
    learned: HashMap<IdempotencyKey, Decision>,
    generation_len: usize,
    /// A generation was dropped: some decision is no longer remembered.
    forgot_any: bool,
}

impl RecentDecisions {
    pub fn new(generation_len: usize) -> Self {
        Self {
            current: HashMap::default(),
            previous: HashMap::default(),
            learned: HashMap::default(),
            generation_len: generation_len.max(1),
            forgot_any: false,
        }
    }

    pub fn get(&self, key: &IdempotencyKey) -> Option<&Decision> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .or_else(|| self.learned.get(key))
    }

    /// Every decision inserted so far, unless a generation was forgotten.
    pub fn all(&self) -> Option<impl Iterator<Item = &Decision>> {
        let remembered = self.current.values().chain(self.previous.values());
        (!self.forgot_any).then(|| remembered.chain(self.learned.values()))
    }

    /// Holds a decision learned from the store until [`Self::settle`].
    pub fn learn(&mut self, decision: Decision) {
        self.learned.insert(decision.key.clone(), decision);
    }

    /// The batch that needed what was learned is applied: learned decisions
    /// are remembered like any other from now on. Holds at most one batch.
    pub fn settle(&mut self) {
        let learned = mem::take(&mut self.learned);
        for decision in learned.into_values() {
            self.insert(decision);
        }
    }

    pub fn insert(&mut self, decision: Decision) {
        if self.current.len() >= self.generation_len {
            self.forgot_any |= !self.previous.is_empty();
            // The previous generation's allocation is reused for the next.
            mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(decision.key.clone(), decision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Outcome, Quantity, UserId};

    fn decision(n: u64) -> Decision {
        Decision {
            seq: n,
            key: IdempotencyKey::parse(format!("k{n}")).expect("key"),
            user_id: UserId::parse("u").expect("user"),
            quantity: Quantity::ONE,
            outcome: Outcome::SoldOut,
            order_id: None,
        }
    }

    #[test]
    fn a_decision_is_remembered_for_at_least_a_generation_and_at_most_two() {
        let mut recent = RecentDecisions::new(3);
        for n in 1..=7 {
            recent.insert(decision(n));
        }
        // Generations: [1 2 3] [4 5 6] [7]: the first is forgotten.
        let remembered: Vec<u64> = (1..=7)
            .filter(|&n| recent.get(&decision(n).key).is_some())
            .collect();
        assert_eq!(remembered, [4, 5, 6, 7]);
        assert_eq!(recent.get(&decision(5).key), Some(&decision(5)));
    }

    #[test]
    fn all_is_every_decision_until_a_generation_is_forgotten() {
        let mut recent = RecentDecisions::new(3);
        for n in 1..=6 {
            recent.insert(decision(n));
        }
        let mut all: Vec<u64> = recent
            .all()
            .expect("nothing forgotten")
            .map(|d| d.seq)
            .collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3, 4, 5, 6]);
        recent.insert(decision(7));
        assert!(recent.all().is_none(), "1 to 3 were forgotten");
    }

    #[test]
    fn learned_decisions_outlive_any_number_of_others_until_settled() {
        let mut recent = RecentDecisions::new(1);
        for n in 1..=3 {
            recent.learn(decision(n));
        }
        for n in 4..=9 {
            recent.insert(decision(n));
        }
        assert!((1..=3).all(|n| recent.get(&decision(n).key).is_some()));
        recent.settle();
        // Settled, they age like the rest: [.. 3] then [8] [9].
        recent.insert(decision(8));
        recent.insert(decision(9));
        assert!((1..=3).all(|n| recent.get(&decision(n).key).is_none()));
        assert_eq!(recent.get(&decision(9).key), Some(&decision(9)));
    }
}
