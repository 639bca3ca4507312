//! One row of the comparison: what the buyers were told, set against the
//! orders the design's database holds.
//!
//! - `sold`: orders in the database (one unit each).
//! - `oversold`: `sold - stock`, when positive.
//! - `duplicates`: orders beyond the first for one idempotency key.
//! - `lost`: buyers answered `won` with no order for their key in the
//!   database, plus keys holding an order whose buyer was not answered `won`
//!   (a unit gone without the buyer knowing).
//! - `errors`: requests answered 5xx or not at all (retries included).
//! - `wall_s`: from the burst to the last definitive answer;
//!   `decisions_per_s`: buyers answered definitively per second of it;
//!   `p50_ms`, `p99_ms`: burst to each buyer's definitive answer.

use std::collections::HashSet;

use serde::Serialize;

use crate::burst::BurstResults;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub strategy: String,
    pub buyers: u32,
    pub stock: u32,
    pub sold: u64,
    pub oversold: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub errors: u64,
    pub wall_s: f64,
    pub decisions_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `order_keys`: the idempotency key of every order, one entry per order.
pub fn row(
    workload: &str,
    strategy: &str,
    stock: u32,
    results: &BurstResults,
    order_keys: &[String],
) -> Row {
    let buyers = &results.buyers;
    let sold = order_keys.len() as u64;
    let ordered: HashSet<&str> = order_keys.iter().map(String::as_str).collect();
    let duplicates = sold - ordered.len() as u64;
    let answered_won: HashSet<&str> = buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .map(|b| b.key.as_str())
        .collect();
    let lost =
        answered_won.difference(&ordered).count() + ordered.difference(&answered_won).count();
    let decided = results.decision_latencies();
    Row {
        workload: workload.to_string(),
        strategy: strategy.to_string(),
        buyers: buyers.len() as u32,
        stock,
        sold,
        oversold: sold.saturating_sub(stock.into()),
        duplicates,
        lost: lost as u64,
        errors: results.server_errors() as u64,
        wall_s: results.wall.as_secs_f64(),
        decisions_per_s: results.decisions_per_s(),
        p50_ms: decided.quantile_ms(0.50),
        p99_ms: decided.quantile_ms(0.99),
    }
}

/// One table for the rows of one workload, for the terminal.
pub fn table(title: &str, rows: &[&Row]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "strategy",
        "buyers",
        "stock",
        "sold",
        "oversold",
        "duplicates",
        "lost",
        "errors",
        "wall s",
        "decisions/s",
        "p50 ms",
        "p99 ms",
    ]);
    for row in rows {
        table.add_row(vec![
            row.strategy.clone(),
            row.buyers.to_string(),
            row.stock.to_string(),
            row.sold.to_string(),
            row.oversold.to_string(),
            row.duplicates.to_string(),
            row.lost.to_string(),
            row.errors.to_string(),
            format!("{:.2}", row.wall_s),
            format!("{:.0}", row.decisions_per_s),
            format!("{:.0}", row.p50_ms),
            format!("{:.0}", row.p99_ms),
        ]);
    }
    format!("{title}\n{table}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::burst::BuyerResult;

    fn buyer(key: &str, outcome: &str, statuses: Vec<u16>) -> BuyerResult {
        BuyerResult {
            key: key.into(),
            user: key.into(),
            first_status: statuses[0],
            final_status: *statuses.last().unwrap_or(&0),
            statuses,
            outcome: Some(outcome.into()),
            order_id: None,
            seq: None,
            accepted_after: Duration::from_millis(1),
            decided_after: Some(Duration::from_millis(10)),
            ..BuyerResult::default()
        }
    }

    #[test]
    fn oversell_duplicates_and_lost_orders_are_counted_from_the_database() {
        let results = BurstResults {
            buyers: vec![
                buyer("a", "won", vec![201]),
                buyer("b", "won", vec![503, 201]),
                buyer("c", "won", vec![201]),
                buyer("d", "sold_out", vec![409]),
            ],
            wall: Duration::from_secs(2),
            seed: 0,
        };
        // b has two orders, c none, d one it was never told about.
        let keys: Vec<String> = ["a", "b", "b", "d"].map(String::from).into();
        let row = row("sneaker", "seed-lock", 2, &results, &keys);
        assert_eq!(row.sold, 4);
        assert_eq!(row.oversold, 2);
        assert_eq!(row.duplicates, 1);
        assert_eq!(row.lost, 2);
        assert_eq!(row.errors, 1);
        assert_eq!(row.decisions_per_s, 2.0);
    }
}
