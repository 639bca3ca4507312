//! Checks the promises from what buyers were told and what the API says.
//!
//! Every promise is per SKU (each drop has its own line, stock and per-user
//! limit), so each drop is checked on its own purchases and a violation
//! names its SKU; only the checks of single answers (every buyer answered,
//! double-clicks alike, replays stable) look at the crowd as a whole.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use dropline_core::Sku;
use dropline_store::{PoolOptions, Store};

use crate::burst::{BurstResults, BuyerResult};
use crate::credentials::Credentials;
use crate::setup::DropUnderTest;

mod line;

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
    /// The buyers' tokens, to send a purchase again as its buyer.
    pub credentials: Credentials,
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

    /// Takes in the violations found on one SKU, each naming it.
    fn absorb(&mut self, sku: &Sku, checked: Verdict) {
        self.violations.extend(
            checked
                .violations
                .into_iter()
                .map(|Violation(what)| Violation(format!("SKU {sku}: {what}"))),
        );
    }
}

/// How many answers are replayed to check they are stable, over all SKUs.
const REPLAYS_MAX: usize = 200;

/// SKUs checked at once: each check is a database read and a GET, and a
/// run may have thousands of SKUs.
const SKUS_IN_FLIGHT_MAX: usize = 8;

/// Checks every promise on `drops` (the burst's, in SKU order) against
/// what the buyers were told.
pub async fn verify(
    client: &reqwest::Client,
    options: &VerifyOptions,
    drops: &[DropUnderTest],
    results: &BurstResults,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    check_every_buyer_answered(&mut verdict, options, results);
    check_double_clicks(&mut verdict, results);
    if drops.iter().any(|drop| !drop.fresh) {
        verdict.notes.push(
            "stream-order check skipped: an existing drop's earlier purchases are unknown".into(),
        );
    }
    let by_sku = results.by_sku();
    let lines: Vec<&[&BuyerResult]> = drops
        .iter()
        .map(|drop| by_sku.get(drop.sku.as_str()).map_or(&[][..], Vec::as_slice))
        .collect();
    check_told_per_sku(&mut verdict, options.per_user_limit, drops, &lines)?;
    let store = Store::connect_lazy(&options.database_url, &PoolOptions::default())?;
    let stored = futures::stream::iter(drops.iter().zip(&lines))
        .map(|(drop, purchases)| check_recorded(client, options, &store, drop, purchases))
        .buffered(SKUS_IN_FLIGHT_MAX)
        .try_collect::<Vec<_>>()
        .await;
    store.close().await;
    for (drop, checked) in drops.iter().zip(stored?) {
        verdict.absorb(&drop.sku, checked);
    }
    check_replays(&mut verdict, client, options, &lines).await?;
    Ok(verdict)
}

/// What each drop's buyers were told keeps the drop's promises: as many
/// winners as its stock allows, its per-user limit, and (for a drop made
/// for the run) the first eligible in its line won.
fn check_told_per_sku(
    verdict: &mut Verdict,
    per_user_limit: u32,
    drops: &[DropUnderTest],
    lines: &[&[&BuyerResult]],
) -> anyhow::Result<()> {
    for (drop, purchases) in drops.iter().zip(lines) {
        let mut checked = Verdict::default();
        check_winners(&mut checked, per_user_limit, drop, purchases);
        if drop.fresh {
            line::check_first_eligible(&mut checked, per_user_limit, drop, purchases)?;
            line::check_winners_before_losers(&mut checked, purchases);
        }
        verdict.absorb(&drop.sku, checked);
    }
    Ok(())
}

/// What the database and the API hold of one drop agrees with what its
/// buyers were told.
async fn check_recorded(
    client: &reqwest::Client,
    options: &VerifyOptions,
    store: &Store,
    drop: &DropUnderTest,
    purchases: &[&BuyerResult],
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    let winners: Vec<&BuyerResult> = purchases.iter().copied().filter(won).collect();
    check_orders_in_database(&mut verdict, store, drop, &winners).await;
    if drop.fresh {
        line::check_answered_at_once_never_stood_in_line(&mut verdict, store, drop, purchases)
            .await?;
    }
    check_drop_view(&mut verdict, client, options, drop, winners.len()).await?;
    Ok(verdict)
}

