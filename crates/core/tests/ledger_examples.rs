//! Worked examples of the ledger's rules, one line each.

mod common;

use common::*;
use dropline_core::ledger::order_id;
use dropline_core::{BatchPlan, Entry, Outcome};

fn outcomes(plan: &BatchPlan) -> Vec<Outcome> {
    plan.decided.iter().map(|d| d.outcome).collect()
}

#[test]
fn three_units_and_five_buyers_means_the_first_three_win() {
    let mut ledger = fresh(3, 1);
    let intents: Vec<Entry> = (0..5).map(|n| intent(n as u64 + 1, n, n, 1)).collect();
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
fn once_nothing_is_left_everyone_is_sold_out_even_a_user_over_the_limit() {
    let mut ledger = fresh(1, 1);
    let plan = ledger.decide(&[intent(1, 0, 0, 1), intent(2, 1, 0, 1), intent(3, 2, 1, 1)]);
    assert_eq!(
        outcomes(&plan),
        [Outcome::Won, Outcome::SoldOut, Outcome::SoldOut]
    );
    ledger.apply(&plan);
    assert!(ledger.is_finally_sold_out());
}

#[test]
fn a_restock_at_its_place_in_line_serves_the_buyers_after_it_and_counts_once() {
    let mut ledger = fresh(1, 1);
    let plan = ledger.decide(&[
        intent(1, 0, 0, 1),
        intent(2, 1, 1, 1),
        restock(3, 0, 2),
        intent(4, 2, 2, 1),
        restock(5, 0, 2),
        intent(6, 3, 3, 1),
        intent(7, 4, 4, 1),
    ]);
    assert_eq!(
        outcomes(&plan),
        [
            Outcome::Won,
            Outcome::SoldOut,
            Outcome::Won,
            Outcome::Won,
            Outcome::SoldOut
        ]
    );
    assert_eq!((plan.restocked_units, plan.controls.len()), (2, 1));
    ledger.apply(&plan);
    assert_eq!(ledger.remaining(), 0);
    let retried = ledger.decide(&[restock(8, 0, 2), intent(9, 5, 5, 1)]);
    assert_eq!(outcomes(&retried), [Outcome::SoldOut]);
    assert!(retried.controls.is_empty());
}

#[test]
fn a_close_is_a_cutoff_in_line_and_a_second_close_changes_nothing() {
    let mut ledger = fresh(10, 1);
    let plan = ledger.decide(&[
        intent(1, 0, 0, 1),
        close(2, 0),
        intent(3, 1, 1, 1),
        close(4, 1),
        intent(5, 0, 0, 1),
    ]);
    assert_eq!(outcomes(&plan), [Outcome::Won, Outcome::Closed]);
    assert_eq!(plan.closed_seq, Some(2));
    assert_eq!(
        plan.repeated.len(),
        1,
        "a recorded key keeps its answer after the close"
    );
    ledger.apply(&plan);
    assert_eq!(ledger.closed_seq(), Some(2));
    assert_eq!(ledger.remaining(), 9);
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
