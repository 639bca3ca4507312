//! The load test's report as one self-contained HTML page, for a person with
//! a browser: what ran and the verdict, the tally, and two charts (latency
//! distributions; decisions and remaining stock over time) drawn as inline
//! SVG here, in Rust.
//!
//! Owns only presentation: every number comes from the `Report` or is
//! derived from the `BurstResults` it was built from. Must not load
//! anything: no scripts, fonts, styles or images from anywhere, so the page
//! works offline and from an attachment. Every piece of text that came from
//! outside (SKU, URL, violation text) is escaped. Series are bucketed so the
//! page stays small for any number of buyers.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::burst::BurstResults;
use crate::latency::Latencies;
use crate::report::Report;
use crate::verify::Violation;
use crate::Args;

/// Most histogram buckets wanted per latency chart; a "nice" bucket width
/// gives at most one more, well under 200 bars per series.
const HISTOGRAM_BUCKETS_TARGET: usize = 100;
/// Samples of the cumulative series over the time axis.
const TIMELINE_POINTS: usize = 200;
/// Tick marks per axis, at most.
const X_TICKS_MAX: usize = 10;
const Y_TICKS_MAX: usize = 5;
/// Above this span the time axis is in seconds, below in milliseconds.
const TIME_AXIS_MS_MAX: f64 = 2_000.0;

const SVG_WIDTH_PX: f64 = 960.0;
const PLOT_LEFT_PX: f64 = 76.0;
const PLOT_RIGHT_PX: f64 = 24.0;
/// Space above the first panel for the chart title and the legend.
const CHART_HEAD_PX: f64 = 84.0;
const PANEL_HEIGHT_PX: f64 = 170.0;
/// Between two panels: the upper panel's tick labels and the lower one's caption.
const PANEL_GAP_PX: f64 = 64.0;
/// Below the last panel: tick labels and the axis title.
const CHART_FOOT_PX: f64 = 56.0;
/// Rough advance of one legend character at 13 px, to lay legend items out.
const LEGEND_CHAR_PX: f64 = 7.4;

/// Series colours. They appear nowhere else on the page, so the browser
/// test can find each series by its colour.
const DECISION_COLOUR: &str = "#2563eb";
const ACCEPT_COLOUR: &str = "#f59e0b";
const DECIDED_COLOUR: &str = "#0d9488";
const REMAINING_COLOUR: &str = "#c026d3";

/// What ran that `Report` does not record: where the buyers were sent and
/// the per-user limit. Without it the header says "not recorded".
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub url: String,
    pub per_user_limit: u32,
}

impl RunInfo {
    pub fn from_args(args: &Args) -> Self {
        Self {
            url: args.url().to_string(),
            per_user_limit: args.per_user_limit,
        }
    }
}

/// The whole page, without the URL and per-user limit (see [`render_with`]).
pub fn render(report: &Report, results: &BurstResults) -> String {
    page(report, results, None)
}

/// The whole page, header completed with what ran.
pub fn render_with(report: &Report, results: &BurstResults, run: &RunInfo) -> String {
    page(report, results, Some(run))
}

pub fn write(path: &Path, report: &Report, results: &BurstResults) -> anyhow::Result<()> {
    write_page(path, &render(report, results))
}

pub fn write_with(
    path: &Path,
    report: &Report,
    results: &BurstResults,
    run: &RunInfo,
) -> anyhow::Result<()> {
    write_page(path, &render_with(report, results, run))
}

fn write_page(path: &Path, html: &str) -> anyhow::Result<()> {
    std::fs::write(path, html)
        .with_context(|| format!("write the HTML report to {}", path.display()))
}

fn page(report: &Report, results: &BurstResults, run: Option<&RunInfo>) -> String {
    let title = format!("dropline load test: {}", escape(&report.sku));
    let mut html = String::with_capacity(64 * 1024);
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    ));
    html.push_str(&header(report, results, run));
    html.push_str(&latency_chart(results));
    html.push_str(&timeline_chart(report, results));
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// Inline, so the page needs nothing else; system fonts only.
const STYLE: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1f2937;
  font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', 'Liberation Sans', sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 .sku { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-weight: 600; }
