//! `dropctl winners <SKU> [--format csv|json] [--output PATH]`: every won
//! order of a drop in line order, for the warehouse. CSV (RFC 4180: a field
//! holding a comma, a quote or a line break is quoted, quotes doubled) with
//! the header `seq,order_id,user_id,quantity,idempotency_key,decided_at`,
//! or a JSON array of objects with those names; times in RFC 3339 UTC.

use std::io::Write;
use std::path::PathBuf;

use chrono::SecondsFormat;
use dropline_core::Sku;
use dropline_store::Winner;

use crate::services::{explain, ServiceArgs};

/// The CSV header: the column names, also the JSON objects' keys.
const COLUMNS: [&str; 6] = [
    "seq",
    "order_id",
    "user_id",
    "quantity",
    "idempotency_key",
    "decided_at",
];

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drop's SKU.
    sku: String,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku)?;
    let store = services.store()?;
    if store.drop(&sku).await.map_err(explain)?.is_none() {
        anyhow::bail!("no drop {sku}");
    }
    let winners = store.winners(&sku).await.map_err(explain)?;
    let text = match args.format {
        Format::Csv => csv(&winners),
        Format::Json => serde_json::to_string_pretty(&json(&winners))? + "\n",
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
            eprintln!(
                "{} won orders of {sku} written to {}",
                winners.len(),
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            eprintln!("{} won orders of {sku}", winners.len());
        }
    }
    Ok(())
}

/// A winner's fields, in [`COLUMNS`] order, as text.
fn fields(winner: &Winner) -> [String; 6] {
    [
        winner.seq.to_string(),
        winner.order_id.to_string(),
        winner.user_id.to_string(),
        winner.quantity.get().to_string(),
        winner.idempotency_key.to_string(),
        time(winner),
    ]
}

fn csv(winners: &[Winner]) -> String {
    let mut out = COLUMNS.join(",") + "\n";
    for winner in winners {
        let row: Vec<String> = fields(winner).iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A winner as a JSON object: the CSV's columns, in its order.
#[derive(serde::Serialize)]
struct JsonWinner<'a> {
    seq: u64,
    order_id: uuid::Uuid,
    user_id: &'a str,
    quantity: u32,
    idempotency_key: &'a str,
    decided_at: String,
}

fn json(winners: &[Winner]) -> Vec<JsonWinner<'_>> {
    winners
        .iter()
        .map(|w| JsonWinner {
            seq: w.seq,
            order_id: w.order_id,
            user_id: w.user_id.as_str(),
            quantity: w.quantity.get(),
            idempotency_key: w.idempotency_key.as_str(),
            decided_at: time(w),
        })
        .collect()
}

/// When a winner was decided, in RFC 3339 UTC to the microsecond (what
/// Postgres keeps).
fn time(winner: &Winner) -> String {
    winner
        .decided_at
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("ana"), "ana");
        assert_eq!(csv_field("smith, john"), "\"smith, john\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
