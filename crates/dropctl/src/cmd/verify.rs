//! `dropctl verify <SKU> [--json]`: audits the drop's promises from Postgres
//! and the stream; exits non-zero and names each violation.

use dropline_core::Sku;

use crate::audit_table;
use crate::services::{explain, ServiceArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    sku: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku)?;
    let store = services.store()?;
    // Fail with an operator's message when the schema or drop is missing.
    if store.drop(&sku).await.map_err(explain)?.is_none() {
        anyhow::bail!("no drop {sku}");
    }
    let bus = services.bus().await?;
    let report = dropline_audit::audit(&store, &bus, &sku).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        audit_table::print(&report);
        if report.queued > 0 {
            eprintln!("{} intents are queued and not decided yet", report.queued);
        }
    }
    audit_table::verdict(&report)?;
    eprintln!("{sku}: every promise holds");
    Ok(())
}
