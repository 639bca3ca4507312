//! Property tests of the ledger, the pure decision core.
//!
//! Random intent streams (few users so limits bite, few keys so duplicates
//! happen, gaps in the sequence, redeliveries of already-seen intents) are cut
//! into random batches and fed through `decide` + `apply`; the outcome is
//! checked against a deliberately naive reference model and against the
//! invariants that keep a drop from overselling.

use dropline_core::ledger::order_id;
use dropline_core::{
    BatchPlan, Decision, IdempotencyKey, Intent, Ledger, LedgerState, Outcome, PerUserLimit,
    Quantity, Sku, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

/// Largest user pool a scenario draws from.
const USERS_MAX: usize = 6;

fn sku() -> Sku {
    Sku::parse("sku-props").expect("valid sku")
}

fn key(i: usize) -> IdempotencyKey {
    IdempotencyKey::parse(format!("key-{i}")).expect("valid key")
}

fn user(i: usize) -> UserId {
    UserId::parse(format!("user-{i}")).expect("valid user")
}

fn qty(q: u32) -> Quantity {
    Quantity::parse(i64::from(q)).expect("valid quantity")
}

fn intent(seq: u64, k: usize, u: usize, q: u32) -> Intent {
    Intent {
        seq,
        key: key(k),
        user_id: user(u),
        quantity: qty(q),
    }
}

fn limit(l: u32) -> PerUserLimit {
    PerUserLimit::parse(i64::from(l)).expect("valid limit")
}

fn fresh(stock: u32, per_user_limit: u32) -> Ledger {
    Ledger::new(LedgerState {
        sku: sku(),
        remaining: stock,
        per_user_limit: limit(per_user_limit),
        applied_seq: 0,
        decisions: Vec::new(),
    })
}

/// Decides and applies every batch in turn, returning the plans.
fn run(ledger: &mut Ledger, batches: &[Vec<Intent>]) -> Vec<BatchPlan> {
    batches
        .iter()
        .map(|batch| {
            let plan = ledger.decide(batch);
            ledger.apply(&plan);
            plan
        })
        .collect()
}

fn all_decided(plans: &[BatchPlan]) -> Vec<Decision> {
    plans
        .iter()
        .flat_map(|p| p.decided.iter().cloned())
        .collect()
}

fn all_repeated(plans: &[BatchPlan]) -> Vec<Decision> {
    plans
        .iter()
        .flat_map(|p| p.repeated.iter().cloned())
        .collect()
}

fn won_units(decisions: &[Decision]) -> u32 {
    decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won)
        .map(|d| d.quantity.get())
        .sum()
}

fn won_units_of(decisions: &[Decision], who: &UserId) -> u32 {
    decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won && &d.user_id == who)
        .map(|d| d.quantity.get())
        .sum()
}

/// Cuts `stream` into consecutive batches whose sizes cycle through `sizes`.
fn split(stream: &[Intent], sizes: &[usize]) -> Vec<Vec<Intent>> {
    let mut batches = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(size);
        batches.push(batch.to_vec());
        rest = tail;
    }
    batches
}

// ---------------------------------------------------------------------------
// Reference model: one pass over the stream, a Vec and linear scans.
// ---------------------------------------------------------------------------

struct Model {
    /// New decisions, in stream order.
    decided: Vec<Decision>,
    /// The recorded decision, once per later intent that reused its key.
    repeated: Vec<Decision>,
    remaining: u32,
}

