//! Building blocks shared by the ledger's property tests and examples.
#![allow(dead_code)] // each test file uses its own subset

use dropline_core::{
    Action, BatchPlan, Control, Decision, Entry, IdempotencyKey, Intent, Ledger, LedgerState,
    OperationId, OperatorId, Outcome, PerUserLimit, Quantity, Sku, Stock, UserId,
};

/// Largest user pool a scenario draws from.
pub const USERS_MAX: usize = 6;

pub fn sku() -> Sku {
    Sku::parse("sku-props").expect("valid sku")
}

pub fn key(i: usize) -> IdempotencyKey {
    IdempotencyKey::parse(format!("key-{i}")).expect("valid key")
}

pub fn user(i: usize) -> UserId {
    UserId::parse(format!("user-{i}")).expect("valid user")
}

pub fn qty(q: u32) -> Quantity {
    Quantity::parse(i64::from(q)).expect("valid quantity")
}

pub fn intent(seq: u64, k: usize, u: usize, q: u32) -> Entry {
    Entry::Purchase(Intent {
        seq,
        key: key(k),
        user_id: user(u),
        quantity: qty(q),
    })
}

pub fn control(seq: u64, op: usize, action: Action) -> Entry {
    Entry::Control(Control {
        seq,
        op: OperationId::parse(format!("op-{op}")).expect("valid operation id"),
        by: OperatorId::parse("ops").expect("valid operator"),
        action,
    })
}

pub fn restock(seq: u64, op: usize, units: u32) -> Entry {
    let units = Stock::parse(i64::from(units)).expect("valid units");
    control(seq, op, Action::Restock(units))
}

pub fn close(seq: u64, op: usize) -> Entry {
    control(seq, op, Action::Close)
}

pub fn limit(l: u32) -> PerUserLimit {
    PerUserLimit::parse(i64::from(l)).expect("valid limit")
}

pub fn fresh(stock: u32, per_user_limit: u32) -> Ledger {
    Ledger::new(LedgerState::fresh(sku(), stock, limit(per_user_limit)))
}

/// Decides and applies every batch in turn, returning the plans.
pub fn run(ledger: &mut Ledger, batches: &[Vec<Entry>]) -> Vec<BatchPlan> {
    batches
        .iter()
        .map(|batch| {
            let plan = ledger.decide(batch);
            ledger.apply(&plan);
            plan
        })
        .collect()
}

pub fn all_decided(plans: &[BatchPlan]) -> Vec<Decision> {
    plans
        .iter()
        .flat_map(|p| p.decided.iter().cloned())
        .collect()
}

pub fn all_repeated(plans: &[BatchPlan]) -> Vec<Decision> {
    plans
        .iter()
        .flat_map(|p| p.repeated.iter().cloned())
        .collect()
}

pub fn all_controls(plans: &[BatchPlan]) -> Vec<Control> {
    plans
        .iter()
        .flat_map(|p| p.controls.iter().cloned())
        .collect()
}

pub fn restocked_units(plans: &[BatchPlan]) -> u32 {
    plans.iter().map(|p| p.restocked_units).sum()
}

pub fn won_units(decisions: &[Decision]) -> u32 {
    decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won)
        .map(|d| d.quantity.get())
        .sum()
}

pub fn won_units_of(decisions: &[Decision], who: &UserId) -> u32 {
    decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won && &d.user_id == who)
        .map(|d| d.quantity.get())
        .sum()
}

/// Cuts `stream` into consecutive batches whose sizes cycle through `sizes`.
pub fn split(stream: &[Entry], sizes: &[usize]) -> Vec<Vec<Entry>> {
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