fn won(buyer: &&BuyerResult) -> bool {
    buyer.outcome.as_deref() == Some("won")
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
            "{} buyers got no definitive answer (e.g. key {} of SKU {} saw statuses {:?})",
            undecided.len(),
            example.key,
            example.sku,
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
    per_user_limit: u32,
    drop: &DropUnderTest,
    purchases: &[&BuyerResult],
) {
    let winners: Vec<&BuyerResult> = purchases.iter().copied().filter(won).collect();
    let users: HashSet<&str> = purchases.iter().map(|b| b.user.as_str()).collect();
    let expected_winners = (drop.stock as usize).min(users.len() * per_user_limit as usize);
    if winners.len() != expected_winners {
        verdict.fail(format!(
            "{} winners, expected {expected_winners}",
            winners.len()
        ));
    }
    let mut per_user: HashMap<&str, u32> = HashMap::new();
    for w in &winners {
        *per_user.entry(w.user.as_str()).or_default() += 1;
    }
    if let Some((user, n)) = per_user.iter().find(|(_, n)| **n > per_user_limit) {
        verdict.fail(format!("user {user} won {n} times, limit {per_user_limit}"));
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

/// A sample of purchases, winners first, sent again to their SKUs: each
/// gets the answer it was given.
async fn check_replays(
    verdict: &mut Verdict,
    client: &reqwest::Client,
    options: &VerifyOptions,
    lines: &[&[&BuyerResult]],
) -> anyhow::Result<()> {
    let sample = replay_sample(lines, REPLAYS_MAX);
    for buyer in &sample {
        let mut replay = client
            .post(format!("{}/v1/drops/{}/purchases", options.url, buyer.sku))
            .header("Idempotency-Key", &buyer.key)
            .header("Prefer", "wait=10")
            .json(&serde_json::json!({ "user_id": buyer.user }));
        if let Some(authorization) = options.credentials.authorization_for(&buyer.user) {
            replay = replay.header("Authorization", authorization);
        }
        let answer = replay.send().await?;
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if status != buyer.final_status
            || body["outcome"].as_str() != buyer.outcome.as_deref()
            || body["order_id"].as_str() != buyer.order_id.as_deref()
        {
            verdict.fail(format!(
                "SKU {}: replay of {} changed its answer: {status} {body}",
                buyer.sku, buyer.key
            ));
        }
    }
    verdict.replays_checked = sample.len();
    Ok(())
}

/// At most `len` purchases of the SKUs' `lines`, each SKU's winners before
/// its other purchases, taken one SKU after another: a sample smaller than
/// the run still reaches every SKU it can, a winner of each first.
fn replay_sample<'a>(lines: &[&[&'a BuyerResult]], len: usize) -> Vec<&'a BuyerResult> {
    let ordered: Vec<Vec<&BuyerResult>> = lines
        .iter()
        .map(|line| {
            let (winners, others): (Vec<&BuyerResult>, Vec<&BuyerResult>) =
                line.iter().copied().partition(won);
            winners.into_iter().chain(others).collect()
        })
        .collect();
    let longest = ordered.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|round| {
            ordered
                .iter()
                .filter_map(move |line| line.get(round).copied())
        })
        .take(len)
        .collect()
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
            "{} double-clicks got two different answers (e.g. key {} of SKU {}: {} {:?} and {} {:?})",
            differing.len(),
            b.key,
            b.sku,
            b.final_status,
            b.outcome,
            echo.final_status,
            echo.outcome
        ));
    }
}

