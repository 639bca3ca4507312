//! The two charts: latency distributions, and decisions and remaining
//! stock over time.

use crate::burst::BurstResults;
use crate::report::Report;

use super::series::{bucket_width_ms, histogram, ms, timeline, TIMELINE_POINTS};
use super::svg::{axis_title, bars, chart_open, line, Axis, LegendMark, Panel};
use super::text::{escape, number, signed_thousands, thousands};

/// Tick marks per axis, at most.
const X_TICKS_MAX: usize = 10;
const Y_TICKS_MAX: usize = 5;
/// Above this span the time axis is in seconds, below in milliseconds.
const TIME_AXIS_MS_MAX: f64 = 2_000.0;

/// Series colours. They appear nowhere else on the page, so the browser
/// test can find each series by its colour.
const DECISION_COLOUR: &str = "#2563eb";
const ACCEPT_COLOUR: &str = "#f59e0b";
const DECIDED_COLOUR: &str = "#0d9488";
const REMAINING_COLOUR: &str = "#c026d3";

/// Chart 1: decision and accept latency, one panel each over the same
/// buckets and x axis, so the two distributions line up.
pub(super) fn latency_chart(results: &BurstResults) -> String {
    let decision: Vec<f64> = results
        .buyers
        .iter()
        .filter_map(|b| b.decided_after)
        .map(ms)
        .collect();
    let accept: Vec<f64> = results
        .buyers
        .iter()
        .map(|b| ms(b.accepted_after))
        .collect();
    let max_ms = decision.iter().chain(&accept).copied().fold(0.0, f64::max);
    let width_ms = bucket_width_ms(max_ms);
    let decision = histogram(&decision, width_ms, max_ms);
    let accept = histogram(&accept, width_ms, max_ms);
    let x = Axis::new(0.0, decision.span_ms(), X_TICKS_MAX);
    let panels = [
        (
            "Decision latency: burst to definitive answer",
            &decision,
            "decision",
            DECISION_COLOUR,
        ),
        (
            "Accept latency: burst to first answer to the POST",
            &accept,
            "accept",
            ACCEPT_COLOUR,
        ),
    ];
    let mut svg = chart_open(
        "latency-chart",
        2,
        "Latency distribution",
        &[
            (LegendMark::Bar, DECISION_COLOUR, "decision latency".into()),
            (LegendMark::Bar, ACCEPT_COLOUR, "accept latency".into()),
        ],
    );
    for (i, (caption, histogram, class, colour)) in panels.into_iter().enumerate() {
        let panel = Panel::nth(i);
        let y = Axis::new(0.0, histogram.count_max().max(1) as f64, Y_TICKS_MAX);
        svg.push_str(&panel.frame(caption, &x, &y, "purchases"));
        svg.push_str(&bars(&panel, &x, &y, histogram, class, colour));
    }
    svg.push_str(&axis_title(
        &Panel::nth(1),
        &format!(
            "milliseconds from the burst (buckets of {} ms)",
            number(width_ms, width_ms)
        ),
    ));
    svg.push_str("</svg>\n");
    figure(
        &svg,
        "One bar per non-empty bucket; each panel has its own scale. A purchase is one idempotency key: a buyer in two tabs makes two.",
    )
}

/// Chart 2: decisions and remaining stock over the same time axis, one
/// panel each (their scales differ by orders of magnitude).
pub(super) fn timeline_chart(report: &Report, results: &BurstResults) -> String {
    let series = timeline(results, report.stock);
    let end_ms = series.times_ms.last().copied().unwrap_or(0.0);
    let unit = TimeUnit::for_span(end_ms);
    let x = Axis::new(0.0, unit.of(end_ms).max(unit.of(1.0)), X_TICKS_MAX);
    let times: Vec<f64> = series.times_ms.iter().map(|t| unit.of(*t)).collect();
    let decided_last = series.decided.last().copied().unwrap_or(0);
    let remaining_last = series.remaining.last().copied().unwrap_or(0);
    let remaining_min = series.remaining.iter().copied().min().unwrap_or(0).min(0);
    let mut svg = chart_open(
        "timeline-chart",
        2,
        "Decisions and remaining stock over time",
        &timeline_legend(decided_last, remaining_last),
    );
    let decided = LinePanel {
        caption: "Purchases decided (cumulative)".into(),
        y: Axis::new(0.0, decided_last.max(1) as f64, Y_TICKS_MAX),
        y_unit: "purchases",
        values: series.decided.iter().map(|n| *n as f64).collect(),
        class: "decided",
        colour: DECIDED_COLOUR,
    };
    let stock = LinePanel {
        caption: format!(
            "Remaining stock{} (of {})",
            if report.skus > 1 { ", all SKUs" } else { "" },
            thousands(u64::from(report.stock))
        ),
        y: Axis::new(
            remaining_min as f64,
            f64::from(report.stock).max(1.0),
            Y_TICKS_MAX,
        ),
        y_unit: "units",
        values: series.remaining.iter().map(|n| *n as f64).collect(),
        class: "remaining",
        colour: REMAINING_COLOUR,
    };
    svg.push_str(&decided.draw(&Panel::nth(0), &x, &times));
    svg.push_str(&stock.draw(&Panel::nth(1), &x, &times));
    svg.push_str(&axis_title(
        &Panel::nth(1),
        &format!("{} since the burst", unit.name),
    ));
    svg.push_str("</svg>\n");
    figure(
        &svg,
        &format!(
            "Sampled at {TIMELINE_POINTS} instants; a won answer takes one unit at the moment the buyer was told."
        ),
    )
}

/// Each line's swatch and label, with where it ends.
fn timeline_legend(
    decided_last: u64,
    remaining_last: i64,
) -> [(LegendMark, &'static str, String); 2] {
    [
        (
            LegendMark::Line,
            DECIDED_COLOUR,
            format!("purchases decided (final {})", thousands(decided_last)),
        ),
        (
            LegendMark::Line,
            REMAINING_COLOUR,
            format!(
                "remaining stock (final {})",
                signed_thousands(remaining_last)
            ),
        ),
    ]
}

/// One panel of a line over the chart's shared time axis.
struct LinePanel {
    caption: String,
    y: Axis,
    y_unit: &'static str,
    values: Vec<f64>,
    class: &'static str,
    colour: &'static str,
}

impl LinePanel {
    fn draw(&self, panel: &Panel, x: &Axis, times: &[f64]) -> String {
        let mut svg = panel.frame(&self.caption, x, &self.y, self.y_unit);
        svg.push_str(&line(
            panel,
            x,
            &self.y,
            times,
            &self.values,
            self.class,
            self.colour,
        ));
        svg
    }
}

fn figure(svg: &str, caption: &str) -> String {
    format!(
        "<figure>\n{svg}<figcaption>{}</figcaption>\n</figure>\n",
        escape(caption)
    )
}

/// The time axis unit: milliseconds for short bursts, seconds beyond.
struct TimeUnit {
    name: &'static str,
    ms_per_unit: f64,
}

impl TimeUnit {
    fn for_span(span_ms: f64) -> Self {
        if span_ms > TIME_AXIS_MS_MAX {
            Self {
                name: "seconds",
                ms_per_unit: 1e3,
            }
        } else {
            Self {
                name: "milliseconds",
                ms_per_unit: 1.0,
            }
        }
    }

    fn of(&self, value_ms: f64) -> f64 {
        value_ms / self.ms_per_unit
    }
}
