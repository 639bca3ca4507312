//! Checks the promises from what buyers were told and what the API says.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use dropline_core::{
    Entry, IdempotencyKey, Intent, Ledger, LedgerState, PerUserLimit, Quantity, UserId,
};
use dropline_store::{PoolOptions, Store};

use crate::burst::{BurstResults, BuyerResult};
use crate::setup::DropUnderTest;

/// What the verification needs beyond the burst's results.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The gateway's base URL.
    pub url: String,
    /// The gateway's database, to compare the orders with the answers.
    pub database_url: String,
    pub per_user_limit: u32,
    /// A fault was injected: a `503` (nothing accepted, retried) is then a
    /// right answer, not an error.
    pub faults_injected: bool,
}

/// One broken promise, in words.
#[derive(Debug, Clone, Serialize)]
pub struct Violation(pub String);

#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub replays_checked: usize,
    /// Checks that could not apply to this run, and why.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    fn fail(&mut self, what: String) {
        self.violations.push(Violation(what));
    }
}

/// How many answers are replayed to check they are stable.
const REPLAYS_MAX: usize = 200;

pub async fn verify(
    client: &reqwest::Client,
    options: &VerifyOptions,
    drop: &DropUnderTest,
    results: &BurstResults,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    check_every_buyer_answered(&mut verdict, options, results);
    let winners: Vec<_> = results
        .buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .collect();
    check_winners(&mut verdict, options, drop, results, &winners);
    check_double_clicks(&mut verdict, results);
    if drop.fresh {
        check_first_eligible(&mut verdict, options.per_user_limit, drop, results)?;
    } else {
        verdict.notes.push(
            "stream-order check skipped: an existing drop's earlier purchases are unknown".into(),
        );
    }
    check_orders_in_database(&mut verdict, &options.database_url, drop, &winners).await;
    check_drop_view(&mut verdict, client, options, drop, winners.len()).await?;
    check_replays(&mut verdict, client, options, drop, results, &winners).await?;
    Ok(verdict)
}

/// Every buyer got a definitive answer, and no request a server error.
fn check_every_buyer_answered(
    verdict: &mut Verdict,
    options: &VerifyOptions,
    results: &BurstResults,
) {
    let buyers = &results.buyers;
    let undecided: Vec<_> = buyers
        .iter()
        .filter(|b| b.decided_after.is_none())
        .collect();
    if let Some(example) = undecided.first() {
        verdict.fail(format!(
            "{} buyers got no definitive answer (e.g. key {} saw statuses {:?})",
            undecided.len(),
            example.key,
            example.statuses
        ));
    }
    // A 503 (with Retry-After, nothing accepted) is the right answer while
    // the broker is down, so it only counts as an error without chaos; a 500
    // is never right.
    let unacceptable =
        |s: &&u16| **s == 500 || (!options.faults_injected && (**s >= 500 || **s == 0));
    let server_errors = buyers
        .iter()
        .flat_map(|b| &b.statuses)
        .filter(unacceptable)
        .count();
    if server_errors > 0 {
        verdict.fail(format!(
            "{server_errors} requests failed with 5xx or no answer"
        ));
    }
}

/// As many winners as there was stock (or buyers × limit), nobody over the
/// per-user limit, every winner with an order id of its own.
fn check_winners(
    verdict: &mut Verdict,
    options: &VerifyOptions,
    drop: &DropUnderTest,
    results: &BurstResults,
    winners: &[&BuyerResult],
) {
    let users: HashSet<&str> = results.buyers.iter().map(|b| b.user.as_str()).collect();
    let expected_winners = (drop.stock as usize).min(users.len() * options.per_user_limit as usize);
    if winners.len() != expected_winners {
        verdict.fail(format!(
            "{} winners, expected {expected_winners}",
            winners.len()
        ));
    }
    let mut per_user: HashMap<&str, u32> = HashMap::new();
    for w in winners {
        *per_user.entry(w.user.as_str()).or_default() += 1;
    }
    if let Some((user, n)) = per_user.iter().find(|(_, n)| **n > options.per_user_limit) {
        verdict.fail(format!(
            "user {user} won {n} times, limit {}",
            options.per_user_limit
        ));
    }
    let orders: HashSet<_> = winners
        .iter()
        .filter_map(|w| w.order_id.as_deref())
        .collect();
    if orders.len() != winners.len() {
        verdict.fail(format!(
            "{} winners share {} order ids",
            winners.len(),
            orders.len()
        ));
    }
}