fn model(stock: u32, per_user_limit: u32, stream: &[Intent]) -> Model {
    let mut decided: Vec<Decision> = Vec::new();
    let mut repeated = Vec::new();
    let mut remaining = stock;
    let mut highest_seq = 0;
    for i in stream {
        if i.seq <= highest_seq {
            continue; // redelivery of something already seen
        }
        highest_seq = i.seq;
        if let Some(earlier) = decided.iter().find(|d| d.key == i.key) {
            repeated.push(earlier.clone());
            continue;
        }
        let want = i.quantity.get();
        let outcome = if won_units_of(&decided, &i.user_id) + want > per_user_limit {
            Outcome::LimitReached
        } else if want > remaining {
            Outcome::SoldOut
        } else {
            remaining -= want;
            Outcome::Won
        };
        decided.push(Decision {
            seq: i.seq,
            key: i.key.clone(),
            user_id: i.user_id.clone(),
            quantity: i.quantity,
            outcome,
            order_id: (outcome == Outcome::Won).then(|| order_id(&sku(), i.seq)),
        });
    }
    Model {
        decided,
        repeated,
        remaining,
    }
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
    stream: Vec<Intent>,
    batch_sizes: Vec<usize>,
}

impl Scenario {
    fn batches(&self) -> Vec<Vec<Intent>> {
        split(&self.stream, &self.batch_sizes)
    }

    fn ledger(&self) -> Ledger {
        fresh(self.stock, self.limit)
    }

    fn model(&self) -> Model {
        model(self.stock, self.limit, &self.stream)
    }
}

