//! The page's header: what ran, the verdict, and the tally as cards.

use crate::burst::BurstResults;
use crate::latency::Latencies;
use crate::report::Report;
use crate::verify::Violation;

use super::series::{decided_count, ms};
use super::text::{duration_ms, escape, thousands};
use super::RunInfo;

pub(super) fn header(report: &Report, results: &BurstResults, run: Option<&RunInfo>) -> String {
    let over = match report.skus {
        1 => String::new(),
        skus => format!(" over {} SKUs", thousands(skus as u64)),
    };
    let mut html = format!(
        "<h1>dropline load test <span class=\"sku\">{}</span></h1>\n<p class=\"what\">{} buyers \
         ({} purchases) for {} units{over}, released at one instant</p>\n",
        escape(&report.sku),
        thousands(report.buyers as u64),
        thousands(report.purchases as u64),
        thousands(u64::from(report.stock)),
    );
    html.push_str(&verdict(report));
    html.push_str(&notes(report));
    html.push_str("<section class=\"cards\">\n");
    html.push_str(&run_card(report, run));
    html.push_str(&outcomes_card(report, results));
    html.push_str(&throughput_card(report, results));
    html.push_str("</section>\n");
    html.push_str(&latency_card(report, results));
    html
}

fn verdict(report: &Report) -> String {
    if report.verified {
        return format!(
            "<div class=\"verdict passed\">PASSED: every promise held ({} replays stable)</div>\n",
            thousands(report.replays_checked as u64)
        );
    }
    let items: String = report
        .violations
        .iter()
        .map(|Violation(what)| format!("<li>{}</li>", escape(what)))
        .collect();
    format!("<div class=\"verdict failed\">FAILED: promises broken<ul>{items}</ul></div>\n")
}

/// Checks that could not apply to this run: not failures, but worth a look.
fn notes(report: &Report) -> String {
    if report.notes.is_empty() {
        return String::new();
    }
    let items: String = report
        .notes
        .iter()
        .map(|note| format!("<li>{}</li>", escape(note)))
        .collect();
    format!("<div class=\"notes\">Notes<ul>{items}</ul></div>\n")
}

/// One card of label/value rows; values are already HTML.
/// Wide rows put the value under its label, for values too long to share
/// a line (a URL, a list of statuses).
fn card(title: &str, rows: &[(&str, String)], wide: &[(&str, String)]) -> String {
    let rows: String = rows
        .iter()
        .map(|(label, value)| format!("<dt>{label}</dt><dd>{value}</dd>"))
        .chain(wide.iter().map(|(label, value)| {
            format!("<dt class=\"wide\">{label}</dt><dd class=\"wide\">{value}</dd>")
        }))
        .collect();
    format!("<div class=\"card\"><h2>{title}</h2><dl>{rows}</dl></div>\n")
}

fn run_card(report: &Report, run: Option<&RunInfo>) -> String {
    let not_recorded = || "<span class=\"muted\">not recorded</span>".to_string();
    let target = run.map_or_else(not_recorded, |run| escape(&run.url));
    let limit = run.map_or_else(not_recorded, |run| run.per_user_limit.to_string());
    let mut rows = vec![
        ("buyers", thousands(report.buyers as u64)),
        ("purchases", thousands(report.purchases as u64)),
        (
            "double-clicked / two tabs",
            format!(
                "{} / {}",
                thousands(report.double_clicks as u64),
                thousands(report.two_tabs as u64)
            ),
        ),
        ("crowd seed", report.seed.to_string()),
        ("SKUs", thousands(report.skus as u64)),
        ("stock (all SKUs)", thousands(u64::from(report.stock))),
        ("per-user limit", limit),
    ];
    let mut wide = vec![("target", target)];
    // A fault's description is a sentence: it gets a line of its own.
    match &report.chaos {
        Some(chaos) => wide.push(("chaos", escape(chaos))),
        None => rows.push(("chaos", "none".to_string())),
    }
    card("Run", &rows, &wide)
}

fn outcomes_card(report: &Report, results: &BurstResults) -> String {
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}: {}", thousands(*n as u64)))
        .collect();
    let undecided = results.buyers.len() - decided_count(results);
    card(
        "Outcomes",
        &[
            ("won", thousands(report.won as u64)),
            (
                "SKUs sold out",
                format!(
                    "{} of {}",
                    thousands(report.skus_sold_out as u64),
                    thousands(report.skus as u64)
                ),
            ),
            ("sold_out", thousands(report.sold_out as u64)),
            ("limit_reached", thousands(report.limit_reached as u64)),
            ("undecided", thousands(undecided as u64)),
            (
                "202 resolved by GET",
                thousands(report.pending_resolved as u64),
            ),
            ("5xx or no answer", thousands(report.errors as u64)),
        ],
        &[("first POST statuses", statuses.join(" · "))],
    )
}

/// The sell-out instant is not on `Report`: it is the last winner's answer.
fn throughput_card(report: &Report, results: &BurstResults) -> String {
    let sold_out_after = results
        .buyers
        .iter()
        .filter(|b| b.outcome.as_deref() == Some("won"))
        .filter_map(|b| b.decided_after)
        .max()
        .map_or_else(|| "no unit won".to_string(), |d| duration_ms(ms(d)));
    card(
        "Throughput",
        &[
            (
                "purchases decided",
                thousands(decided_count(results) as u64),
            ),
            (
                "decisions/s",
                thousands(report.decisions_per_s.round() as u64),
            ),
            (
                "burst to last decision",
                duration_ms(report.burst_to_last_decision_s * 1e3),
            ),
            ("last unit won after", sold_out_after),
        ],
        &[],
    )
}

/// Accept p90 and max are not on `Report`; they come from the results,
/// through the same HdrHistogram the report uses.
fn latency_card(report: &Report, results: &BurstResults) -> String {
    let accepted = Latencies::from_durations(results.buyers.iter().map(|b| b.accepted_after));
    let row = |name: &str, p50: f64, p90: f64, p99: f64, max: f64| {
        format!(
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            duration_ms(p50),
            duration_ms(p90),
            duration_ms(p99),
            duration_ms(max)
        )
    };
    format!(
        "<div class=\"card\"><h2>Latency from the burst</h2><table class=\"latency\">\
         <thead><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead><tbody>{}{}</tbody>\
         </table></div>\n",
        row(
            "accept (first answer to the POST)",
            report.accept_p50_ms,
            accepted.quantile_ms(0.90),
            report.accept_p99_ms,
            accepted.max_ms()
        ),
        row(
            "decision (definitive answer)",
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms
        ),
    )
}
