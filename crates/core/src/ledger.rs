//! The per-SKU ledger: decides the entries of a SKU's line in stream order,
//! in memory: purchases, and the operator's close and restocks, which take
//! effect at their own place in line.
//!
//! Deciding is split in two so that nothing changes before the database has
//! it: [`Ledger::decide`] reads the ledger and returns a [`BatchPlan`];
//! [`Ledger::apply`] folds the plan in once its transaction has committed. If
//! the commit fails, the processor throws the ledger away and reloads it.
//!
//! What it holds is bounded by what is live: every winner (what a buyer has
//! won, bounded by the stock) and the most recent decisions by key
//! (`recent`). A key decided before those comes back from the store
//! ([`Ledger::learn`]) when the store refuses to decide it twice.
//!
//! Must not wait on or touch anything outside its own state: decisions are
//! returned as data, and a plan made from a stale state is a bug it refuses.

use std::collections::{HashMap as StdHashMap, HashSet as StdHashSet};

/// The ledger's maps hash every key of every intent: foldhash is several
/// times cheaper than the standard SipHash on short strings, and its
/// per-map random seed keeps buyer-chosen keys from being aimed at collisions.
type HashMap<K, V> = StdHashMap<K, V, foldhash::quality::RandomState>;
type HashSet<K> = StdHashSet<K, foldhash::quality::RandomState>;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    IdempotencyKey, OperationId, OperatorId, Outcome, PerUserLimit, Quantity, Sku, Stock, UserId,
};
use crate::recent::{RecentDecisions, REMEMBERED_PER_GENERATION};

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

/// An operator's action in a SKU's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Its place in line, as an intent's.
    pub seq: u64,
    /// A retried action carries the same id: it takes effect once.
    pub op: OperationId,
    pub by: OperatorId,
    pub action: Action,
}

/// What an operator's entry does at its place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Every purchase after it is `closed`.
    Close,
    /// Adds units to the stock.
    Restock(Stock),
}

impl Action {
    /// The kind as stored and as written on the wire.
    pub fn kind(self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Restock(_) => "restock",
        }
    }
}

/// One entry of a SKU's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Purchase(Intent),
    Control(Control),
}

impl Entry {
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Purchase(intent) => intent.seq,
            Entry::Control(control) => control.seq,
        }
    }
}

impl From<Intent> for Entry {
    fn from(intent: Intent) -> Self {
        Entry::Purchase(intent)
    }
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
    /// Where the close stands in line, once it has been decided.
    pub closed_seq: Option<u64>,
    /// Recorded decisions the ledger starts from, in line order: at least
    /// every winner (what each buyer has won is counted from them); any
    /// other is optional (it is learned again when its key comes back).
    pub decisions: Vec<Decision>,
    /// `decisions` is every decision recorded for the SKU (nothing was
    /// decided yet but winners): the ledger then knows the SKU's answers.
    pub holds_every_decision: bool,
    /// Every operator action applied to this SKU.
    pub operations: Vec<OperationId>,
}

impl LedgerState {
    /// A drop nothing has been decided for yet.
    pub fn fresh(sku: Sku, stock: u32, per_user_limit: PerUserLimit) -> Self {
        Self {
            sku,
            remaining: stock,
            per_user_limit,
            applied_seq: 0,
            closed_seq: None,
            decisions: Vec::new(),
            holds_every_decision: true,
            operations: Vec::new(),
        }
    }
}

/// What deciding one batch produced: effects as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Decisions taken now, in stream order; to be inserted.
    pub decided: Vec<Decision>,
    /// Recorded decisions for keys that came again; re-announced, not stored.
    pub repeated: Vec<Decision>,
    /// Operator actions that take effect now, in stream order; to be stored.
    /// A retried action (an id already applied) is not among them.
    pub controls: Vec<Control>,
    /// The ledger's applied sequence the plan was made from; the batch
    /// transaction refuses to commit unless the store still says the same.
    pub applied_seq_before: u64,
    /// The applied sequence once the plan is committed.
    pub applied_seq_after: u64,
    /// Units won in this batch.
    pub won_units: u32,
    /// Units restocked in this batch.
    pub restocked_units: u32,
    /// Where the close stands, when this batch closes the drop.
    pub closed_seq: Option<u64>,
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
    closed_seq: Option<u64>,
    won_by_user: HashMap<UserId, u32>,
    decided: RecentDecisions,
    /// Every decision recorded for the SKU went through this ledger (loaded
    /// or decided), so `decided` holds them all unless it forgot some.
    saw_every_decision: bool,
    operations: HashSet<OperationId>,
}