/// Every `won` answer is an order in the database, and every order in the
/// database was answered `won` to someone, with the same order id.
async fn check_orders_in_database(
    verdict: &mut Verdict,
    store: &Store,
    drop: &DropUnderTest,
    winners: &[&BuyerResult],
) {
    let stored: HashMap<String, String> = match store.winners(&drop.sku).await {
        Ok(stored) => stored
            .into_iter()
            .map(|w| (w.idempotency_key.to_string(), w.order_id.to_string()))
            .collect(),
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
            order_id: (outcome == "won").then(|| format!("order-{key}")),
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
        let purchases: Vec<&BuyerResult> = buyers.iter().collect();
        let mut verdict = Verdict::default();
        line::check_first_eligible(&mut verdict, 1, &drop, &purchases).expect("valid keys");
        verdict.violations
    }

    fn at(sku: &str, buyer: BuyerResult) -> BuyerResult {
        BuyerResult {
            sku: sku.into(),
            ..buyer
        }
    }

    fn fresh_drop(sku: &str, stock: u32) -> DropUnderTest {
        DropUnderTest {
            sku: Sku::parse(sku).expect("sku"),
            stock,
            fresh: true,
        }
    }

    /// What `verify` checks of the answers alone, SKU by SKU.
    fn told_violations(drops: &[DropUnderTest], buyers: &[BuyerResult]) -> Vec<String> {
        let results = results(buyers.to_vec());
        let by_sku = results.by_sku();
        let lines: Vec<&[&BuyerResult]> = drops
            .iter()
            .map(|d| by_sku.get(d.sku.as_str()).map_or(&[][..], Vec::as_slice))
            .collect();
        let mut verdict = Verdict::default();
        check_told_per_sku(&mut verdict, 1, drops, &lines).expect("valid keys");
        verdict.violations.into_iter().map(|v| v.0).collect()
    }

    #[test]
    fn each_sku_is_checked_on_its_own_line_and_stock() {
        // Sequences restart on every SKU, and each SKU sells out on its own.
        let drops = [fresh_drop("a", 1), fresh_drop("b", 2)];
        let buyers = [
            at("a", told("k1", "u1", 1, "won")),
            at("b", told("k2", "u2", 1, "won")),
            at("a", told("k3", "u3", 2, "sold_out")),
            at("b", told("k4", "u4", 2, "won")),
            at("b", told("k5", "u5", 3, "sold_out")),
        ];
        assert_eq!(told_violations(&drops, &buyers), Vec::<String>::new());
    }

    #[test]
    fn a_violation_names_the_sku_it_happened_on() {
        let drops = [fresh_drop("a", 1), fresh_drop("b", 1)];
        let buyers = [
            at("a", told("k1", "u1", 1, "won")),
            at("b", told("k2", "u2", 1, "sold_out")),
            at("b", told("k3", "u3", 2, "won")),
        ];
        let violations = told_violations(&drops, &buyers);
        assert!(!violations.is_empty());
        assert!(
            violations.iter().all(|v| v.starts_with("SKU b: ")),
            "{violations:?}"
        );
    }

    #[test]
    fn a_user_over_the_limit_on_one_sku_is_named_with_that_sku() {
        // One win on each SKU is within the limit of 1 per drop.
        let drops = [fresh_drop("a", 5), fresh_drop("b", 5)];
        let buyers = [
            at("a", told("k1", "u1", 1, "won")),
            at("b", told("k2", "u2", 1, "won")),
            at("b", told("k3", "u2", 2, "won")),
        ];
        let violations = told_violations(&drops, &buyers);
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with("SKU b: user u2 won 2 times")),
            "{violations:?}"
        );
        assert!(violations.iter().all(|v| v.starts_with("SKU b: ")));
    }

    #[test]
    fn the_replay_sample_takes_a_winner_of_every_sku_first() {
        let buyers: Vec<BuyerResult> = (0..30)
            .map(|i| {
                let outcome = if i % 10 == 0 { "won" } else { "sold_out" };
                at(
                    &format!("s{}", i % 3),
                    told(&format!("k{i}"), "u", i, outcome),
                )
            })
            .collect();
        let results = results(buyers);
        let by_sku = results.by_sku();
        let lines: Vec<&[&BuyerResult]> = ["s0", "s1", "s2"]
            .iter()
            .map(|sku| by_sku[sku].as_slice())
            .collect();
        let sample = replay_sample(&lines, 4);
        let keys: Vec<&str> = sample.iter().map(|b| b.key.as_str()).collect();
        // k0 (s0), k10 (s1), k20 (s2) won; then s0's first other purchase.
        assert_eq!(keys, ["k0", "k10", "k20", "k3"]);
        assert_eq!(replay_sample(&lines, 200).len(), 30);
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
