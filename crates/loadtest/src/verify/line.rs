//! What a drop's line says about its buyers: the winners are the first
//! eligible in line, every winner stood before every buyer told `sold_out`,
//! and a purchase answered at once (the sold-out fast path, no place in
//! line) never reached the line.

use std::collections::{HashMap, HashSet};

use dropline_core::{
    Entry, IdempotencyKey, Intent, Ledger, LedgerState, PerUserLimit, Quantity, UserId,
};
use dropline_store::Store;

use super::Verdict;
use crate::burst::BuyerResult;
use crate::setup::DropUnderTest;

/// The winners are the first eligible intents in stream order: replaying
/// every answered purchase, by the sequence it was given, through a fresh
/// ledger gives every purchase the outcome it was told.
pub(super) fn check_first_eligible(
    verdict: &mut Verdict,
    per_user_limit: u32,
    drop: &DropUnderTest,
    purchases: &[&BuyerResult],
) -> anyhow::Result<()> {
    let mut told: Vec<_> = purchases
        .iter()
        .copied()
        .filter_map(|b| Some((b.seq?, b, b.outcome.as_deref()?)))
        .collect();
    told.sort_by_key(|(seq, _, _)| *seq);
    let intents = told
        .iter()
        .map(|(seq, b, _)| {
            Ok(Entry::Purchase(Intent {
                seq: *seq,
                key: IdempotencyKey::parse(b.key.clone())?,
                user_id: UserId::parse(b.user.clone())?,
                quantity: Quantity::ONE,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ledger = Ledger::new(LedgerState::fresh(
        drop.sku.clone(),
        drop.stock,
        PerUserLimit::parse(per_user_limit.into())?,
    ));
    let plan = ledger.decide(&intents);
    let expected: HashMap<&str, &str> = plan
        .decided
        .iter()
        .map(|d| (d.key.as_str(), d.outcome.as_str()))
        .collect();
    let wrong: Vec<_> = told
        .iter()
        .filter(|(_, b, outcome)| expected.get(b.key.as_str()) != Some(outcome))
        .collect();
    if let Some((seq, b, outcome)) = wrong.first() {
        verdict.fail(format!(
            "{} purchases were not told the first-eligible outcome in stream order \
             (e.g. key {} at seq {seq}: told {outcome}, expected {:?})",
            wrong.len(),
            b.key,
            expected.get(b.key.as_str())
        ));
    }
    Ok(())
}

/// In line, every winner stood before every purchase decided `sold_out`.
pub(super) fn check_winners_before_losers(verdict: &mut Verdict, purchases: &[&BuyerResult]) {
    let in_line = |outcome: &'static str| {
        purchases
            .iter()
            .filter(move |b| b.outcome.as_deref() == Some(outcome))
            .filter_map(|b| b.seq)
    };
    let last_winner = in_line("won").max();
    let first_sold_out = in_line("sold_out").min();
    if let (Some(won), Some(lost)) = (last_winner, first_sold_out) {
        if won > lost {
            verdict.fail(format!(
                "a winner stood at {won}, after a purchase told sold_out at {lost}"
            ));
        }
    }
}

/// A purchase answered without a place in line was answered at once (the
/// drop was finally sold out): it must be `sold_out`, and it must never
/// have reached the line. Every key that reached the line is decided, so
/// the store holds exactly one decision per key that was given a place.
pub(super) async fn check_answered_at_once_never_stood_in_line(
    verdict: &mut Verdict,
    store: &Store,
    drop: &DropUnderTest,
    purchases: &[&BuyerResult],
) -> anyhow::Result<()> {
    let answers = purchases
        .iter()
        .flat_map(|b| std::iter::once(*b).chain(b.echo.as_deref()));
    let (mut placed, mut at_once, mut not_sold_out) = (HashSet::new(), 0, 0);
    for answer in answers.filter(|a| a.outcome.is_some()) {
        match answer.seq {
            Some(_) => {
                placed.insert(answer.key.as_str());
            }
            None if answer.outcome.as_deref() == Some("sold_out") => at_once += 1,
            None => not_sold_out += 1,
        }
    }
    if not_sold_out > 0 {
        verdict.fail(format!(
            "{not_sold_out} answers without a place in line were not sold_out"
        ));
    }
    let decided = store
        .drop_statuses(Some(&drop.sku))
        .await?
        .first()
        .map_or(0, |status| status.decided);
    if decided != placed.len() as u64 {
        verdict.fail(format!(
            "{decided} decisions recorded for {} keys that stood in line \
             ({at_once} answered at once): a key answered at once reached the line",
            placed.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(seq: Option<u64>, outcome: &str) -> BuyerResult {
        BuyerResult {
            key: format!("k{seq:?}{outcome}"),
            seq,
            outcome: Some(outcome.into()),
            ..BuyerResult::default()
        }
    }

    #[test]
    fn a_winner_after_a_sold_out_in_line_is_a_violation() {
        let ok = [
            told(Some(1), "won"),
            told(Some(2), "sold_out"),
            told(None, "sold_out"),
        ];
        let mut verdict = Verdict::default();
        check_winners_before_losers(&mut verdict, &ok.iter().collect::<Vec<_>>());
        assert!(verdict.passed(), "{:?}", verdict.violations);
        let late = [told(Some(3), "won"), told(Some(2), "sold_out")];
        check_winners_before_losers(&mut verdict, &late.iter().collect::<Vec<_>>());
        assert!(!verdict.passed());
    }
}