.what { color: #4b5563; margin: 0 0 14px; }
.verdict { border-radius: 6px; padding: 10px 14px; margin: 0 0 16px; font-weight: 600; }
.verdict.passed { background: #dcfce7; color: #14532d; border: 1px solid #86efac; }
.verdict.failed { background: #fee2e2; color: #7f1d1d; border: 1px solid #fca5a5; }
.notes { color: #4b5563; margin: -6px 0 16px; }
.notes ul { margin: 2px 0 0; padding-left: 20px; }
.verdict ul { margin: 6px 0 0; padding-left: 20px; font-weight: 400; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; margin: 0 0 12px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 10px 14px; }
.card h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #6b7280; margin: 0 0 6px; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
.card dt { color: #4b5563; }
.card dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.card dt.wide { grid-column: 1 / -1; margin-top: 4px; }
.card dd.wide { grid-column: 1 / -1; text-align: left; overflow-wrap: anywhere; }
.muted { color: #9ca3af; }
table.latency { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.latency th, table.latency td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #f0f1f3; }
table.latency th:first-child, table.latency td:first-child { text-align: left; }
table.latency thead th { color: #6b7280; font-weight: 600; }
@media (max-width: 720px) { .cards { grid-template-columns: 1fr; } }
figure { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; margin: 12px 0 0; padding: 6px 8px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: #6b7280; font-size: 12px; padding: 0 8px 6px; }
svg text { font-family: system-ui, -apple-system, 'Segoe UI', 'Liberation Sans', sans-serif; fill: #374151; }
svg .title { font-size: 16px; font-weight: 600; fill: #111827; }
svg .caption { font-size: 13px; font-weight: 600; fill: #374151; }
svg .tick { font-size: 11px; fill: #6b7280; }
svg .axis-title { font-size: 12px; fill: #4b5563; }
svg .legend { font-size: 13px; }
";

// ---- header ----------------------------------------------------------------

fn header(report: &Report, results: &BurstResults, run: Option<&RunInfo>) -> String {
    let mut html = format!(
        "<h1>dropline load test <span class=\"sku\">{}</span></h1>\n<p class=\"what\">{} buyers \
         ({} purchases) for {} units, released at one instant</p>\n",
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
        ("stock", thousands(u64::from(report.stock))),
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

// ---- series ----------------------------------------------------------------

/// Buyers per latency bucket: bucket `i` holds `[i·width, (i+1)·width)` ms.
#[derive(Debug, PartialEq)]
struct Histogram {
    width_ms: f64,
    counts: Vec<u64>,
}

impl Histogram {
    #[cfg(test)]
    fn non_empty(&self) -> usize {
        self.counts.iter().filter(|n| **n > 0).count()
    }

    fn count_max(&self) -> u64 {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    fn span_ms(&self) -> f64 {
        self.width_ms * self.counts.len() as f64
    }
}

/// A round bucket width (1, 2 or 5 × 10ⁿ ms) giving at most
/// `HISTOGRAM_BUCKETS_TARGET + 1` buckets up to `max_ms`.
fn bucket_width_ms(max_ms: f64) -> f64 {
    nice_step(max_ms, HISTOGRAM_BUCKETS_TARGET)
}

fn histogram(latencies_ms: &[f64], width_ms: f64, max_ms: f64) -> Histogram {
    let len = bucket_index(max_ms, width_ms) + 1;
    let mut counts = vec![0; len];
    for latency in latencies_ms {
        // Clamped: a value at exactly `max_ms` may round past the last bucket.
        let i = bucket_index(*latency, width_ms).min(len - 1);
        counts[i] += 1;
    }
    Histogram { width_ms, counts }
}

fn bucket_index(latency_ms: f64, width_ms: f64) -> usize {
    (latency_ms.max(0.0) / width_ms).floor() as usize
}

/// Cumulative counts sampled at `TIMELINE_POINTS` instants from the burst
/// to the last decision.
#[derive(Debug)]
struct Timeline {
    times_ms: Vec<f64>,
    /// Buyers with a definitive answer by then.
    decided: Vec<u64>,
    /// Stock minus the units won by then; below zero only if oversold.
    remaining: Vec<i64>,
}

/// Each win is one unit: buyers send no quantity, so the gateway applies
/// its default of 1. A win without an answer time cannot be placed on the
/// axis and is left out.
fn timeline(results: &BurstResults, stock: u32) -> Timeline {
    let decided = sorted_ms(results.buyers.iter().filter_map(|b| b.decided_after));
    let won = sorted_ms(
        results
            .buyers
            .iter()
            .filter(|b| b.outcome.as_deref() == Some("won"))
            .filter_map(|b| b.decided_after),
    );
    // The wall time normally is the last decision; the max guards against
    // results where it is not, so the last sample counts every decision.
    let end_ms = decided.last().copied().unwrap_or(0.0).max(ms(results.wall));
    let times_ms: Vec<f64> = (0..TIMELINE_POINTS)
        .map(|i| end_ms * i as f64 / (TIMELINE_POINTS - 1) as f64)
        .collect();
    Timeline {
        decided: times_ms.iter().map(|t| count_up_to(&decided, *t)).collect(),
        remaining: times_ms
            .iter()
            .map(|t| i64::from(stock) - count_up_to(&won, *t) as i64)
            .collect(),
        times_ms,
    }
}

fn sorted_ms(durations: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut values: Vec<f64> = durations.map(ms).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// How many of the sorted values are at or before `t`.
fn count_up_to(sorted: &[f64], t: f64) -> u64 {
    sorted.partition_point(|v| *v <= t) as u64
}

fn decided_count(results: &BurstResults) -> usize {
    results
        .buyers
        .iter()
        .filter(|b| b.decided_after.is_some())
        .count()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

// ---- charts ----------------------------------------------------------------

/// Chart 1: decision and accept latency, one panel each over the same
/// buckets and x axis, so the two distributions line up.
fn latency_chart(results: &BurstResults) -> String {
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
fn timeline_chart(report: &Report, results: &BurstResults) -> String {
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
        &[
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
        ],
    );
    let decided_panel = Panel::nth(0);
    let decided_y = Axis::new(0.0, decided_last.max(1) as f64, Y_TICKS_MAX);
    svg.push_str(&decided_panel.frame(
        "Purchases decided (cumulative)",
        &x,
        &decided_y,
        "purchases",
    ));
    let decided: Vec<f64> = series.decided.iter().map(|n| *n as f64).collect();
    svg.push_str(&line(
        &decided_panel,
        &x,
        &decided_y,
        &times,
        &decided,
        "decided",
        DECIDED_COLOUR,
    ));
    let stock_panel = Panel::nth(1);
    let stock_y = Axis::new(
        remaining_min as f64,
        f64::from(report.stock).max(1.0),
        Y_TICKS_MAX,
    );
    svg.push_str(&stock_panel.frame(
        &format!(
            "Remaining stock (of {})",
            thousands(u64::from(report.stock))
        ),
        &x,
        &stock_y,
        "units",
    ));
    let remaining: Vec<f64> = series.remaining.iter().map(|n| *n as f64).collect();
    svg.push_str(&line(
        &stock_panel,
        &x,
        &stock_y,
        &times,
        &remaining,
        "remaining",
        REMAINING_COLOUR,
    ));
    svg.push_str(&axis_title(
        &stock_panel,
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

// ---- SVG primitives --------------------------------------------------------

/// A data range widened to round tick steps.
struct Axis {
    min: f64,
    max: f64,
    step: f64,
}

impl Axis {
    fn new(min: f64, max: f64, ticks_max: usize) -> Self {
        let step = nice_step(max - min, ticks_max);
        let lo = (min / step).floor() * step;
        let mut hi = (max / step).ceil() * step;
        if hi <= lo {
            hi = lo + step;
        }
        Self {
            min: lo,
            max: hi,
            step,
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let count = ((self.max - self.min) / self.step).round() as usize;
        (0..=count)
            .map(|i| self.min + i as f64 * self.step)
            .collect()
    }

    /// Where `value` lies between min (0) and max (1).
    fn fraction(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min)
    }
}

/// 1, 2 or 5 × 10ⁿ: the smallest such step that covers `span` in at most
/// `steps_max` steps.
fn nice_step(span: f64, steps_max: usize) -> f64 {
    if span.is_nan() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / steps_max.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A plot area of a chart, in pixels.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Panel {
    /// The `index`th panel from the top of a chart.
    fn nth(index: usize) -> Self {
        Self {
            left: PLOT_LEFT_PX,
            top: CHART_HEAD_PX + index as f64 * (PANEL_HEIGHT_PX + PANEL_GAP_PX),
            width: SVG_WIDTH_PX - PLOT_LEFT_PX - PLOT_RIGHT_PX,
            height: PANEL_HEIGHT_PX,
        }
    }

    fn x(&self, axis: &Axis, value: f64) -> f64 {
        self.left + axis.fraction(value) * self.width
    }

    fn y(&self, axis: &Axis, value: f64) -> f64 {
        self.top + self.height - axis.fraction(value) * self.height
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Caption, grid, axes, tick labels and the y axis title (turned,
    /// left of the tick labels); the series go on top.
    fn frame(&self, caption: &str, x: &Axis, y: &Axis, y_unit: &str) -> String {
        let mut svg = format!(
            "<text class=\"caption\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\n\
             <text class=\"axis-title\" transform=\"translate(16 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>\n",
            self.left,
            self.top - 12.0,
            escape(caption),
            self.top + self.height / 2.0,
            escape(y_unit),
        );
        for tick in y.ticks() {
            let py = self.y(y, tick);
            svg.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e5e7eb\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                self.left,
                self.left + self.width,
                self.left - 8.0,
                py + 4.0,
                number(tick, y.step),
            ));
        }
        for tick in x.ticks() {
            let px = self.x(x, tick);
            svg.push_str(&format!(
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9ca3af\"/>\
                 <text class=\"tick\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                self.bottom(),
                self.bottom() + 5.0,
                self.bottom() + 18.0,
                number(tick, x.step),
            ));
        }
        svg.push_str(&format!(
            "<path d=\"M{:.1},{:.1}V{:.1}H{:.1}\" fill=\"none\" stroke=\"#6b7280\"/>\n",
            self.left,
            self.top,
            self.bottom(),
            self.left + self.width,
        ));
        svg
    }
}

#[derive(Clone, Copy)]
enum LegendMark {
    Bar,
    Line,
}

/// Opens a chart's SVG with its title and legend, sized for `panels`.
fn chart_open(
    id: &str,
    panels: usize,
    title: &str,
    legend: &[(LegendMark, &str, String)],
) -> String {
    let height = CHART_HEAD_PX
        + panels as f64 * PANEL_HEIGHT_PX
        + panels.saturating_sub(1) as f64 * PANEL_GAP_PX
        + CHART_FOOT_PX;
    let mut svg = format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {SVG_WIDTH_PX} {height}\" \
         width=\"{SVG_WIDTH_PX}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">\n\
         <text class=\"title\" x=\"{PLOT_LEFT_PX}\" y=\"24\">{}</text>\n",
        escape(title),
        escape(title),
    );
    svg.push_str(&legend_items(legend));
    svg
}

/// Legend items in one row under the title, each a swatch then its label.
fn legend_items(items: &[(LegendMark, &str, String)]) -> String {
    let (y, mut x) = (46.0, PLOT_LEFT_PX);
    let mut svg = String::from("<g class=\"legend\">\n");
    for (mark, colour, label) in items {
        let swatch = match mark {
            LegendMark::Bar => format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>",
                y - 10.0
            ),
            LegendMark::Line => format!(
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
                x + 20.0,
                y - 4.0,
                y - 4.0
            ),
        };
        let text_x = x + 26.0;
        svg.push_str(&format!(
            "{swatch}<text class=\"legend\" x=\"{text_x:.1}\" y=\"{y:.1}\">{}</text>\n",
            escape(label)
        ));
        x = text_x + label.chars().count() as f64 * LEGEND_CHAR_PX + 28.0;
    }
    svg.push_str("</g>\n");
    svg
}

/// One bar per non-empty bucket. A non-empty bucket is at least one pixel
/// tall, so a lone buyer in the tail stays visible.
fn bars(
    panel: &Panel,
    x: &Axis,
    y: &Axis,
    histogram: &Histogram,
    class: &str,
    colour: &str,
) -> String {
    let mut svg = format!("<g class=\"series {class}\" fill=\"{colour}\">\n");
    let bucket_px = panel.x(x, histogram.width_ms) - panel.x(x, 0.0);
    // A gap between bars when they are wide enough to afford one.
    let gap_px = if bucket_px >= 4.0 { 1.0 } else { 0.0 };
    for (i, count) in histogram.counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let from_ms = i as f64 * histogram.width_ms;
        let top = panel.y(y, *count as f64).min(panel.bottom() - 1.0);
        svg.push_str(&format!(
            "<rect class=\"bar {class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\">\
             <title>{}–{} ms: {} purchases</title></rect>\n",
            panel.x(x, from_ms) + gap_px / 2.0,
            (bucket_px - gap_px).max(0.5),
            panel.bottom() - top,
            number(from_ms, histogram.width_ms),
            number(from_ms + histogram.width_ms, histogram.width_ms),
            thousands(*count),
        ));
    }
    svg.push_str("</g>\n");
    svg
}

/// A polyline through the points; its last value is kept as `data-last`.
fn line(
    panel: &Panel,
    x: &Axis,
    y: &Axis,
    xs: &[f64],
    ys: &[f64],
    class: &str,
    colour: &str,
) -> String {
    let points: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(vx, vy)| format!("{:.1},{:.1}", panel.x(x, *vx), panel.y(y, *vy)))
        .collect();
    format!(
        "<polyline class=\"series {class}\" data-last=\"{}\" points=\"{}\" fill=\"none\" \
         stroke=\"{colour}\" stroke-width=\"2.5\" stroke-linejoin=\"round\"/>\n",
        ys.last().copied().unwrap_or(0.0),
        points.join(" "),
    )
}

fn axis_title(panel: &Panel, text: &str) -> String {
    format!(
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        panel.left + panel.width / 2.0,
        panel.bottom() + 40.0,
        escape(text),
    )
}

// ---- text ------------------------------------------------------------------

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `50000` → `50,000`.
fn thousands(n: u64) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    let groups: Vec<String> = digits
        .rchunks(3)
        .rev()
        .map(|group| group.iter().collect())
        .collect();
    groups.join(",")
}

fn signed_thousands(n: i64) -> String {
    let magnitude = thousands(n.unsigned_abs());
    if n < 0 {
        format!("−{magnitude}")
    } else {
        magnitude
    }
}

/// A tick value with as many decimals as its step needs, grouped by thousands.
fn number(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        // The tolerance keeps 0.1 (whose log is not exactly -1) at one decimal.
        (-step.log10() - 1e-9).ceil() as usize
    };
    if decimals == 0 {
        return signed_thousands(value.round() as i64);
    }
    format!("{value:.decimals$}")
}

/// Milliseconds for people: `12.3 ms`, `2,533.4 ms`, or seconds from 10 s on.
fn duration_ms(value_ms: f64) -> String {
    if value_ms >= 10_000.0 {
        return format!("{:.2} s", value_ms / 1e3);
    }
    let tenths = (value_ms.max(0.0) * 10.0).round() as u64;
    format!("{}.{} ms", thousands(tenths / 10), tenths % 10)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use dropline_core::Sku;

    use super::*;
    use crate::burst::BuyerResult;
    use crate::setup::DropUnderTest;
    use crate::verify::Verdict;

    fn buyer(
        i: usize,
        outcome: Option<&str>,
        accepted_ms: u64,
        decided_ms: Option<u64>,
    ) -> BuyerResult {
        BuyerResult {
            key: format!("key-{i}"),
            user: format!("user-{i}"),
            first_status: if outcome == Some("won") { 201 } else { 409 },
            statuses: vec![201],
            final_status: 201,
            outcome: outcome.map(str::to_owned),
            seq: Some(i as u64 + 1),
            accepted_after: Duration::from_millis(accepted_ms),
            decided_after: decided_ms.map(Duration::from_millis),
            ..BuyerResult::default()
        }
    }

    fn results(buyers: Vec<BuyerResult>) -> BurstResults {
        let wall = buyers
            .iter()
            .filter_map(|b| b.decided_after)
            .max()
            .unwrap_or_default();
        BurstResults {
            buyers,
            wall,
            seed: 7,
        }
    }

    fn report(results: &BurstResults, stock: u32, verdict: &Verdict) -> Report {
        let args = Args::parse_from(["loadtest", "--stock", &stock.to_string()]);
        let drop = DropUnderTest {
            sku: Sku::parse("html-test").unwrap(),
            stock,
        };
        Report::new(&args, &drop, results, verdict, None)
    }

    fn passed() -> Verdict {
        Verdict::default()
    }

    /// How often `needle` occurs in `haystack`.
    fn occurrences(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// The `data-last` of the polyline of class `series`.
    fn last_value(html: &str, series: &str) -> String {
        let start = html
            .find(&format!("class=\"series {series}\" data-last=\""))
            .unwrap_or_else(|| panic!("no {series} line in the page"));
        let rest = &html[start..];
        let value = &rest[rest.find("data-last=\"").unwrap() + "data-last=\"".len()..];
        value[..value.find('"').unwrap()].to_string()
    }

    #[test]
    fn histogram_counts_each_latency_in_its_bucket() {
        let histogram = histogram(&[0.0, 0.5, 1.5, 1.7, 9.0, 10.0], 1.0, 10.0);
        assert_eq!(histogram.counts, vec![2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(histogram.non_empty(), 4);
    }

    #[test]
    fn bucket_widths_are_round_and_keep_bars_under_two_hundred() {
        assert_eq!(bucket_width_ms(8_000.0), 100.0);
        assert_eq!(bucket_width_ms(950.0), 10.0);
        assert_eq!(bucket_width_ms(0.0), 1.0);
        for max_ms in [0.3, 7.0, 123.0, 9_999.0, 120_000.0] {
            let buckets = histogram(&[max_ms], bucket_width_ms(max_ms), max_ms)
                .counts
                .len();
            assert!(buckets <= 200, "{buckets} buckets for {max_ms} ms");
        }
    }

    #[test]
    fn histogram_draws_one_bar_per_non_empty_bucket() {
        // Three tight clusters of decisions and two of accepts, far apart:
        // whatever the bucket width, each cluster fills exactly one bucket.
        let buyers = (0..300)
            .map(|i| {
                let decided = [10, 500, 990][i % 3];
                let accepted = [5, 400][i % 2];
                buyer(i, Some("sold_out"), accepted, Some(decided))
            })
            .collect();
        let results = results(buyers);
        let html = render(&report(&results, 0, &passed()), &results);
        assert_eq!(occurrences(&html, "<rect class=\"bar decision\""), 3);
        assert_eq!(occurrences(&html, "<rect class=\"bar accept\""), 2);
    }

    #[test]
    fn decided_series_ends_at_the_number_of_decided_buyers() {
        // 300 buyers, every 15th never decided: 280 decided.
        let buyers = (0..300)
            .map(|i| {
                let decided = (i % 15 != 0).then_some(3 * i as u64);
                buyer(i, decided.map(|_| "sold_out"), 2, decided)
            })
            .collect();
        let results = results(buyers);
        let series = timeline(&results, 0);
        assert_eq!(series.decided.last(), Some(&280));
        assert_eq!(series.decided.first(), Some(&0));
        assert_eq!(series.times_ms.len(), TIMELINE_POINTS);
        let html = render(&report(&results, 0, &passed()), &results);
        assert_eq!(last_value(&html, "decided"), "280");
        assert!(html.contains("purchases decided (final 280)"));
    }

    #[test]
    fn remaining_stock_ends_at_stock_minus_winners() {
        // 60 winners of a stock of 100, then sold_out answers.
        let buyers = (0..500)
            .map(|i| {
                let outcome = if i < 60 { "won" } else { "sold_out" };
                buyer(i, Some(outcome), 1, Some(10 + i as u64))
            })
            .collect();
        let results = results(buyers);
        let series = timeline(&results, 100);
        assert_eq!(series.remaining.first(), Some(&100));
        assert_eq!(series.remaining.last(), Some(&40));
        // Midway through the wins (win i answered at 10 + i ms), the units
        // won so far are gone and no more.
        let t = series.times_ms[20];
        assert!((40.0..69.0).contains(&t), "sample 20 at {t} ms");
        let won_by_t = (0..60).filter(|i| (10 + i) as f64 <= t).count() as i64;
        assert_eq!(series.remaining[20], 100 - won_by_t);
        let html = render(&report(&results, 100, &passed()), &results);
        assert_eq!(last_value(&html, "remaining"), "40");
    }

    #[test]
    fn an_oversell_shows_as_negative_remaining_stock() {
        let buyers = (0..12).map(|i| buyer(i, Some("won"), 1, Some(5))).collect();
        let results = results(buyers);
        assert_eq!(timeline(&results, 10).remaining.last(), Some(&-2));
    }

    #[test]
    fn embedded_text_is_escaped() {
        let results = results(vec![buyer(0, Some("won"), 1, Some(2))]);
        let verdict = Verdict {
            violations: vec![Violation("replay of <script>alert(1)</script> & co".into())],
            notes: vec!["note <i>".into()],
            ..Verdict::default()
        };
        let mut report = report(&results, 1, &verdict);
        report.sku = "<script>alert('sku')</script>".into();
        report.chaos = Some("kill <b>".into());
        let run = RunInfo {
            url: "http://x/\"><script>alert(2)</script>".into(),
            per_user_limit: 1,
        };
        let html = render_with(&report, &results, &run);
        assert!(!html.contains("<script"), "raw <script> in the page");
        assert!(!html.contains("<b>"));
        assert!(html.contains("kill &lt;b&gt;"));
        assert!(!html.contains("<i>"));
        assert!(html.contains("note &lt;i&gt;"));
        assert!(html.contains("replay of &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(html.contains("&lt;script&gt;alert(&#39;sku&#39;)&lt;/script&gt;"));
        assert!(html.contains("http://x/&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("FAILED"));
    }

    #[test]
    fn header_says_what_ran_and_the_verdict() {
        let buyers = (0..3)
            .map(|i| buyer(i, Some(if i == 0 { "won" } else { "sold_out" }), 1, Some(2)))
            .collect();
        let results = results(buyers);
        let report = report(&results, 1, &passed());
        let run = RunInfo {
            url: "http://127.0.0.1:8080".into(),
            per_user_limit: 3,
        };
        let html = render_with(&report, &results, &run);
        assert!(html.contains("PASSED"));
        assert!(!html.contains("FAILED"));
        assert!(html.contains("<dt>per-user limit</dt><dd>3</dd>"));
        assert!(html.contains("<dd class=\"wide\">http://127.0.0.1:8080</dd>"));
        assert!(html.contains("<dt>won</dt><dd>1</dd>"));
        assert!(html.contains("<dt>sold_out</dt><dd>2</dd>"));
        let bare = render(&report, &results);
        assert!(bare
            .contains(">target</dt><dd class=\"wide\"><span class=\"muted\">not recorded</span>"));
    }

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        let results = results(vec![buyer(0, Some("won"), 1, Some(2))]);
        let html = render(&report(&results, 1, &passed()), &results);
        for fetch in ["<script", "src=", "href=", "url(", "@import", "<link"] {
            assert!(!html.contains(fetch), "the page contains {fetch}");
        }
    }

    #[test]
    fn fifty_thousand_buyers_make_a_small_page() {
        let buyers = (0..50_000)
            .map(|i| {
                let outcome = if i < 100 { "won" } else { "sold_out" };
                buyer(i, Some(outcome), i as u64 / 9, Some(i as u64 / 7))
            })
            .collect();
        let results = results(buyers);
        let html = render(&report(&results, 100, &passed()), &results);
        assert!(occurrences(&html, "<rect class=\"bar decision\"") <= 200);
        assert!(occurrences(&html, "<rect class=\"bar accept\"") <= 200);
        assert!(html.len() < 300 * 1024, "{} bytes", html.len());
        assert_eq!(last_value(&html, "decided"), "50000");
        assert_eq!(last_value(&html, "remaining"), "0");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(number(0.3, 0.1), "0.3");
        assert_eq!(number(2500.0, 500.0), "2,500");
        assert_eq!(number(-20.0, 10.0), "−20");
        assert_eq!(nice_step(8_000.0, 10), 1_000.0);
        assert_eq!(nice_step(7.0, 10), 1.0);
        assert_eq!(nice_step(0.9, 10), 0.1);
        assert_eq!(duration_ms(2_533.44), "2,533.4 ms");
        assert_eq!(duration_ms(0.06), "0.1 ms");
        assert_eq!(duration_ms(12_345.0), "12.35 s");
    }
}
