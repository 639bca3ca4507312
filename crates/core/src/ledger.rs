//! The per-SKU ledger: decides buy intents in stream order, in memory.
//!
//! Deciding is split in two so that nothing changes before the database has
//! it: [`Ledger::decide`] reads the ledger and returns a [`BatchPlan`];
//! [`Ledger::apply`] folds the plan in once its transaction has committed. If
//! the commit fails, the processor throws the ledger away and reloads it.
//!
//! Must not wait on or touch anything outside its own state: decisions are
//! returned as data, and a plan made from a stale state is a bug it refuses.

use std::collections::HashMap as StdHashMap;

/// The ledger's maps hash every key of every intent: foldhash is several
/// times cheaper than the standard SipHash on short strings, and its
/// per-map random seed keeps buyer-chosen keys from being aimed at collisions.
type HashMap<K, V> = StdHashMap<K, V, foldhash::quality::RandomState>;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{IdempotencyKey, Outcome, PerUserLimit, Quantity, Sku, UserId};

/// Namespace of the SKU half of order ids (see [`order_id`]).
const ORDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c2a_8f4e_4b7a_9c39_2f0e_d7a4_1b55);

/// A buy intent as read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The intent's place in line: its message's stream sequence and its
    /// slot in the message ([`crate::wire::intent_seq`]).
    pub seq: u64,
    pub key: IdempotencyKey,
    pub user_id: UserId,
    pub quantity: Quantity,
}

/// The one decision recorded for an (SKU, key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub seq: u64,
    pub key: IdempotencyKey,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub outcome: Outcome,
    /// Set exactly when `outcome` is `Won`.
    pub order_id: Option<Uuid>,
}

/// Everything a ledger is rebuilt from; loaded from the store.
#[derive(Debug, Clone)]
pub struct LedgerState {
    pub sku: Sku,
    pub remaining: u32,
    pub per_user_limit: PerUserLimit,
    /// Highest place in line (`seq`) whose intent is reflected in the store.
    pub applied_seq: u64,
    /// Every decision recorded for this SKU.
    pub decisions: Vec<Decision>,
}

/// What deciding one batch produced: effects as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Decisions taken now, in stream order; to be inserted.
    pub decided: Vec<Decision>,
    /// Recorded decisions for keys that came again; re-announced, not stored.
    pub repeated: Vec<Decision>,
    /// The ledger's applied sequence the plan was made from; the batch
    /// transaction refuses to commit unless the store still says the same.
    pub applied_seq_before: u64,
    /// The applied sequence once the plan is committed.
    pub applied_seq_after: u64,
    /// Units won in this batch.
    pub won_units: u32,
}

impl BatchPlan {
    /// True when committing the plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.applied_seq_after == self.applied_seq_before
    }
}

/// One SKU's decision state. Only the partition's owner holds one.
#[derive(Debug, Clone)]
pub struct Ledger {
    sku: Sku,
    remaining: u32,
    per_user_limit: PerUserLimit,
    applied_seq: u64,
    won_by_user: HashMap<UserId, u32>,
    decided: HashMap<IdempotencyKey, Decision>,
}

impl Ledger {
    pub fn new(state: LedgerState) -> Self {
        let mut ledger = Ledger {
            sku: state.sku,
            remaining: state.remaining,
            per_user_limit: state.per_user_limit,
            applied_seq: state.applied_seq,
            won_by_user: HashMap::default(),
            decided: HashMap::with_capacity_and_hasher(state.decisions.len(), Default::default()),
        };
        for decision in state.decisions {
            ledger.record(decision);
        }
        ledger
    }

    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    pub fn per_user_limit(&self) -> PerUserLimit {
        self.per_user_limit
    }

    /// Units `user` has won so far.
    pub fn won_by(&self, user: &UserId) -> u32 {
        self.won_by_user.get(user).copied().unwrap_or(0)
    }

    /// The recorded decision for `key`, if any.
    pub fn decision_for(&self, key: &IdempotencyKey) -> Option<&Decision> {
        self.decided.get(key)
    }

