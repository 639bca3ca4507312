//! `dropctl status [<SKU>] [--watch] [--json]`: per drop its state, stock,
//! won, remaining, decided, the intents waiting, the oldest one's lag,
//! decisions per second, owner and epoch, and HALTED with the reason when
//! its partition stopped. Everything comes from one store read (the owners
//! record their progress there), never from NATS. `--watch` redraws every
//! second until Ctrl-C.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dropline_core::{DropStatus, Sku};
use dropline_store::{DropStatusRow, Store};

use crate::interrupt::until_ctrl_c;
use crate::services::{explain, ServiceArgs};

/// How often `--watch` redraws.
const WATCH_INTERVAL_MS: u64 = 1_000;

/// An owner records its pace at least this often while its line moves.
const PACE_FRESH_MS: i64 = 3_000;

/// Clears the terminal and moves the cursor home (ANSI).
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this drop.
    sku: Option<String>,
    /// Redraw every second until Ctrl-C (with --json: one JSON array a line).
    #[arg(long)]
    watch: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = args.sku.map(Sku::parse).transpose()?;
    let store = services.store()?;
    let rows = read(&store, sku.as_ref()).await?;
    if !args.watch {
        return show(&rows, args.json, false);
    }
    let watch = async {
        let mut rows = rows;
        loop {
            show(&rows, args.json, true)?;
            tokio::time::sleep(Duration::from_millis(WATCH_INTERVAL_MS)).await;
            match read(&store, sku.as_ref()).await {
                Ok(fresh) => rows = fresh,
                Err(err) => eprintln!("dropctl: {err:#} (showing the last read)"),
            }
        }
    };
    match until_ctrl_c(watch, "").await {
        // Ctrl-C is how a watch ends.
        Err(err) if err.is::<crate::interrupt::Interrupted>() => Ok(()),
        other => other,
    }
}

async fn read(store: &Store, sku: Option<&Sku>) -> anyhow::Result<Vec<DropStatusRow>> {
    let rows = store.drop_statuses(sku).await.map_err(explain)?;
    if let (Some(sku), true) = (sku, rows.is_empty()) {
        anyhow::bail!("no drop {sku}");
    }
    Ok(rows)
}

fn show(rows: &[DropStatusRow], json: bool, watching: bool) -> anyhow::Result<()> {
    match (json, watching) {
        (true, false) => println!("{}", serde_json::to_string_pretty(&json_rows(rows)?)?),
        (true, true) => println!("{}", serde_json::to_string(&json_rows(rows)?)?),
        (false, false) => print!("{}", render(rows)),
        (false, true) => {
            let now = Utc::now().format("%H:%M:%S");
            print!(
                "{CLEAR_SCREEN}dropline status at {now} (Ctrl-C to stop)\n{}",
                render(rows)
            );
        }
    }
    Ok(())
}

/// The rows as stored, with the stock for sale (initial + restocked) and
/// the status as buyers meet it now (as `GET /v1/drops/{sku}` says it).
fn json_rows(rows: &[DropStatusRow]) -> anyhow::Result<Vec<serde_json::Value>> {
    let now = Utc::now();
    rows.iter()
        .map(|row| {
            let mut value = serde_json::to_value(row)?;
            value["stock"] = (row.drop.initial_stock + row.drop.restocked).into();
            value["status"] = row.drop.status_at(now).as_str().into();
            Ok(value)
        })
        .collect()
}

/// The table, then one line per halted partition with its reason.
fn render(rows: &[DropStatusRow]) -> String {
    let now = Utc::now();
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "sku",
        "state",
        "stock",
        "won",
        "remaining",
        "decided",
        "waiting",
        "lag s",
        "dec/s",
        "owner",
        "epoch",
    ]);
    for row in rows {
        let d = &row.drop;
        table.add_row([
            d.sku.to_string(),
            state(row, now),
            (d.initial_stock + d.restocked).to_string(),
            d.won_units.to_string(),
            d.remaining.to_string(),
            row.decided.to_string(),
            row.waiting_intents.to_string(),
            format!("{:.1}", row.lag_s),
            format!("{:.0}", pace(row, now)),
            owner(row),
            row.epoch.to_string(),
        ]);
    }
    let mut out = format!("{table}\n");
    for row in rows {
        if let Some(reason) = &row.halted {
            let _ = writeln!(out, "HALTED {}: {reason}", row.drop.sku);
        }
    }
    out
}

/// The admission state as buyers meet it now (a scheduled drop whose time
/// has come is open); when it opens, if still scheduled; HALTED if halted.
fn state(row: &DropStatusRow, now: DateTime<Utc>) -> String {
    let mut state = match (row.drop.status_at(now), row.drop.opens_at) {
        (DropStatus::Scheduled, Some(at)) => {
            format!("scheduled (opens {})", at.format("%Y-%m-%d %H:%M:%SZ"))
        }
        (status, _) => status.as_str().to_string(),
    };
    if row.halted.is_some() {
        state.push_str(" HALTED");
    }
    state
}

/// Decisions per second now: the owner's last record, unless its line is
/// empty and the record older than [`PACE_FRESH_MS`] (an idle owner
/// records nothing, so its last pace would otherwise stay on show).
fn pace(row: &DropStatusRow, now: DateTime<Utc>) -> f64 {
    let fresh = row
        .progress_at
        .is_some_and(|at| (now - at).num_milliseconds() < PACE_FRESH_MS);
    if row.waiting_intents > 0 || fresh {
        row.decisions_per_s
    } else {
        0.0
    }
}

/// The owner, marked when its lease has run out (nobody decides now).
fn owner(row: &DropStatusRow) -> String {
    match (&row.owner, row.lease_live) {
        (None, _) => "-".to_string(),
        (Some(owner), true) => owner.clone(),
        (Some(owner), false) => format!("{owner} (lease over)"),
    }
}
