//! Property tests of the ledger, the pure decision core.
//!
//! Random lines (few users so limits bite, few keys so duplicates happen,
//! gaps in the sequence, redeliveries of already-seen entries, restocks and
//! closes, some retried with the same operation id) are cut into random
//! batches and fed through `decide` + `apply`; the outcome is checked against
//! a deliberately naive reference model and against the invariants that keep
//! a drop from overselling.

mod common;

use common::*;
use dropline_core::ledger::order_id;
use dropline_core::{
    Action, BatchPlan, Decision, Entry, Intent, Ledger, LedgerState, OperationId, Outcome,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Reference model: one pass over the stream, a Vec and linear scans.
// ---------------------------------------------------------------------------

struct Model {
    /// New decisions, in stream order.
    decided: Vec<Decision>,
    /// The recorded decision, once per later intent that reused its key.
    repeated: Vec<Decision>,
    remaining: u32,
    /// Units added by restocks that took effect.
    restocked: u32,
}

fn model(stock: u32, per_user_limit: u32, stream: &[Entry]) -> Model {
    let mut m = Model {
        decided: Vec::new(),
        repeated: Vec::new(),
        remaining: stock,
        restocked: 0,
    };
    let mut applied_ops: Vec<&OperationId> = Vec::new();
    let mut closed = false;
    let mut highest_seq = 0;
    for entry in stream {
        if entry.seq() <= highest_seq {
            continue; // redelivery of something already seen
        }
        highest_seq = entry.seq();
        match entry {
            Entry::Control(c) if applied_ops.contains(&&c.op) => {}
            Entry::Control(c) => {
                applied_ops.push(&c.op);
                match c.action {
                    Action::Close => closed = true,
                    Action::Restock(units) => {
                        m.remaining += units.get();
                        m.restocked += units.get();
                    }
                }
            }
            Entry::Purchase(i) => model_purchase(&mut m, i, closed, per_user_limit),
        }
    }
    m
}

fn model_purchase(m: &mut Model, i: &Intent, closed: bool, per_user_limit: u32) {
    if let Some(earlier) = m.decided.iter().find(|d| d.key == i.key) {
        m.repeated.push(earlier.clone());
        return;
    }
    let want = i.quantity.get();
    let outcome = if closed {
        Outcome::Closed
    } else if m.remaining == 0 {
        Outcome::SoldOut
    } else if won_units_of(&m.decided, &i.user_id) + want > per_user_limit {
        Outcome::LimitReached
    } else if want > m.remaining {
        Outcome::SoldOut
    } else {
        m.remaining -= want;
        Outcome::Won
    };
    m.decided.push(Decision {
        seq: i.seq,
        key: i.key.clone(),
        user_id: i.user_id.clone(),
        quantity: i.quantity,
        outcome,
        order_id: (outcome == Outcome::Won).then(|| order_id(&sku(), i.seq)),
    });
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Event {
    /// A fresh intent, `gap` sequence numbers after the previous fresh one.
    New {
        gap: u64,
        key: usize,
        user: usize,
        qty: u32,
    },
    /// An operator's restock of `units`; a retry reuses an earlier `op`.
    Restock { gap: u64, op: usize, units: u32 },
    /// An operator's close; a retry reuses an earlier `op`.
    Close { gap: u64, op: usize },
    /// Redelivery of one already-sent intent.
    Replay(Index),
    /// Redelivery of a run of already-sent intents (a whole pending batch).
    ReplayRun(Index, usize),
}

#[derive(Debug, Clone)]
struct Scenario {
    stock: u32,
    limit: u32,
    /// In delivery order: seqs increase, except for redeliveries.
    stream: Vec<Entry>,
    batch_sizes: Vec<usize>,
}

impl Scenario {
    fn batches(&self) -> Vec<Vec<Entry>> {
        split(&self.stream, &self.batch_sizes)
    }

    fn ledger(&self) -> Ledger {
        fresh(self.stock, self.limit)
    }

    fn model(&self) -> Model {
        model(self.stock, self.limit, &self.stream)
    }
}

fn build_stream(events: &[Event]) -> Vec<Entry> {
    let mut stream: Vec<Entry> = Vec::new();
    let mut seq = 0;
    for event in events {
        match event {
            Event::New {
                gap,
                key,
                user,
                qty,
            } => {
                seq += gap;
                stream.push(intent(seq, *key, *user, *qty));
            }
            Event::Restock { gap, op, units } => {
                seq += gap;
                stream.push(restock(seq, *op, *units));
            }
            Event::Close { gap, op } => {
                seq += gap;
                stream.push(close(seq, *op));
            }
            Event::Replay(at) if !stream.is_empty() => {
                let again = stream[at.index(stream.len())].clone();
                stream.push(again);
            }
            Event::ReplayRun(at, len) if !stream.is_empty() => {
                let from = at.index(stream.len());
                let to = (from + len).min(stream.len());
                let again = stream[from..to].to_vec();
                stream.extend(again);
            }
            Event::Replay(_) | Event::ReplayRun(..) => {}
        }
    }
    stream
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        // Mostly small stock so it runs out, sometimes up to 30.
        prop_oneof![3 => 0u32..=8, 1 => 0u32..=30],
        1u32..=3,
        2usize..=24,
        2usize..=USERS_MAX,
    )
        .prop_flat_map(|(stock, limit, keys, users)| {
            let event = prop_oneof![
                12 => (1u64..=3, 0..keys, 0..users, 1u32..=3)
                    .prop_map(|(gap, key, user, qty)| Event::New { gap, key, user, qty }),
                1 => (1u64..=3, 0usize..3, 1u32..=5)
                    .prop_map(|(gap, op, units)| Event::Restock { gap, op, units }),
                // Rare, so that most lines are decided long before their close.
                1 => (1u64..=3, 3usize..5).prop_map(|(gap, op)| Event::Close { gap, op }),
                2 => any::<Index>().prop_map(Event::Replay),
                2 => (any::<Index>(), 1usize..=4).prop_map(|(at, len)| Event::ReplayRun(at, len)),
            ];
            (
                Just(stock),
                Just(limit),
                prop::collection::vec(event, 0..=48),
                prop::collection::vec(1usize..=8, 1..=12),
            )
        })
        .prop_map(|(stock, limit, events, batch_sizes)| Scenario {
            stock,
            limit,
            stream: build_stream(&events),
            batch_sizes,
        })
}

/// The stream with redeliveries dropped and, of the rest, only the first
/// purchase of each key and the first action of each operation id kept.
fn without_replays_and_duplicates(stream: &[Entry]) -> Vec<Entry> {
    let mut kept: Vec<Entry> = Vec::new();
    let mut highest_seq = 0;
    for entry in stream {
        if entry.seq() <= highest_seq {
            continue;
        }
        highest_seq = entry.seq();
        let seen_before = kept.iter().any(|k| match (k, entry) {
            (Entry::Purchase(a), Entry::Purchase(b)) => a.key == b.key,
            (Entry::Control(a), Entry::Control(b)) => a.op == b.op,
            _ => false,
        });
        if !seen_before {
            kept.push(entry.clone());
        }
    }
    kept
}

/// The purchases of a line, in order.
fn purchases(stream: &[Entry]) -> Vec<&Intent> {
    stream
        .iter()
        .filter_map(|e| match e {
            Entry::Purchase(i) => Some(i),
            Entry::Control(_) => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_more_units_are_won_than_the_stock_and_its_restocks(s in scenario()) {
        let mut ledger = s.ledger();
        let mut decided = Vec::new();
        let mut restocked = 0;
        for batch in s.batches() {
            let plan = ledger.decide(&batch);
            prop_assert_eq!(plan.won_units, won_units(&plan.decided));
            ledger.apply(&plan);
            restocked += plan.restocked_units;
            decided.extend(plan.decided);
            let won = won_units(&decided);
            let stock = s.stock + restocked;
            prop_assert!(won <= stock, "won {} of {}", won, stock);
            prop_assert_eq!(ledger.remaining(), stock - won);
        }
    }

    #[test]
    fn a_retried_operation_takes_effect_once_and_the_first_close_is_the_cutoff(s in scenario()) {
        let mut ledger = s.ledger();
        let plans = run(&mut ledger, &s.batches());
        let controls = all_controls(&plans);
        for (n, c) in controls.iter().enumerate() {
            prop_assert!(controls[..n].iter().all(|e| e.op != c.op), "{} applied twice", c.op);
        }
        let first_close = controls.iter().find(|c| c.action == Action::Close).map(|c| c.seq);
        prop_assert_eq!(ledger.closed_seq(), first_close);
        for d in all_decided(&plans) {
            let after_close = first_close.is_some_and(|cut| d.seq > cut);
            prop_assert_eq!(d.outcome == Outcome::Closed, after_close, "{:?}", d);
        }
    }

    #[test]
    fn no_user_ever_wins_more_units_than_the_per_user_limit(s in scenario()) {
        let mut ledger = s.ledger();
        let mut decided = Vec::new();
        for batch in s.batches() {
            let plan = ledger.decide(&batch);
            ledger.apply(&plan);
            decided.extend(plan.decided);
            for u in (0..USERS_MAX).map(user) {
                let won = won_units_of(&decided, &u);
                prop_assert!(won <= s.limit, "{} won {} with limit {}", u, won, s.limit);
                prop_assert_eq!(ledger.won_by(&u), won);
            }
        }
    }

    #[test]
    fn re_deciding_an_already_applied_batch_is_a_no_op(s in scenario()) {
        let mut ledger = s.ledger();
        let mut seen: Vec<Entry> = Vec::new();
        prop_assert!(ledger.decide(&[]).is_noop());
        for batch in s.batches() {
            let plan = ledger.decide(&batch);
            ledger.apply(&plan);
            seen.extend(batch.iter().cloned());
            for again in [ledger.decide(&batch), ledger.decide(&seen)] {
                prop_assert!(again.is_noop());
                prop_assert!(again.decided.is_empty());
                prop_assert!(again.repeated.is_empty());
                prop_assert_eq!(again.won_units, 0);
                prop_assert_eq!(again.applied_seq_after, ledger.applied_seq());
            }
        }
    }

    #[test]
    fn a_duplicate_key_later_in_the_stream_repeats_the_original_decision_and_decides_nothing_new(
        s in scenario()
    ) {
        let mut ledger = s.ledger();
        let plans = run(&mut ledger, &s.batches());
        let decided = all_decided(&plans);
        let repeated = all_repeated(&plans);
        // One decision per key, ever, and it is the one the ledger keeps.
        for (n, d) in decided.iter().enumerate() {
            prop_assert!(decided[..n].iter().all(|e| e.key != d.key), "{} decided twice", d.key);
            prop_assert_eq!(ledger.decision_for(&d.key), Some(d));
        }
        // Every repeat is a copy of the original decision for its key.
        for r in &repeated {
            let original = decided.iter().find(|d| d.key == r.key);
            prop_assert_eq!(original, Some(r));
        }
        // One repeat per fresh (non-redelivered) intent whose key was seen before.
        let fresh_entries = s.stream.iter().scan(0, |highest, e| {
            let fresh = e.seq() > *highest;
            *highest = (*highest).max(e.seq());
            Some(fresh.then_some(e.clone()))
        }).flatten().collect::<Vec<_>>();
        let fresh_intents = purchases(&fresh_entries);
        let reuses = fresh_intents
            .iter()
            .enumerate()
            .filter(|(n, i)| fresh_intents[..*n].iter().any(|e| e.key == i.key))
            .count();
        prop_assert_eq!(repeated.len(), reuses);
        prop_assert_eq!(decided.len() + repeated.len(), fresh_intents.len());
    }

    #[test]
    fn replayed_and_duplicated_intents_change_nothing(s in scenario()) {
        let mut with = s.ledger();
        let with_plans = run(&mut with, &s.batches());
        let clean = without_replays_and_duplicates(&s.stream);
        let mut without = s.ledger();
        let without_plans = run(&mut without, &split(&clean, &s.batch_sizes));
        prop_assert_eq!(all_decided(&with_plans), all_decided(&without_plans));
        prop_assert!(all_repeated(&without_plans).is_empty());
        prop_assert_eq!(all_controls(&with_plans), all_controls(&without_plans));
        prop_assert_eq!(with.remaining(), without.remaining());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(with.won_by(&u), without.won_by(&u));
        }
    }

    #[test]
    fn the_same_batches_fed_to_two_ledgers_give_the_same_plans(s in scenario()) {
        let batches = s.batches();
        let mut a = s.ledger();
        let mut b = s.ledger();
        prop_assert_eq!(run(&mut a, &batches), run(&mut b, &batches));
        prop_assert_eq!(a.remaining(), b.remaining());
        prop_assert_eq!(a.applied_seq(), b.applied_seq());
    }

    #[test]
    fn how_the_stream_is_split_into_batches_does_not_change_any_decision(
        s in scenario(),
        other_sizes in prop::collection::vec(1usize..=8, 1..=12),
    ) {
        let splits = [
            vec![s.stream.clone()],       // one big batch
            split(&s.stream, &[1]),        // one intent per batch
            s.batches(),                   // random chunks
            split(&s.stream, &other_sizes), // other random chunks
        ];
        let mut outcomes = Vec::new();
        for batches in &splits {
            let mut ledger = s.ledger();
            let plans = run(&mut ledger, batches);
            outcomes.push((
                all_decided(&plans),
                all_repeated(&plans),
                ledger.remaining(),
                ledger.applied_seq(),
            ));
        }
        for other in &outcomes[1..] {
            prop_assert_eq!(&outcomes[0], other);
        }
    }

    #[test]
    fn winners_are_exactly_the_first_eligible_intents_in_stream_order(s in scenario()) {
        let mut ledger = s.ledger();
        let plans = run(&mut ledger, &s.batches());
        let expected = s.model();
        let decided = all_decided(&plans);
        prop_assert_eq!(&decided, &expected.decided);
        prop_assert_eq!(all_repeated(&plans), expected.repeated);
        prop_assert_eq!(ledger.remaining(), expected.remaining);
        prop_assert_eq!(restocked_units(&plans), expected.restocked);
        for d in &decided {
            prop_assert_eq!(d.order_id.is_some(), d.outcome == Outcome::Won);
        }
        let max_seq = s.stream.iter().map(Entry::seq).max().unwrap_or(0);
        prop_assert_eq!(ledger.applied_seq(), max_seq);
    }

    #[test]
    fn a_ledger_rebuilt_from_its_state_mid_stream_decides_the_rest_as_if_it_never_restarted(
        s in scenario(),
        cut in any::<Index>(),
        redeliver in any::<Index>(),
    ) {
        let batches = s.batches();
        let cut = cut.index(batches.len() + 1);
        let (before, after) = batches.split_at(cut);

        let mut survivor = s.ledger();
        let before_plans = run(&mut survivor, before);

        // What the store holds: remaining, applied_seq and every decision
        // (in whatever order the store returns them).
        let mut decisions = all_decided(&before_plans);
        decisions.reverse();
        let mut rebuilt = Ledger::new(stored_state(&survivor, decisions, &before_plans));
        prop_assert_eq!(rebuilt.sku(), survivor.sku());
        prop_assert_eq!(rebuilt.remaining(), survivor.remaining());
        prop_assert_eq!(rebuilt.applied_seq(), survivor.applied_seq());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(rebuilt.won_by(&u), survivor.won_by(&u));
        }
        for k in purchases(&s.stream).iter().map(|i| &i.key) {
            prop_assert_eq!(rebuilt.decision_for(k), survivor.decision_for(k));
        }
        let mut recorded = all_decided(&before_plans);
        recorded.sort_unstable_by_key(|d| d.seq);
        prop_assert_eq!(rebuilt.every_decision(), Some(recorded.clone()));
        prop_assert_eq!(survivor.every_decision(), Some(recorded));

        // The survivor goes on; the rebuilt one also gets redelivered some
        // intents it had already applied (unacked at the crash).
        let consumed: usize = before.iter().map(Vec::len).sum();
        let from = redeliver.index(consumed + 1);
        let survivor_plans = run(&mut survivor, after);
        let rebuilt_plans = run(&mut rebuilt, &split(&s.stream[from..], &s.batch_sizes));

        prop_assert_eq!(all_decided(&rebuilt_plans), all_decided(&survivor_plans));
        prop_assert_eq!(all_repeated(&rebuilt_plans), all_repeated(&survivor_plans));
        prop_assert_eq!(all_controls(&rebuilt_plans), all_controls(&survivor_plans));
        prop_assert_eq!(rebuilt.remaining(), survivor.remaining());
        prop_assert_eq!(rebuilt.applied_seq(), survivor.applied_seq());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(rebuilt.won_by(&u), survivor.won_by(&u));
        }
    }

    #[test]
    fn a_ledger_that_forgets_and_learns_what_the_store_refuses_decides_as_if_it_remembered_everything(
        s in scenario(),
        cut in any::<Index>(),
        remembered in 1usize..=4,
    ) {
        let batches = s.batches();
        let cut = cut.index(batches.len() + 1);
        let (before, after) = batches.split_at(cut);
        let mut survivor = s.ledger();
        let before_plans = run(&mut survivor, before);
        let mut store = all_decided(&before_plans);

        // Rebuilt as a claim loads it (counters, operations, winners only),
        // remembering only the last few decisions after that.
        let winners = store.iter().filter(|d| d.outcome == Outcome::Won).cloned().collect();
        let mut forgetful =
            Ledger::remembering(stored_state(&survivor, winners, &before_plans), remembered);

        let survivor_plans = run(&mut survivor, after);
        let forgetful_plans = run_learning(&mut forgetful, after, &mut store);
        if forgetful.every_decision().is_some() {
            // Then it was loaded with everything (only winners so far) and
            // forgot nothing since: it must hold exactly what the store does.
            let mut recorded = store.clone();
            recorded.sort_unstable_by_key(|d| d.seq);
            prop_assert_eq!(forgetful.every_decision(), Some(recorded));
        }
        prop_assert_eq!(all_decided(&forgetful_plans), all_decided(&survivor_plans));
        prop_assert_eq!(all_repeated(&forgetful_plans), all_repeated(&survivor_plans));
        prop_assert_eq!(forgetful.remaining(), survivor.remaining());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(forgetful.won_by(&u), survivor.won_by(&u));
        }
    }
}

