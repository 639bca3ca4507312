//! One row of the comparison: what the buyers were told, set against the
//! orders the design's database holds.
//!
//! - `skus`, `stock`: the drops on sale, and their units together.
//! - `sold`: orders in the database (one unit each).
//! - `oversold`: what each SKU sold beyond its stock, summed over SKUs.
//! - `duplicates`: orders beyond the first for one idempotency key.
//! - `lost`: buyers answered `won` with no order for their key in the
//!   database, plus keys holding an order whose buyer was not answered `won`
//!   (a unit gone without the buyer knowing).
//! - `errors`: requests answered 5xx or not at all (retries included).
//! - `wall_s`: from the burst to the last definitive answer;
//!   `decisions_per_s`: buyers answered definitively per second of it;
//!   `p50_ms`, `p99_ms`: burst to each buyer's definitive answer.
//!
//! A design **kept its promises** in a row when it sold exactly what it
//! should (of each SKU, all its stock, or one unit per buyer when its
//! buyers are fewer),
//! with nothing oversold, duplicated or lost and no errors.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use loadtest::burst::BurstResults;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub strategy: String,
    pub buyers: u32,
    pub skus: u32,
    pub stock: u32,
    /// Units a correct design sells: per SKU, the smaller of its stock and
    /// its buyers.
    #[serde(skip)]
    pub due: u64,
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

/// One order a design's database holds: the drop it sold and the buyer's
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Order {
    pub sku: String,
    pub key: String,
}

/// What was on sale: `skus` drops of `stock_each` units.
#[derive(Debug, Clone, Copy)]
pub struct OnSale {
    pub skus: u32,
    pub stock_each: u32,
}

/// `orders`: every order recorded, one entry per order.
pub fn row(
    workload: &str,
    strategy: &str,
    on_sale: OnSale,
    results: &BurstResults,
    orders: &[Order],
) -> Row {
    let buyers = &results.buyers;
    let sold = orders.len() as u64;
    let ordered: HashSet<(&str, &str)> = orders
        .iter()
        .map(|o| (o.sku.as_str(), o.key.as_str()))
        .collect();
    let duplicates = sold - ordered.len() as u64;
    let answered_won: HashSet<(&str, &str)> = buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .map(|b| (b.sku.as_str(), b.key.as_str()))
        .collect();
    let stock_each = u64::from(on_sale.stock_each);
    let beyond_stock = |count: u64| count.saturating_sub(stock_each);
    let oversold = per_sku(orders.iter().map(|o| o.sku.as_str()))
        .into_values()
        .map(beyond_stock)
        .sum();
    let due = per_sku(buyers.iter().map(|b| b.sku.as_str()))
        .into_values()
        .map(|count| count.min(stock_each))
        .sum();
    let lost =
        answered_won.difference(&ordered).count() + ordered.difference(&answered_won).count();
    let decided = results.decision_latencies();
    Row {
        workload: workload.to_string(),
        strategy: strategy.to_string(),
        buyers: buyers.len() as u32,
        skus: on_sale.skus,
        stock: on_sale.skus * on_sale.stock_each,
        due,
        sold,
        oversold,
        duplicates,
        lost: lost as u64,
        errors: results.server_errors() as u64,
        wall_s: results.wall.as_secs_f64(),
        decisions_per_s: results.decisions_per_s(),
        p50_ms: decided.quantile_ms(0.50),
        p99_ms: decided.quantile_ms(0.99),
    }
}

/// How many of `skus` there are of each SKU.
fn per_sku<'a>(skus: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u64> {
    let mut counts = HashMap::new();
    for sku in skus {
        *counts.entry(sku).or_default() += 1;
    }
    counts
}

impl Row {
    /// Whether the design kept its promises in this row (see the module).
    /// Every buyer of `compare`'s crowd is a distinct user buying one unit,
    /// so the right number sold is `due`.
    pub fn kept_promises(&self) -> bool {
        self.broken_promises().is_empty()
    }

