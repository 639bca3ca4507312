//! Waiting, bounded, for a drop's owner to decide an operator's entry: the
//! commands that put one in line say whether it took effect, or that it is
//! accepted and not decided yet (no processor decided it in time), which is
//! not a failure: the entry stays in line and is decided when one runs.

use std::time::{Duration, Instant};

use dropline_core::{OperationId, Sku};
use dropline_store::{DropStatusRow, OperationRow, Store};

use crate::services::explain;

/// How often the store is read while waiting.
const POLL_INTERVAL_MS: u64 = 200;

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Return once the entry is in line, without waiting for its owner to decide it.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the owner to decide the entry.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub wait_s: u64,
}

/// The entry waited for.
#[derive(Debug, Clone, Copy)]
pub enum Awaited<'a> {
    /// The drop's cutoff: the first close decided in its line.
    Cutoff,
    /// Operation `id`, put in line at `place` (this attempt's place: an
    /// earlier attempt may have put it in line before).
    Operation { id: &'a OperationId, place: u64 },
}

/// The drop as last read, whether its owner had decided the entry, and
/// the operation as recorded.
pub struct Waited {
    pub decided: bool,
    pub status: DropStatusRow,
    pub operation: Option<OperationRow>,
}

/// Reads `sku`'s status until its owner has decided `awaited` or the wait
/// is over (at once with `--no-wait`).
pub async fn wait_until(
    store: &Store,
    sku: &Sku,
    wait: &WaitArgs,
    awaited: Awaited<'_>,
) -> anyhow::Result<Waited> {
    let wait_s = if wait.no_wait { 0 } else { wait.wait_s };
    let deadline = Instant::now() + Duration::from_secs(wait_s);
    loop {
        let status = status_of(store, sku).await?;
        let (decided, operation) = match awaited {
            Awaited::Cutoff => (status.drop.closed_seq.is_some(), None),
            Awaited::Operation { id, place } => {
                let operation = recorded_operation(store, sku, id).await?;
                (
                    operation.is_some() || status.applied_seq >= place,
                    operation,
                )
            }
        };
        if decided || Instant::now() >= deadline {
            return Ok(Waited {
                decided,
                status,
                operation,
            });
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Operation `id` of `sku` as decided, if it was.
pub async fn recorded_operation(
    store: &Store,
    sku: &Sku,
    id: &OperationId,
) -> anyhow::Result<Option<OperationRow>> {
    let operations = store.operations(sku).await.map_err(explain)?;
    Ok(operations.into_iter().find(|op| &op.operation_id == id))
}

/// One drop's status row; a missing drop is the operator's error.
pub async fn status_of(store: &Store, sku: &Sku) -> anyhow::Result<DropStatusRow> {
    store
        .drop_statuses(Some(sku))
        .await
        .map_err(explain)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no drop {sku}"))
}

/// What an operator should know when the entry is not decided yet: why, as
/// far as the store tells.
pub fn why_not_decided(status: &DropStatusRow) -> String {
    match (&status.halted, &status.owner, status.lease_live) {
        (Some(reason), _, _) => format!("the partition is HALTED: {reason}"),
        (None, Some(owner), true) => format!(
            "its owner {owner} (epoch {}) has not reached it yet",
            status.epoch
        ),
        (None, _, _) => "no processor owns the drop's line right now".to_string(),
    }
}