/// The drop, as the API shows it, agrees with what the buyers were told.
async fn check_drop_view(
    verdict: &mut Verdict,
    client: &reqwest::Client,
    options: &VerifyOptions,
    drop: &DropUnderTest,
    winners: usize,
) -> anyhow::Result<()> {
    let view: serde_json::Value = client
        .get(format!("{}/v1/drops/{}", options.url, drop.sku))
        .send()
        .await?
        .json()
        .await?;
    let won_units = view["won"].as_u64().unwrap_or(u64::MAX);
    if won_units != winners as u64 {
        verdict.fail(format!(
            "the drop says {won_units} units won, buyers were told {winners}"
        ));
    }
    let remaining = view["remaining"].as_u64().unwrap_or(u64::MAX);
    if remaining != u64::from(drop.stock) - won_units.min(u64::from(drop.stock)) {
        verdict.fail(format!(
            "the drop says {remaining} remaining of {}",
            drop.stock
        ));
    }
    Ok(())
}

/// A sample of purchases, winners first, sent again: each gets the answer
/// it was given.
async fn check_replays(
    verdict: &mut Verdict,
    client: &reqwest::Client,
    options: &VerifyOptions,
    drop: &DropUnderTest,
    results: &BurstResults,
    winners: &[&BuyerResult],
) -> anyhow::Result<()> {
    let sample: Vec<_> = winners
        .iter()
        .copied()
        .chain(
            results
                .buyers
                .iter()
                .filter(|b| b.outcome.as_deref() != Some("won")),
        )
        .take(REPLAYS_MAX)
        .collect();
    for buyer in &sample {
        let answer = client
            .post(format!("{}/v1/drops/{}/purchases", options.url, drop.sku))
            .header("Idempotency-Key", &buyer.key)
            .header("Prefer", "wait=10")
            .json(&serde_json::json!({ "user_id": buyer.user }))
            .send()
            .await?;
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if status != buyer.final_status
            || body["outcome"].as_str() != buyer.outcome.as_deref()
            || body["order_id"].as_str() != buyer.order_id.as_deref()
        {
            verdict.fail(format!(
                "replay of {} changed its answer: {status} {body}",
                buyer.key
            ));
        }
    }
    verdict.replays_checked = sample.len();
    Ok(())
}

/// Both copies of a double-click got the same answer.
fn check_double_clicks(verdict: &mut Verdict, results: &BurstResults) {
    let differing: Vec<_> = results
        .buyers
        .iter()
        .filter_map(|b| b.echo.as_deref().map(|echo| (b, echo)))
        .filter(|(b, echo)| {
            (b.final_status, &b.outcome, &b.order_id)
                != (echo.final_status, &echo.outcome, &echo.order_id)
        })
        .collect();
    if let Some((b, echo)) = differing.first() {
        verdict.fail(format!(
            "{} double-clicks got two different answers (e.g. key {}: {} {:?} and {} {:?})",
            differing.len(),
            b.key,
            b.final_status,
            b.outcome,
            echo.final_status,
            echo.outcome
        ));
    }
}