    /// Decides `intents` (in the order given, which must be stream order) on
    /// top of the ledger, without changing it.
    ///
    /// - an intent at or below the applied sequence is a replay and is skipped;
    /// - a key already decided (before or earlier in the batch) gets its
    ///   recorded decision again and changes nothing;
    /// - otherwise: `limit_reached` if the user would exceed the per-user limit,
    ///   else `sold_out` if fewer units remain than asked, else `won`.
    pub fn decide(&self, intents: &[Intent]) -> BatchPlan {
        let mut remaining = self.remaining;
        let mut last_seq = self.applied_seq;
        let mut won_in_batch: HashMap<&UserId, u32> = HashMap::default();
        let mut key_in_batch: HashMap<&IdempotencyKey, usize> =
            HashMap::with_capacity_and_hasher(intents.len(), Default::default());
        let mut decided: Vec<Decision> = Vec::with_capacity(intents.len());
        let mut repeated = Vec::new();
        let mut won_units = 0;

        for intent in intents {
            if intent.seq <= last_seq {
                continue;
            }
            last_seq = intent.seq;

            let earlier = self
                .decided
                .get(&intent.key)
                .or_else(|| key_in_batch.get(&intent.key).map(|&i| &decided[i]));
            if let Some(earlier) = earlier {
                repeated.push(earlier.clone());
                continue;
            }

            let wanted = intent.quantity.get();
            let user_total = self.won_by(&intent.user_id)
                + won_in_batch.get(&intent.user_id).copied().unwrap_or(0);
            let outcome = if user_total + wanted > self.per_user_limit.get() {
                Outcome::LimitReached
            } else if wanted > remaining {
                Outcome::SoldOut
            } else {
                remaining -= wanted;
                won_units += wanted;
                *won_in_batch.entry(&intent.user_id).or_insert(0) += wanted;
                Outcome::Won
            };
            key_in_batch.insert(&intent.key, decided.len());
            decided.push(Decision {
                seq: intent.seq,
                key: intent.key.clone(),
                user_id: intent.user_id.clone(),
                quantity: intent.quantity,
                outcome,
                order_id: (outcome == Outcome::Won).then(|| order_id(&self.sku, intent.seq)),
            });
        }

        BatchPlan {
            decided,
            repeated,
            applied_seq_before: self.applied_seq,
            applied_seq_after: last_seq,
            won_units,
        }
    }

    /// Folds a committed plan into the ledger.
    ///
    /// # Panics
    /// If the plan was not made from this ledger's current state: that would
    /// be a processor bug, and continuing could oversell.
    pub fn apply(&mut self, plan: &BatchPlan) {
        assert_eq!(
            plan.applied_seq_before, self.applied_seq,
            "plan for {} made from applied_seq {} applied at {}",
            self.sku, plan.applied_seq_before, self.applied_seq
        );
        assert!(
            plan.won_units <= self.remaining,
            "plan for {} wins {} units with {} remaining",
            self.sku,
            plan.won_units,
            self.remaining
        );
        for decision in &plan.decided {
            self.record(decision.clone());
        }
        self.applied_seq = plan.applied_seq_after;
        self.remaining -= plan.won_units;
    }

    /// Adds a recorded decision's effect on users and keys (not on stock:
    /// `remaining` comes from the store, or from the plan in `apply`).
    fn record(&mut self, decision: Decision) {
        if decision.outcome == Outcome::Won {
            *self
                .won_by_user
                .entry(decision.user_id.clone())
                .or_insert(0) += decision.quantity.get();
        }
        self.decided.insert(decision.key.clone(), decision);
    }
}

/// The order id of the intent at `seq` of `sku`, should it win: the same
/// intent always yields the same order id, on any processor, after any
/// replay.
///
/// A UUIDv8: the first half is a hash of the SKU (the first 8 bytes of a
/// UUIDv5 of it), the second half is `seq`, big-endian. So a SKU's order ids
/// increase with its places in line, and each commit adds its winners at the
/// right edge of the order-id index, as it does to the other indexes. Not a
/// hash of the whole (a UUIDv5 of `<sku>/<seq>`): that scatters order ids
/// over the index, so every win dirties a random page, and Postgres spent
/// about twice as long per winner when measured. The version and variant bits take the top two
/// bits of `seq`, which a place in line never reaches (it stays below 2^62).
pub fn order_id(sku: &Sku, seq: u64) -> Uuid {
    let sku_hash = Uuid::new_v5(&ORDER_ID_NAMESPACE, sku.as_str().as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&sku_hash.as_bytes()[..8]);
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    Uuid::new_v8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_fixed_by_the_intent_and_follow_the_line_within_a_sku() {
        let a = Sku::parse("AJ1-chicago").unwrap();
        let b = Sku::parse("AJ1-bred").unwrap();
        assert_eq!(order_id(&a, 7), order_id(&a, 7));
        assert_eq!(order_id(&a, 7).get_version_num(), 8);
        // Increasing with the place in line, as Postgres compares uuids
        // (bytewise), up to the largest place a stream can hand out.
        let places = [1, 2, 1_023, 1_024, 1 << 40, (1 << 62) - 1];
        for pair in places.windows(2) {
            assert!(order_id(&a, pair[0]) < order_id(&a, pair[1]), "{pair:?}");
        }
        assert_ne!(order_id(&a, 7), order_id(&b, 7));
        assert_ne!(
            order_id(&a, 7).as_bytes()[..8],
            order_id(&b, 7).as_bytes()[..8]
        );
    }
}
