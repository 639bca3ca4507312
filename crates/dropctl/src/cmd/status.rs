//! `dropctl status [<SKU>] [--json]`

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dropline_core::Sku;
use dropline_store::DropStatusRow;
use serde_json::json;

use crate::services::{explain, ServiceArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this drop.
    sku: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = args.sku.map(Sku::parse).transpose()?;
    let store = services.store()?;
    let drops = store.drop_statuses(sku.as_ref()).await.map_err(explain)?;
    if let (Some(sku), true) = (&sku, drops.is_empty()) {
        anyhow::bail!("no drop {sku}");
    }
    // Queue depth comes from NATS; without it the rest is still worth showing.
    let bus = match services.bus().await {
        Ok(bus) => Some(bus),
        Err(err) => {
            eprintln!("warning: queue depth unknown: {err:#}");
            None
        }
    };
    let mut rows = Vec::with_capacity(drops.len());
    for drop in drops {
        let depth = match &bus {
            Some(bus) => bus.queue_depth(&drop.drop.sku).await.ok().flatten(),
            None => None,
        };
        rows.push((drop, depth));
    }

    if args.json {
        print_json(&rows)
    } else {
        print_table(&rows);
        Ok(())
    }
}

/// A drop and the messages waiting on its subject (`None`: unknown).
type StatusRow = (DropStatusRow, Option<u64>);

fn print_json(rows: &[StatusRow]) -> anyhow::Result<()> {
    let out: Vec<_> = rows
        .iter()
        .map(|(d, depth)| {
            let mut value = serde_json::to_value(d).unwrap_or_default();
            value["queue_depth"] = json!(depth);
            value
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_table(rows: &[StatusRow]) {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "sku",
        "status",
        "stock",
        "won",
        "remaining",
        "decided",
        "queued msgs",
        "applied seq",
        "epoch",
        "owner",
    ]);
    for (d, depth) in rows {
        table.add_row([
            d.drop.sku.to_string(),
            d.drop.status.as_str().to_string(),
            (d.drop.initial_stock + d.drop.restocked).to_string(),
            d.drop.won_units.to_string(),
            d.drop.remaining.to_string(),
            d.decided.to_string(),
            depth.map_or("?".into(), |n| n.to_string()),
            d.applied_seq.to_string(),
            d.epoch.to_string(),
            d.owner.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{table}");
}