/// The winners are the first eligible intents in stream order: replaying
/// every answered purchase, by the sequence it was given, through a fresh
/// ledger gives every purchase the outcome it was told.
fn check_first_eligible(
    verdict: &mut Verdict,
    per_user_limit: u32,
    drop: &DropUnderTest,
    results: &BurstResults,
) -> anyhow::Result<()> {
    let mut told: Vec<_> = results
        .buyers
        .iter()
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

/// Every `won` answer is an order in the database, and every order in the
/// database was answered `won` to someone, with the same order id.
async fn check_orders_in_database(
    verdict: &mut Verdict,
    database_url: &str,
    drop: &DropUnderTest,
    winners: &[&BuyerResult],
) {
    let stored = match stored_orders(database_url, drop).await {
        Ok(stored) => stored,
        Err(err) => {
            verdict.fail(format!(
                "could not read the orders from the database ({err:#}); \
                 pass --database-url of the gateway's database"
            ));
            return;
        }
    };
    let answered: HashMap<&str, &str> = winners
        .iter()
        .map(|w| (w.key.as_str(), w.order_id.as_deref().unwrap_or("")))
        .collect();
    let unrecorded = answered
        .iter()
        .filter(|(key, order)| stored.get(**key).map(String::as_str) != Some(**order))
        .count();
    let unannounced = stored
        .keys()
        .filter(|key| !answered.contains_key(key.as_str()))
        .count();
    if unrecorded > 0 {
        verdict.fail(format!(
            "{unrecorded} won answers have no matching order in the database"
        ));
    }
    if unannounced > 0 {
        verdict.fail(format!(
            "{unannounced} orders in the database were never answered won"
        ));
    }
}

/// Order id by idempotency key, for every won purchase of the drop.
async fn stored_orders(
    database_url: &str,
    drop: &DropUnderTest,
) -> anyhow::Result<HashMap<String, String>> {
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    let winners = store.winners(&drop.sku).await;
    store.close().await;
    Ok(winners?
        .into_iter()
        .map(|w| (w.idempotency_key.to_string(), w.order_id.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::burst::Habit;

    fn told(key: &str, user: &str, seq: u64, outcome: &str) -> BuyerResult {
        BuyerResult {
            key: key.into(),
            user: user.into(),
            seq: Some(seq),
            outcome: Some(outcome.into()),
            final_status: if outcome == "won" { 201 } else { 409 },
            decided_after: Some(Duration::from_millis(seq)),
            ..BuyerResult::default()
        }
    }

    fn results(buyers: Vec<BuyerResult>) -> BurstResults {
        BurstResults {
            buyers,
            wall: Duration::from_secs(1),
            seed: 0,
        }
    }

    fn first_eligible_violations(stock: u32, buyers: Vec<BuyerResult>) -> Vec<Violation> {
        let drop = DropUnderTest {
            sku: dropline_core::Sku::parse("verify-test").expect("sku"),
            stock,
            fresh: true,
        };
        let mut verdict = Verdict::default();
        check_first_eligible(&mut verdict, 1, &drop, &results(buyers)).expect("valid keys");
        verdict.violations
    }

    #[test]
    fn first_eligible_outcomes_in_stream_order_pass() {
        let buyers = vec![
            told("k1", "a", 1, "won"),
            told("k2", "a", 2, "limit_reached"),
            told("k3", "b", 3, "won"),
            told("k4", "c", 4, "sold_out"),
        ];
        assert!(first_eligible_violations(2, buyers).is_empty());
    }

    #[test]
    fn a_win_after_a_sold_out_is_a_violation() {
        let buyers = vec![
            told("k1", "a", 1, "won"),
            told("k2", "b", 2, "sold_out"),
            told("k3", "c", 3, "won"),
        ];
        let violations = first_eligible_violations(2, buyers);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].0.contains("2 purchases"), "{violations:?}");
    }

    #[test]
    fn a_second_win_for_one_user_is_a_violation() {
        let buyers = vec![told("k1", "a", 1, "won"), told("k2", "a", 2, "won")];
        assert_eq!(first_eligible_violations(5, buyers).len(), 1);
    }

    #[test]
    fn a_double_click_answered_two_ways_is_a_violation() {
        let mut first = told("k1", "a", 1, "won");
        first.habit = Habit::DoubleClick;
        let mut same = first.clone();
        same.habit = Habit::DoubleClick;
        first.echo = Some(Box::new(same));
        let mut verdict = Verdict::default();
        check_double_clicks(&mut verdict, &results(vec![first.clone()]));
        assert!(verdict.passed());

        let mut other = told("k1", "a", 1, "sold_out");
        other.habit = Habit::DoubleClick;
        first.echo = Some(Box::new(other));
        check_double_clicks(&mut verdict, &results(vec![first]));
        assert!(!verdict.passed());
    }
}
