//! The tally: printed for people, written as JSON for machines. Over many
//! SKUs the counts are the crowd's totals (won, stock, ...), and how many
//! SKUs sold out says how they spread.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::burst::{BurstResults, Habit};
use crate::latency::Latencies;
use crate::setup::DropUnderTest;
use crate::verify::{Verdict, Violation};

#[derive(Debug, Serialize)]
pub struct Report {
    /// The SKU; over many, the first and the last (`load-…-0 … load-…-199`).
    pub sku: String,
    /// SKUs on sale (one drop each).
    pub skus: usize,
    /// SKUs whose every unit was won.
    pub skus_sold_out: usize,
    /// Each SKU's stock, when they all have the same (the tool's own drops
    /// always do); `None` otherwise.
    pub stock_per_sku: Option<u32>,
    /// Users in the crowd.
    pub buyers: usize,
    /// Purchase keys sent (two-tab buyers send two).
    pub purchases: usize,
    pub double_clicks: usize,
    pub two_tabs: usize,
    pub seed: u64,
    /// Units for sale over all SKUs.
    pub stock: u32,
    pub won: usize,
    pub sold_out: usize,
    pub limit_reached: usize,
    pub pending_resolved: usize,
    pub errors: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub burst_to_last_decision_s: f64,
    pub decisions_per_s: f64,
    pub accept_p50_ms: f64,
    pub accept_p99_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub chaos: Option<String>,
    /// Seconds of CPU each part of the tool's own stack used from the
    /// release to the last answer (empty against someone else's gateway).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_during_burst_s: BTreeMap<String, f64>,
    pub verified: bool,
    pub replays_checked: usize,
    pub violations: Vec<Violation>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(
        drops: &[DropUnderTest],
        results: &BurstResults,
        verdict: &Verdict,
        chaos: Option<String>,
    ) -> Self {
        let buyers = &results.buyers;
        let count = |outcome: &str| {
            buyers
                .iter()
                .filter(|b| b.outcome.as_deref() == Some(outcome))
                .count()
        };
        let mut statuses = BTreeMap::new();
        for b in buyers {
            *statuses.entry(b.first_status).or_insert(0) += 1;
        }
        let decided = results.decision_latencies();
        let accepted = Latencies::from_durations(buyers.iter().map(|b| b.accepted_after));
        let wall = results.wall.as_secs_f64();
        let habits = |habit: Habit| {
            buyers
                .iter()
                .filter(|b| b.habit == habit)
                .map(|b| &b.user)
                .collect::<HashSet<_>>()
                .len()
        };
        Report {
            sku: sku_label(drops),
            skus: drops.len(),
            skus_sold_out: skus_sold_out(drops, results),
            stock_per_sku: drops
                .first()
                .map(|first| first.stock)
                .filter(|stock| drops.iter().all(|d| d.stock == *stock)),
            buyers: buyers.iter().map(|b| &b.user).collect::<HashSet<_>>().len(),
            purchases: buyers.len(),
            double_clicks: habits(Habit::DoubleClick),
            two_tabs: habits(Habit::TwoTabs),
            seed: results.seed,
            stock: drops.iter().map(|d| d.stock).sum(),
            won: count("won"),
            sold_out: count("sold_out"),
            limit_reached: count("limit_reached"),
            pending_resolved: buyers
                .iter()
                .filter(|b| b.first_status == 202 && b.decided_after.is_some())
                .count(),
            errors: results.server_errors(),
            statuses,
            burst_to_last_decision_s: wall,
            decisions_per_s: results.decisions_per_s(),
            accept_p50_ms: accepted.quantile_ms(0.50),
            accept_p99_ms: accepted.quantile_ms(0.99),
            p50_ms: decided.quantile_ms(0.50),
            p90_ms: decided.quantile_ms(0.90),
            p99_ms: decided.quantile_ms(0.99),
            max_ms: decided.max_ms(),
            chaos,
            cpu_during_burst_s: BTreeMap::new(),
            verified: verdict.passed(),
            replays_checked: verdict.replays_checked,
            violations: verdict.violations.clone(),
            notes: verdict.notes.clone(),
        }
    }

    pub fn print(&self) {
        let drops = match self.skus {
            1 => "drop".to_string(),
            skus => format!("{skus} drops"),
        };
        println!(
            "{drops} {}: {} buyers for {} units ({} purchases: {} double-clicked, {} bought in two tabs; crowd seed {})",
            self.sku, self.buyers, self.stock, self.purchases, self.double_clicks, self.two_tabs, self.seed
        );
        println!("  {}", self.sell_out());
        println!(
            "  won {}   sold_out {}   limit_reached {}   errors {}   (202 resolved by GET: {})",
            self.won, self.sold_out, self.limit_reached, self.errors, self.pending_resolved
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        println!("  HTTP statuses of the POSTs: {}", statuses.join(", "));
        println!(
            "  burst to last decision {:.3} s   ({:.0} decisions/s)",
            self.burst_to_last_decision_s, self.decisions_per_s
        );
        println!(
            "  time to first answer: p50 {:.1} ms   p99 {:.1} ms",
            self.accept_p50_ms, self.accept_p99_ms
        );
        println!(
            "  time to decision: p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        );
        if let Some(chaos) = &self.chaos {
            println!("  chaos: {chaos}");
        }
        if !self.cpu_during_burst_s.is_empty() {
            let parts: Vec<String> = self
                .cpu_during_burst_s
                .iter()
                .map(|(part, seconds)| format!("{part} {seconds:.2}"))
                .collect();
            println!("  CPU during the burst (s): {}", parts.join(", "));
        }
        for note in &self.notes {
            println!("  note: {note}");
        }
        if self.verified {
            println!(
                "  verified: every promise held ({} replays stable)",
                self.replays_checked
            );
        } else {
            println!("  VERIFICATION FAILED:");
            for Violation(what) in &self.violations {
                println!("    - {what}");
            }
        }
    }

    /// How the SKUs sold, in one line: "200 of 200 SKUs sold their 10 units".
    pub fn sell_out(&self) -> String {
        let one_sku = self.skus == 1;
        let of = format!(
            "{} of {} SKU{}",
            self.skus_sold_out,
            self.skus,
            if one_sku { "" } else { "s" }
        );
        let their = if one_sku { "its" } else { "their" };
        match self.stock_per_sku {
            Some(1) => format!("{of} sold {their} 1 unit"),
            Some(stock) => format!("{of} sold {their} {stock} units"),
            None => format!("{of} sold out"),
        }
    }
}

/// The SKU, or the first and last of many.
fn sku_label(drops: &[DropUnderTest]) -> String {
    match drops {
        [] => String::new(),
        [only] => only.sku.to_string(),
        [first, .., last] => format!("{} … {}", first.sku, last.sku),
    }
}

/// SKUs whose buyers were told `won` for every unit (one unit a win:
/// buyers send no quantity).
fn skus_sold_out(drops: &[DropUnderTest], results: &BurstResults) -> usize {
    let by_sku = results.by_sku();
    drops
        .iter()
        .filter(|drop| {
            let won = by_sku.get(drop.sku.as_str()).map_or(0, |purchases| {
                purchases
                    .iter()
                    .filter(|b| b.outcome.as_deref() == Some("won"))
                    .count()
            });
            won >= drop.stock as usize
        })
        .count()
}
