//! `dropctl drop close <SKU> [--operator NAME] [--json] [--no-wait] [--wait-s S]`:
//! a close entry in the drop's line (every purchase after it is decided
//! `closed`), then admission closed at the gateways; then, bounded, waits
//! for the owner to decide the cutoff. A closed drop stays as it is.

use dropline_core::Sku;

use crate::closing::{self, Closing};
use crate::decided::{wait_until, why_not_decided, Awaited};
use crate::line::EntryArgs;
use crate::services::ServiceArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drop's SKU.
    sku: String,
    #[command(flatten)]
    entry: EntryArgs,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku)?;
    let operator = args.entry.operator.resolve()?;
    let store = services.store()?;
    let closing = closing::close(&store, services, &sku, &operator).await?;
    closing.report();
    let waited = wait_until(&store, &sku, &args.entry.wait, Awaited::Cutoff).await?;
    let (operation_id, place) = match &closing {
        Closing::InLine {
            operation_id,
            place,
            ..
        } => (Some(operation_id), Some(*place)),
        Closing::Already(_) => (None, None),
    };
    let drop = &waited.status.drop;
    if args.entry.json {
        let out = serde_json::json!({
            "sku": drop.sku,
            "status": drop.status,
            "already_closed": matches!(closing, Closing::Already(_)),
            "operation_id": operation_id,
            "place": place,
            "decided": waited.decided,
            "closed_seq": drop.closed_seq,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let operation = operation_id.map_or("-".to_string(), ToString::to_string);
        let decided = if waited.decided {
            "decided"
        } else {
            "accepted"
        };
        println!("{sku}\tclosed\t{operation}\t{decided}");
    }
    match drop.closed_seq {
        Some(cutoff) => eprintln!(
            "close decided: the cutoff is at place {cutoff}; every purchase after it is closed"
        ),
        None => eprintln!(
            "accepted, not decided yet: {}; it is decided when a processor reaches it",
            why_not_decided(&waited.status)
        ),
    }
    Ok(())
}