fn build_stream(events: &[Event]) -> Vec<Intent> {
    let mut stream: Vec<Intent> = Vec::new();
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
                6 => (1u64..=3, 0..keys, 0..users, 1u32..=3)
                    .prop_map(|(gap, key, user, qty)| Event::New { gap, key, user, qty }),
                1 => any::<Index>().prop_map(Event::Replay),
                1 => (any::<Index>(), 1usize..=4).prop_map(|(at, len)| Event::ReplayRun(at, len)),
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
/// intent of each key kept.
fn without_replays_and_duplicates(stream: &[Intent]) -> Vec<Intent> {
    let mut kept: Vec<Intent> = Vec::new();
    let mut highest_seq = 0;
    for i in stream {
        if i.seq <= highest_seq {
            continue;
        }
        highest_seq = i.seq;
        if kept.iter().all(|k| k.key != i.key) {
            kept.push(i.clone());
        }
    }
    kept
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_more_units_are_won_than_the_initial_stock(s in scenario()) {
        let mut ledger = s.ledger();
        let mut decided = Vec::new();
        for batch in s.batches() {
            let plan = ledger.decide(&batch);
            prop_assert_eq!(plan.won_units, won_units(&plan.decided));
            ledger.apply(&plan);
            decided.extend(plan.decided);
            let won = won_units(&decided);
            prop_assert!(won <= s.stock, "won {} of {}", won, s.stock);
            prop_assert_eq!(ledger.remaining(), s.stock - won);
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
        let mut seen: Vec<Intent> = Vec::new();
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
        let fresh_intents = s.stream.iter().scan(0, |highest, i| {
            let fresh = i.seq > *highest;
            *highest = (*highest).max(i.seq);
            Some(fresh.then_some(i))
        }).flatten().collect::<Vec<_>>();
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
        for d in &decided {
            prop_assert_eq!(d.order_id.is_some(), d.outcome == Outcome::Won);
        }
        let max_seq = s.stream.iter().map(|i| i.seq).max().unwrap_or(0);
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
        let mut rebuilt = Ledger::new(LedgerState {
            sku: sku(),
            remaining: survivor.remaining(),
            per_user_limit: survivor.per_user_limit(),
            applied_seq: survivor.applied_seq(),
            decisions,
        });
        prop_assert_eq!(rebuilt.sku(), survivor.sku());
        prop_assert_eq!(rebuilt.remaining(), survivor.remaining());
        prop_assert_eq!(rebuilt.applied_seq(), survivor.applied_seq());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(rebuilt.won_by(&u), survivor.won_by(&u));
        }
        for k in s.stream.iter().map(|i| &i.key) {
            prop_assert_eq!(rebuilt.decision_for(k), survivor.decision_for(k));
        }

        // The survivor goes on; the rebuilt one also gets redelivered some
        // intents it had already applied (unacked at the crash).
        let consumed: usize = before.iter().map(Vec::len).sum();
        let from = redeliver.index(consumed + 1);
        let survivor_plans = run(&mut survivor, after);
        let rebuilt_plans = run(&mut rebuilt, &split(&s.stream[from..], &s.batch_sizes));

        prop_assert_eq!(all_decided(&rebuilt_plans), all_decided(&survivor_plans));
        prop_assert_eq!(all_repeated(&rebuilt_plans), all_repeated(&survivor_plans));
        prop_assert_eq!(rebuilt.remaining(), survivor.remaining());
        prop_assert_eq!(rebuilt.applied_seq(), survivor.applied_seq());
        for u in (0..USERS_MAX).map(user) {
            prop_assert_eq!(rebuilt.won_by(&u), survivor.won_by(&u));
        }
    }
}

// ---------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------

fn outcomes(plan: &BatchPlan) -> Vec<Outcome> {
    plan.decided.iter().map(|d| d.outcome).collect()
}

#[test]
fn three_units_and_five_buyers_means_the_first_three_win() {
    let mut ledger = fresh(3, 1);
    let intents: Vec<Intent> = (0..5).map(|n| intent(n as u64 + 1, n, n, 1)).collect();
    let plan = ledger.decide(&intents);
    assert_eq!(
        outcomes(&plan),
        [
            Outcome::Won,
            Outcome::Won,
            Outcome::Won,
            Outcome::SoldOut,
            Outcome::SoldOut
        ]
    );
    for d in &plan.decided[..3] {
        assert_eq!(d.order_id, Some(order_id(&sku(), d.seq)));
    }
    assert!(plan.decided[3..].iter().all(|d| d.order_id.is_none()));
    assert_eq!(plan.won_units, 3);
    ledger.apply(&plan);
    assert_eq!(ledger.remaining(), 0);
    assert_eq!(ledger.applied_seq(), 5);
}

#[test]
fn quantity_two_with_one_left_is_sold_out_and_a_later_single_unit_still_wins() {
    let mut ledger = fresh(1, 3);
    let plan = ledger.decide(&[intent(1, 0, 0, 2), intent(2, 1, 1, 1)]);
    assert_eq!(outcomes(&plan), [Outcome::SoldOut, Outcome::Won]);
    ledger.apply(&plan);
    assert_eq!(ledger.remaining(), 0);
    assert_eq!(ledger.won_by(&user(0)), 0);
    assert_eq!(ledger.won_by(&user(1)), 1);
}

#[test]
fn a_user_over_the_limit_gets_limit_reached_even_when_stock_remains() {
    let mut ledger = fresh(10, 2);
    let plan = ledger.decide(&[intent(1, 0, 0, 1), intent(2, 1, 0, 2), intent(3, 2, 0, 1)]);
    assert_eq!(
        outcomes(&plan),
        [Outcome::Won, Outcome::LimitReached, Outcome::Won]
    );
    ledger.apply(&plan);
    assert_eq!(ledger.remaining(), 8);
    let plan = ledger.decide(&[intent(4, 3, 0, 1)]);
    assert_eq!(outcomes(&plan), [Outcome::LimitReached]);
    assert_eq!(plan.won_units, 0);
}

#[test]
fn a_reused_key_with_another_user_and_quantity_gets_the_original_decision() {
    let mut ledger = fresh(5, 3);
    let first = ledger.decide(&[intent(1, 0, 0, 1)]);
    ledger.apply(&first);
    let again = ledger.decide(&[intent(7, 0, 1, 3), intent(7, 0, 1, 3)]);
    assert!(again.decided.is_empty());
    assert_eq!(again.repeated, first.decided);
    assert!(!again.is_noop(), "the sequence still advances");
    ledger.apply(&again);
    assert_eq!(ledger.remaining(), 4);
    assert_eq!(ledger.won_by(&user(1)), 0);
    assert_eq!(ledger.applied_seq(), 7);
}
