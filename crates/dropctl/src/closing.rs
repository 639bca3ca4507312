//! Closing a drop, as `drop close` and `drain` do it: first a close entry
//! in the drop's line (the cutoff: every purchase after it is decided
//! `closed`), then admission closed at the gateways, so they stop putting
//! new keys in line. A drop already closed is left as it is: its close
//! entry went in line before its admission closed.

use anyhow::Context as _;
use dropline_core::wire::ControlPayload;
use dropline_core::{Action, DropStatus, OperationId, OperatorId, Sku};
use dropline_store::{AdmissionChange, DropRow, Store};

use crate::line::put_in_line;
use crate::operator::new_operation_id;
use crate::services::{explain, ServiceArgs};
use crate::{admission, line};

/// What closing found or did.
pub enum Closing {
    /// The drop was closed already.
    Already(DropRow),
    /// A close entry was put in line now, at `place`.
    InLine {
        operation_id: OperationId,
        place: u64,
        drop: DropRow,
    },
}

impl Closing {
    pub fn drop(&self) -> &DropRow {
        match self {
            Closing::Already(drop) | Closing::InLine { drop, .. } => drop,
        }
    }

    /// Tells the operator, on stderr, what happened.
    pub fn report(&self) {
        match self {
            Closing::Already(drop) => match drop.closed_seq {
                Some(seq) => eprintln!("drop {} is already closed (cutoff at place {seq})", drop.sku),
                None => eprintln!(
                    "drop {} is already closed at the gateways; its close entry waits in line",
                    drop.sku
                ),
            },
            Closing::InLine {
                operation_id,
                place,
                drop,
            } => eprintln!(
                "drop {}: close entry {operation_id} is in line at place {place}; gateways refuse new keys",
                drop.sku
            ),
        }
    }
}

/// Closes `sku` on behalf of `operator` (see the module's doc).
pub async fn close(
    store: &Store,
    services: &ServiceArgs,
    sku: &Sku,
    operator: &OperatorId,
) -> anyhow::Result<Closing> {
    let drop = store
        .drop(sku)
        .await
        .map_err(explain)?
        .ok_or_else(|| anyhow::anyhow!("no drop {sku}"))?;
    if drop.status == DropStatus::Closed {
        return Ok(Closing::Already(drop));
    }
    let operation_id = new_operation_id("close")?;
    let payload = ControlPayload::new(&operation_id, operator, Action::Close);
    let line::Placed { place, bus } = put_in_line(services, sku, &payload)
        .await
        .with_context(|| format!("close {sku}: the gateways still admit; run it again"))?;
    let changed = admission::change(store, sku, AdmissionChange::Close)
        .await
        .with_context(|| {
            format!(
                "close entry {operation_id} is in line at place {place} (the cutoff), \
                 but the gateways still admit; run close again"
            )
        })?;
    admission::announce(services, Some(&bus), sku).await;
    Ok(Closing::InLine {
        operation_id,
        place,
        drop: changed.after,
    })
}