proptest! {
    #[test]
    fn a_ledger_knows_every_decision_until_it_forgets_one(
        s in scenario(),
        remembered in 1usize..=8,
    ) {
        let mut ledger =
            Ledger::remembering(LedgerState::fresh(sku(), s.stock, limit(s.limit)), remembered);
        let plans = run(&mut ledger, &s.batches());
        let mut recorded = all_decided(&plans);
        recorded.sort_unstable_by_key(|d| d.seq);
        // Generations of `remembered`: the first is dropped when a third begins.
        let forgot = recorded.len() > 2 * remembered;
        prop_assert_eq!(ledger.every_decision(), (!forgot).then_some(recorded));
    }
}

/// The state the store holds after `plans` were applied to `ledger`, with
/// the recorded `decisions` a claim loads.
fn stored_state(ledger: &Ledger, decisions: Vec<Decision>, plans: &[BatchPlan]) -> LedgerState {
    let holds_every_decision = decisions.len() == all_decided(plans).len();
    LedgerState {
        sku: sku(),
        remaining: ledger.remaining(),
        per_user_limit: ledger.per_user_limit(),
        applied_seq: ledger.applied_seq(),
        closed_seq: ledger.closed_seq(),
        decisions,
        holds_every_decision,
        operations: all_controls(plans).into_iter().map(|c| c.op).collect(),
    }
}

/// Decides and applies every batch as the processor does with a ledger
/// that forgets: the store refuses a plan that decides a key it already
/// holds, the ledger learns the store's decisions of the plan's keys, and
/// decides the batch again.
fn run_learning(
    ledger: &mut Ledger,
    batches: &[Vec<Entry>],
    store: &mut Vec<Decision>,
) -> Vec<BatchPlan> {
    batches
        .iter()
        .map(|batch| loop {
            let plan = ledger.decide(batch);
            let recorded: Vec<Decision> = store
                .iter()
                .filter(|r| plan.decided.iter().any(|d| d.key == r.key))
                .cloned()
                .collect();
            if recorded.is_empty() {
                ledger.apply(&plan);
                store.extend(plan.decided.iter().cloned());
                break plan;
            }
            ledger.learn(recorded);
        })
        .collect()
}
