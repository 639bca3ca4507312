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

mod cards;
mod charts;
mod series;
mod svg;
#[cfg(test)]
mod tests;
mod text;

use std::path::Path;

use anyhow::Context as _;

use crate::burst::BurstResults;
use crate::report::Report;

/// What ran that `Report` does not record: where the buyers were sent and
/// the per-user limit. Without it the header says "not recorded".
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub url: String,
    pub per_user_limit: u32,
}

/// The whole page; with `run`, its header says what ran.
pub fn render(report: &Report, results: &BurstResults, run: Option<&RunInfo>) -> String {
    let title = format!("dropline load test: {}", text::escape(&report.sku));
    let mut html = String::with_capacity(64 * 1024);
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    ));
    html.push_str(&cards::header(report, results, run));
    html.push_str(&charts::latency_chart(results));
    html.push_str(&charts::timeline_chart(report, results));
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// Writes the page for `run` to `path`.
pub fn write(
    path: &Path,
    report: &Report,
    results: &BurstResults,
    run: &RunInfo,
) -> anyhow::Result<()> {
    std::fs::write(path, render(report, results, Some(run)))
        .with_context(|| format!("write the HTML report to {}", path.display()))
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
