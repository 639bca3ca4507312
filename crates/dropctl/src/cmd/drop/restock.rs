//! `dropctl drop restock <SKU> --add N [--operation-id ID] [--operator NAME]
//! [--json] [--no-wait] [--wait-s S]`: adds units at a place in the drop's
//! line. The restock carries an operation id (generated, or the one given
//! to retry an earlier attempt) and the line applies an id once, so a
//! restock retried after a lost answer adds its units once. A broker that
//! does not take it is tried a few times; after that the command fails
//! naming the exact command that retries it.

use anyhow::Context as _;
use dropline_core::wire::ControlPayload;
use dropline_core::{Action, DropStatus, OperationId, Sku, Stock};
use dropline_store::{DropStatusRow, OperationRow};

use crate::decided::{recorded_operation, status_of, wait_until, why_not_decided, Awaited};
use crate::line::{put_in_line, EntryArgs};
use crate::operator::new_operation_id;
use crate::services::ServiceArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drop's SKU.
    sku: String,
    /// Units to add (at least 1).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    add: i64,
    /// The id of an earlier restock to retry (its units are added once); new if absent.
    #[arg(long, value_name = "ID")]
    operation_id: Option<String>,
    #[command(flatten)]
    entry: EntryArgs,
}

/// What became of a restock, as shown.
struct Outcome<'a> {
    sku: &'a Sku,
    operation_id: &'a OperationId,
    units: Stock,
    /// Where this run put it in line (`None`: nothing sent).
    place: Option<u64>,
    decided: bool,
    /// The operation as recorded, once decided.
    recorded: Option<&'a OperationRow>,
    status: &'a DropStatusRow,
    retry: &'a str,
}

pub async fn run(args: Args, services: &ServiceArgs) -> anyhow::Result<()> {
    let sku = Sku::parse(args.sku)?;
    let units = parse_units(args.add)?;
    let operation_id = match args.operation_id {
        Some(id) => OperationId::parse(id)?,
        None => new_operation_id("restock")?,
    };
    let operator = args.entry.operator.resolve()?;
    let store = services.store()?;
    let retry = format!(
        "dropctl drop restock {sku} --add {} --operation-id {operation_id}",
        units.get()
    );
    let status = status_of(&store, &sku).await?;
    let mut outcome = Outcome {
        sku: &sku,
        operation_id: &operation_id,
        units,
        place: None,
        decided: true,
        recorded: None,
        status: &status,
        retry: &retry,
    };
    // A retry of a restock decided already: nothing to send.
    if let Some(done) = recorded_operation(&store, &sku, &operation_id).await? {
        check_same_restock(&done, units)?;
        outcome.recorded = Some(&done);
        return show(&outcome, args.entry.json);
    }
    if status.drop.status == DropStatus::Closed {
        anyhow::bail!(
            "drop {sku} is closed: units added after its cutoff could never be sold; nothing was sent"
        );
    }
    let payload = ControlPayload::new(&operation_id, &operator, Action::Restock(units));
    let placed = put_in_line(services, &sku, &payload).await.with_context(|| {
        format!("restock {operation_id} of {sku} not accepted; retry with `{retry}` (its units are added once)")
    })?;
    eprintln!(
        "restock {operation_id} (+{}) is in line at place {}; if in doubt, retry it with: {retry}",
        units.get(),
        placed.place
    );
    let awaited = Awaited::Operation {
        id: &operation_id,
        place: placed.place,
    };
    let waited = wait_until(&store, &sku, &args.entry.wait, awaited).await?;
    outcome.place = Some(placed.place);
    outcome.decided = waited.decided;
    outcome.status = &waited.status;
    outcome.recorded = waited.operation.as_ref();
    show(&outcome, args.entry.json)
}

/// `--add`: a stock of at least one unit (a restock of none is no entry).
fn parse_units(add: i64) -> anyhow::Result<Stock> {
    let units = Stock::parse(add).map_err(|e| anyhow::anyhow!("--add: {}", e.reason))?;
    if units.get() == 0 {
        anyhow::bail!("--add: must be at least 1");
    }
    Ok(units)
}

/// An operation id names one action: a retry must repeat it exactly.
fn check_same_restock(done: &OperationRow, units: Stock) -> anyhow::Result<()> {
    if done.kind != "restock" || done.units != Some(units.get()) {
        anyhow::bail!(
            "operation {} was a {} of {:?} units (at place {}), not a restock of {}: nothing was sent",
            done.operation_id,
            done.kind,
            done.units.unwrap_or(0),
            done.seq,
            units.get()
        );
    }
    Ok(())
}

fn show(outcome: &Outcome<'_>, json: bool) -> anyhow::Result<()> {
    let drop = &outcome.status.drop;
    if json {
        let out = serde_json::json!({
            "sku": outcome.sku,
            "operation_id": outcome.operation_id,
            "units": outcome.units,
            "place": outcome.place,
            "decided": outcome.decided,
            "decided_at": outcome.recorded.map(|op| op.seq),
            "stock": drop.initial_stock + drop.restocked,
            "restocked": drop.restocked,
            "remaining": drop.remaining,
            "retry": outcome.retry,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let state = if outcome.decided {
            "decided"
        } else {
            "accepted"
        };
        let units = outcome.units.get();
        println!(
            "{}\trestock +{units}\t{}\t{state}",
            outcome.sku, outcome.operation_id
        );
    }
    eprintln!("{}", describe(outcome));
    Ok(())
}

/// The operator's sentence for the outcome.
fn describe(outcome: &Outcome<'_>) -> String {
    let drop = &outcome.status.drop;
    let stock = format!(
        "stock is {} ({} initial + {} restocked), {} remaining",
        drop.initial_stock + drop.restocked,
        drop.initial_stock,
        drop.restocked,
        drop.remaining
    );
    match (outcome.recorded, outcome.place) {
        (Some(op), Some(place)) if op.seq == place => {
            format!("restock decided at place {place}: {stock}")
        }
        (Some(op), _) => format!(
            "operation {} was decided already, at place {}: its units were added once; {stock}",
            op.operation_id, op.seq
        ),
        (None, _) if outcome.decided => format!("restock decided: {stock}"),
        (None, _) => format!(
            "accepted, not decided yet: {}; it is decided when a processor reaches it",
            why_not_decided(outcome.status)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restock_adds_at_least_one_unit_and_at_most_the_stock_limit() {
        assert_eq!(parse_units(5).expect("units").get(), 5);
        for bad in [0, -1, i64::from(Stock::MAX) + 1] {
            let err = parse_units(bad).expect_err("refused").to_string();
            assert!(err.starts_with("--add: "), "{err}");
        }
    }
}
