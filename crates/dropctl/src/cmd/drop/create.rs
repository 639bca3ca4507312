//! `dropctl drop create <SKU> --stock N [--per-user-limit K] [--name TEXT]`

use anyhow::Context as _;
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::NewDrop;

use crate::services::{explain, ServiceArgs};

/// Longest drop name accepted.
const NAME_BYTES_MAX: usize = 200;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SKU: letters, digits, '-' and '_', at most 64.
    sku: String,
    /// Units for sale.
    #[arg(long, allow_negative_numbers = true)]
    stock: i64,
    /// Most units one user may win.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    per_user_limit: i64,
    /// A human name for the drop.
    #[arg(long, default_value = "")]
    name: String,
    /// Print the created drop as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let drop = NewDrop {
        sku: Sku::parse(args.sku)?,
        stock: Stock::parse(args.stock)?,
        per_user_limit: PerUserLimit::parse(args.per_user_limit)?,
        name: parse_name(args.name)?,
        opens_at: None,
    };
    let store = services.store()?;
    let created = store.create_drop(&drop).await.map_err(explain)?;
    // The stream normally exists already (every dropline process creates
    // it); making sure here lets purchases flow even before `serve` ran.
    let bus = services.bus().await?;
    bus.ensure_stream(&dropline_bus::StreamSettings::default())
        .await
        .map_err(|e| anyhow::anyhow!("create stream: {e}"))
        .context("drop created, but the intents stream is missing")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        println!(
            "{}\t{} units\tper-user limit {}\t{}",
            created.sku,
            created.initial_stock,
            created.per_user_limit.get(),
            created.status.as_str()
        );
    }
    eprintln!("drop {} is open", created.sku);
    Ok(())
}

fn parse_name(name: String) -> anyhow::Result<String> {
    if name.len() > NAME_BYTES_MAX {
        anyhow::bail!("name: must be at most {NAME_BYTES_MAX} bytes");
    }
    if name.chars().any(char::is_control) {
        anyhow::bail!("name: control characters are not allowed");
    }
    Ok(name)
}
