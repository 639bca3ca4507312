//! `dropctl drop create <SKU> --stock N [--per-user-limit K] [--opens-at RFC3339] [--name TEXT] [--json]`

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use dropline_core::{DropStatus, PerUserLimit, Sku, Stock};
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
    /// When it opens, e.g. 2026-12-24T18:00:00Z; until then it is scheduled
    /// (a time already past: open at once).
    #[arg(long, value_name = "RFC3339")]
    opens_at: Option<String>,
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
        opens_at: args.opens_at.as_deref().map(parse_opens_at).transpose()?,
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
    match (created.status, created.opens_at) {
        (DropStatus::Scheduled, Some(opens_at)) => {
            let opens_at = opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            eprintln!("drop {} is scheduled: it opens at {opens_at}", created.sku);
        }
        (status, _) => eprintln!("drop {} is {}", created.sku, status.as_str()),
    }
    Ok(())
}

/// An RFC 3339 time (with its offset), as UTC.
fn parse_opens_at(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| {
            anyhow::anyhow!(
                "--opens-at {text:?}: {e} (expected RFC 3339, e.g. 2026-12-24T18:00:00Z)"
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_takes_rfc3339_with_any_offset_and_refuses_the_rest() {
        let at = parse_opens_at("2026-12-24T19:00:00+01:00").expect("a time");
        assert_eq!(at.to_rfc3339(), "2026-12-24T18:00:00+00:00");
        for bad in ["tomorrow", "2026-12-24", "2026-12-24 18:00", ""] {
            let err = parse_opens_at(bad).expect_err(bad).to_string();
            assert!(
                err.starts_with("--opens-at") && !err.contains('\n'),
                "{err}"
            );
        }
    }
}
