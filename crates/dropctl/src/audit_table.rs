//! The audit's report as `dropctl verify` and `dropctl drain` show it: a
//! table of checks on stdout, and one error naming every violated promise.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dropline_audit::AuditReport;

/// Prints `report`'s checks as a table.
pub fn print(report: &AuditReport) {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(["check", "result", "detail"]);
    for check in &report.checks {
        table.add_row([
            check.name.to_string(),
            if check.passed { "ok" } else { "VIOLATED" }.to_string(),
            check.detail.clone(),
        ]);
    }
    println!("{table}");
}

/// `Ok` when every promise holds, else an error naming each violated one.
pub fn verdict(report: &AuditReport) -> anyhow::Result<()> {
    let violations: Vec<_> = report.violations().map(|c| c.name).collect();
    if !violations.is_empty() {
        anyhow::bail!(
            "{}: promises violated: {}",
            report.sku,
            violations.join(", ")
        );
    }
    Ok(())
}
