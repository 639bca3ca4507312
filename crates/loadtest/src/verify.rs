//! Checks the promises from what buyers were told and what the API says.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::burst::BurstResults;
use crate::setup::DropUnderTest;
use crate::Args;

/// One broken promise, in words.
#[derive(Debug, Clone, Serialize)]
pub struct Violation(pub String);

#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub replays_checked: usize,
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
    args: &Args,
    drop: &DropUnderTest,
    results: &BurstResults,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
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
    let unacceptable = |s: &&u16| **s == 500 || (args.chaos.is_none() && (**s >= 500 || **s == 0));
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

    let winners: Vec<_> = buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .collect();
    let expected_winners = (drop.stock as usize).min(buyers.len());
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
    if let Some((user, n)) = per_user.iter().find(|(_, n)| **n > args.per_user_limit) {
        verdict.fail(format!(
            "user {user} won {n} times, limit {}",
            args.per_user_limit
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

    // First come, first served: every winner precedes every loser in stream order.
    let last_win = winners.iter().filter_map(|w| w.seq).max();
    let first_loss = buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("sold_out"))
        .filter_map(|b| b.seq)
        .min();
    if let (Some(last_win), Some(first_loss)) = (last_win, first_loss) {
        if first_loss < last_win {
            verdict.fail(format!(
                "a sold_out at seq {first_loss} precedes a win at seq {last_win}"
            ));
        }
    }

    // The drop agrees with the buyers.
    let view: serde_json::Value = client
        .get(format!("{}/v1/drops/{}", args.url(), drop.sku))
        .send()
        .await?
        .json()
        .await?;
    let won_units = view["won"].as_u64().unwrap_or(u64::MAX);
    if won_units != winners.len() as u64 {
        verdict.fail(format!(
            "the drop says {won_units} units won, buyers were told {}",
            winners.len()
        ));
    }
    let remaining = view["remaining"].as_u64().unwrap_or(u64::MAX);
    if remaining != u64::from(drop.stock) - won_units.min(u64::from(drop.stock)) {
        verdict.fail(format!(
            "the drop says {remaining} remaining of {}",
            drop.stock
        ));
    }

    // Replays get the recorded answer.
    let sample: Vec<_> = winners
        .iter()
        .copied()
        .chain(
            buyers
                .iter()
                .filter(|b| b.outcome.as_deref() != Some("won")),
        )
        .take(REPLAYS_MAX)
        .collect();
    for buyer in &sample {
        let answer = client
            .post(format!("{}/v1/drops/{}/purchases", args.url(), drop.sku))
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
    Ok(verdict)
}