    /// What went wrong in this row, for the terminal; empty when nothing did.
    pub fn broken_promises(&self) -> Vec<String> {
        let due = self.due;
        let mut broken = Vec::new();
        if self.oversold > 0 {
            broken.push(format!("oversold {}", self.oversold));
        } else if self.sold < due {
            broken.push(format!("unsold {} of {due}", due - self.sold));
        }
        for (count, what) in [
            (self.duplicates, "duplicate orders"),
            (self.lost, "lost orders"),
            (self.errors, "errors"),
        ] {
            if count > 0 {
                broken.push(format!("{what} {count}"));
            }
        }
        broken
    }
}

/// How many times dropline's wall time each other design took in one
/// workload's rows, e.g. `row-lock 3.1×, redis-lua 0.6×`; `None` without a
/// dropline row.
pub fn against_dropline(rows: &[&Row]) -> Option<String> {
    let dropline = rows.iter().find(|row| row.strategy == DROPLINE)?;
    let ratios: Vec<String> = rows
        .iter()
        .filter(|row| row.strategy != DROPLINE)
        .map(|row| format!("{} {:.1}×", row.strategy, row.wall_s / dropline.wall_s))
        .collect();
    (!ratios.is_empty()).then(|| {
        format!(
            "wall time against dropline's {:.2} s: {}",
            dropline.wall_s,
            ratios.join(", ")
        )
    })
}

/// The strategy name of dropline's rows.
pub const DROPLINE: &str = "dropline";