/// The state a batch is decided on, as it moves through the batch.
struct Deciding<'a> {
    remaining: u32,
    closed_seq: Option<u64>,
    won_in_batch: HashMap<&'a UserId, u32>,
    key_in_batch: HashMap<&'a IdempotencyKey, usize>,
    ops_in_batch: HashSet<&'a OperationId>,
}

impl Ledger {
    pub fn new(state: LedgerState) -> Self {
        Self::remembering(state, REMEMBERED_PER_GENERATION)
    }

    /// A ledger that remembers at least `generation_len` recent decisions
    /// by key (and at most twice as many).
    pub fn remembering(state: LedgerState, generation_len: usize) -> Self {
        let mut ledger = Ledger {
            sku: state.sku,
            remaining: state.remaining,
            per_user_limit: state.per_user_limit,
            applied_seq: state.applied_seq,
            closed_seq: state.closed_seq,
            won_by_user: HashMap::default(),
            decided: RecentDecisions::new(generation_len),
            saw_every_decision: state.holds_every_decision,
            operations: state.operations.into_iter().collect(),
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

    /// Where the close stands in line, once decided.
    pub fn closed_seq(&self) -> Option<u64> {
        self.closed_seq
    }

    /// No unit left, and nothing that could give one back to a buyer not yet
    /// in line (only a restock can, and it stands in line itself): every
    /// later purchase is `sold_out`, whoever sends it.
    pub fn is_finally_sold_out(&self) -> bool {
        self.remaining == 0
    }

    /// Units `user` has won so far.
    pub fn won_by(&self, user: &UserId) -> u32 {
        self.won_by_user.get(user).copied().unwrap_or(0)
    }

    /// The recorded decision for `key`, if the ledger remembers it.
    pub fn decision_for(&self, key: &IdempotencyKey) -> Option<&Decision> {
        self.decided.get(key)
    }

    /// Whether [`Self::every_decision`] is `Some`, without collecting it.
    pub fn remembers_every_decision(&self) -> bool {
        self.saw_every_decision && self.decided.all().is_some()
    }

    /// Every decision recorded for the SKU, in line order, when the ledger
    /// remembers them all (a drop whose whole history went through this
    /// ledger and was short enough to keep): a sell-out is then announced
    /// without reading the store. `None` when the store must tell.
    pub fn every_decision(&self) -> Option<Vec<Decision>> {
        if !self.saw_every_decision {
            return None;
        }
        let mut all: Vec<Decision> = self.decided.all()?.cloned().collect();
        all.sort_unstable_by_key(|decision| decision.seq);
        Some(all)
    }

    /// Remembers decisions recorded in the store that the ledger had
    /// forgotten (or never loaded), so that [`Ledger::decide`] answers their
    /// keys with them. They are kept at least until the next plan is
    /// applied, however many there are. Counts nothing: every winner is
    /// counted already.
    pub fn learn(&mut self, recorded: impl IntoIterator<Item = Decision>) {
        // The store knew a key the ledger did not: it never saw them all.
        self.saw_every_decision = false;
        for decision in recorded {
            self.decided.learn(decision);
        }
    }

    /// Decides `entries` (in the order given, which must be stream order) on
    /// top of the ledger, without changing it.
    ///
    /// - an entry at or below the applied sequence is a replay and is skipped;
    /// - a key already decided (before or earlier in the batch) gets its
    ///   recorded decision again and changes nothing; so does an operator
    ///   action whose id was applied before;
    /// - a close makes every later purchase `closed`; a restock adds units;
    /// - otherwise a purchase is `closed` after the close, else `sold_out`
    ///   once no unit is left (whatever the buyer won before), else
    ///   `limit_reached` if the user would exceed the per-user limit, else
    ///   `sold_out` if fewer units remain than asked, else `won`.
    pub fn decide(&self, entries: &[Entry]) -> BatchPlan {
        let mut plan = BatchPlan {
            decided: Vec::with_capacity(entries.len()),
            repeated: Vec::new(),
            controls: Vec::new(),
            applied_seq_before: self.applied_seq,
            applied_seq_after: self.applied_seq,
            won_units: 0,
            restocked_units: 0,
            closed_seq: None,
        };
        let mut state = Deciding {
            remaining: self.remaining,
            closed_seq: self.closed_seq,
            won_in_batch: HashMap::default(),
            key_in_batch: HashMap::with_capacity_and_hasher(entries.len(), Default::default()),
            ops_in_batch: HashSet::default(),
        };
        for entry in entries {
            if entry.seq() <= plan.applied_seq_after {
                continue;
            }
            plan.applied_seq_after = entry.seq();
            match entry {
                Entry::Purchase(intent) => self.decide_purchase(intent, &mut state, &mut plan),
                Entry::Control(control) => self.decide_control(control, &mut state, &mut plan),
            }
        }
        plan
    }

    fn decide_purchase<'a>(
        &'a self,
        intent: &'a Intent,
        state: &mut Deciding<'a>,
        plan: &mut BatchPlan,
    ) {
        let earlier = self.decided.get(&intent.key).or_else(|| {
            state
                .key_in_batch
                .get(&intent.key)
                .map(|&i| &plan.decided[i])
        });
        if let Some(earlier) = earlier {
            plan.repeated.push(earlier.clone());
            return;
        }
        let wanted = intent.quantity.get();
        let user_total = self.won_by(&intent.user_id)
            + state
                .won_in_batch
                .get(&intent.user_id)
                .copied()
                .unwrap_or(0);
        let outcome = if state.closed_seq.is_some() {
            Outcome::Closed
        } else if state.remaining == 0 {
            Outcome::SoldOut
        } else if user_total + wanted > self.per_user_limit.get() {
            Outcome::LimitReached
        } else if wanted > state.remaining {
            Outcome::SoldOut
        } else {
            state.remaining -= wanted;
            plan.won_units += wanted;
            *state.won_in_batch.entry(&intent.user_id).or_insert(0) += wanted;
            Outcome::Won
        };
        state.key_in_batch.insert(&intent.key, plan.decided.len());
        plan.decided.push(Decision {
            seq: intent.seq,
            key: intent.key.clone(),
            user_id: intent.user_id.clone(),
            quantity: intent.quantity,
            outcome,
            order_id: (outcome == Outcome::Won).then(|| order_id(&self.sku, intent.seq)),
        });
    }

    fn decide_control<'a>(
        &self,
        control: &'a Control,
        state: &mut Deciding<'a>,
        plan: &mut BatchPlan,
    ) {
        if self.operations.contains(&control.op) || !state.ops_in_batch.insert(&control.op) {
            return;
        }
        match control.action {
            Action::Close => {
                // A second close (another id) changes nothing: the first
                // stays the cutoff.
                if state.closed_seq.is_none() {
                    state.closed_seq = Some(control.seq);
                    plan.closed_seq = Some(control.seq);
                }
            }
            Action::Restock(units) => {
                state.remaining = state.remaining.saturating_add(units.get());
                plan.restocked_units += units.get();
            }
        }
        plan.controls.push(control.clone());
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
        let available = self.remaining + plan.restocked_units;
        assert!(
            plan.won_units <= available,
            "plan for {} wins {} units with {} available",
            self.sku,
            plan.won_units,
            available
        );
        for decision in &plan.decided {
            self.record(decision.clone());
        }
        self.decided.settle();
        for control in &plan.controls {
            self.operations.insert(control.op.clone());
        }
        if plan.closed_seq.is_some() {
            self.closed_seq = plan.closed_seq;
        }
        self.applied_seq = plan.applied_seq_after;
        self.remaining = available - plan.won_units;
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
        self.decided.insert(decision);
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

/// The first and last order ids [`order_id`] can give `sku`: its winners
/// are rows of the order-id index between the two (read without touching
/// its other decisions), along with any of a SKU whose hash half collides,
/// so a reader filters by SKU as well.
pub fn order_id_range(sku: &Sku) -> (Uuid, Uuid) {
    (order_id(sku, 0), order_id(sku, LAST_PLACE_IN_LINE))
}

/// The largest place in line: the top two bits of `seq` are the order id's
/// version and variant.
const LAST_PLACE_IN_LINE: u64 = (1 << 62) - 1;

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
        let places = [1, 2, 1_023, 1_024, 1 << 40, LAST_PLACE_IN_LINE];
        for pair in places.windows(2) {
            assert!(order_id(&a, pair[0]) < order_id(&a, pair[1]), "{pair:?}");
        }
        let (first, last) = order_id_range(&a);
        assert!(places
            .iter()
            .all(|&p| (first..=last).contains(&order_id(&a, p))));
        assert!(!(first..=last).contains(&order_id(&b, 7)));
        assert_ne!(order_id(&a, 7), order_id(&b, 7));
        assert_ne!(
            order_id(&a, 7).as_bytes()[..8],
            order_id(&b, 7).as_bytes()[..8]
        );
    }
}