/// The closing verdict over every row: which designs kept their promises in
/// every workload, and what each other design broke where. `Err` carries the
/// same text when dropline itself broke a promise.
pub fn verdict(rows: &[Row]) -> Result<String, String> {
    let mut strategies: Vec<&str> = Vec::new();
    for row in rows {
        if !strategies.contains(&row.strategy.as_str()) {
            strategies.push(&row.strategy);
        }
    }
    let mut kept = Vec::new();
    let mut lines = Vec::new();
    for strategy in &strategies {
        let broken: Vec<String> = rows
            .iter()
            .filter(|row| row.strategy == *strategy && !row.kept_promises())
            .map(|row| format!("{}: {}", row.workload, row.broken_promises().join(", ")))
            .collect();
        if broken.is_empty() {
            kept.push(*strategy);
        } else {
            lines.push(format!(
                "{strategy} broke a promise ({})",
                broken.join("; ")
            ));
        }
    }
    if !kept.is_empty() {
        lines.insert(
            0,
            format!(
                "kept every promise in every workload run: {}",
                kept.join(", ")
            ),
        );
    }
    let text = lines.join("\n");
    if strategies.contains(&DROPLINE) && !kept.contains(&DROPLINE) {
        Err(text)
    } else {
        Ok(text)
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
    use loadtest::burst::BuyerResult;

    fn buyer(key: &str, outcome: &str, statuses: Vec<u16>) -> BuyerResult {
        bought_from("s", key, outcome, statuses)
    }

    fn bought_from(sku: &str, key: &str, outcome: &str, statuses: Vec<u16>) -> BuyerResult {
        BuyerResult {
            sku: sku.into(),
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

    fn clean(workload: &str, strategy: &str, wall_s: f64) -> Row {
        Row {
            workload: workload.into(),
            strategy: strategy.into(),
            buyers: 500,
            skus: 1,
            stock: 100,
            due: 100,
            sold: 100,
            oversold: 0,
            duplicates: 0,
            lost: 0,
            errors: 0,
            wall_s,
            decisions_per_s: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    #[test]
    fn a_row_keeps_its_promises_only_when_it_sells_exactly_what_it_should() {
        assert!(clean("sneaker", "row-lock", 1.0).kept_promises());
        let oversold = Row {
            sold: 103,
            oversold: 3,
            ..clean("sneaker", "seed-lock", 1.0)
        };
        assert_eq!(oversold.broken_promises(), ["oversold 3"]);
        let unsold = Row {
            sold: 98,
            errors: 2,
            ..clean("sneaker", "redis-lua", 1.0)
        };
        assert_eq!(unsold.broken_promises(), ["unsold 2 of 100", "errors 2"]);
        // Fewer buyers than units: one unit each is everything due.
        let few_buyers = Row {
            buyers: 40,
            due: 40,
            sold: 40,
            ..clean("big", "dropline", 1.0)
        };
        assert!(few_buyers.kept_promises());
    }

    #[test]
    fn the_verdict_names_who_kept_their_promises_and_fails_only_for_dropline() {
        let seed = Row {
            sold: 150,
            oversold: 50,
            lost: 1,
            ..clean("sneaker", "seed-lock", 60.0)
        };
        let rows = vec![
            seed.clone(),
            clean("sneaker", "row-lock", 4.0),
            clean("sneaker", DROPLINE, 2.0),
        ];
        let text = verdict(&rows).expect("dropline kept its promises");
        assert_eq!(
            text,
            "kept every promise in every workload run: row-lock, dropline\n\
             seed-lock broke a promise (sneaker: oversold 50, lost orders 1)"
        );
        let refs: Vec<&Row> = rows.iter().collect();
        assert_eq!(
            against_dropline(&refs).as_deref(),
            Some("wall time against dropline's 2.00 s: seed-lock 30.0×, row-lock 2.0×")
        );

        let broken_dropline = Row {
            duplicates: 1,
            ..clean("big", DROPLINE, 2.0)
        };
        let text = verdict(&[clean("big", "row-lock", 9.0), broken_dropline])
            .expect_err("dropline broke a promise");
        assert!(
            text.contains("dropline broke a promise (big: duplicate orders 1)"),
            "{text}"
        );
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
        let orders = orders_of(&[("s", "a"), ("s", "b"), ("s", "b"), ("s", "d")]);
        let row = row("sneaker", "seed-lock", one_sku(2), &results, &orders);
        assert_eq!(row.sold, 4);
        assert_eq!(row.oversold, 2);
        assert_eq!(row.duplicates, 1);
        assert_eq!(row.lost, 2);
        assert_eq!(row.errors, 1);
        assert_eq!(row.decisions_per_s, 2.0);
    }

    fn one_sku(stock_each: u32) -> OnSale {
        OnSale {
            skus: 1,
            stock_each,
        }
    }

    fn orders_of(orders: &[(&str, &str)]) -> Vec<Order> {
        orders
            .iter()
            .map(|(sku, key)| Order {
                sku: (*sku).into(),
                key: (*key).into(),
            })
            .collect()
    }

    #[test]
    fn with_several_skus_each_is_held_to_its_own_stock() {
        // Two sizes of one pair each: size a sold twice, size b never,
        // though b's buyer was there. Two sold of two units is still wrong.
        let results = BurstResults {
            buyers: vec![
                bought_from("a", "k1", "won", vec![201]),
                bought_from("a", "k2", "won", vec![201]),
                bought_from("b", "k3", "sold_out", vec![409]),
            ],
            wall: Duration::from_secs(1),
            seed: 0,
        };
        let orders = orders_of(&[("a", "k1"), ("a", "k2")]);
        let on_sale = OnSale {
            skus: 2,
            stock_each: 1,
        };
        let oversold = row("sizes", "seed-lock", on_sale, &results, &orders);
        assert_eq!((oversold.skus, oversold.stock, oversold.sold), (2, 2, 2));
        assert_eq!(
            oversold.oversold, 1,
            "size a sold one pair beyond its stock"
        );
        assert_eq!(oversold.due, 2, "one pair of each size had a buyer");
        assert_eq!(oversold.broken_promises(), ["oversold 1"]);
        // The same key in two SKUs is two orders, not a duplicate.
        let orders = orders_of(&[("a", "k1"), ("b", "k1")]);
        let spread = row("sizes", "row-lock", on_sale, &results, &orders);
        assert_eq!((spread.oversold, spread.duplicates), (0, 0));
    }
}
