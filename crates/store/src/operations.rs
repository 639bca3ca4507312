//! Operator actions decided in a SKU's line (closes, restocks): the read
//! model audits replay them from. Written only by the batch (see `apply`).

use chrono::{DateTime, Utc};
use dropline_core::{Action, Control, OperationId, OperatorId, Sku, Stock};
use serde::Serialize;
use sqlx::Row;

use crate::error::corrupt;
use crate::{Store, StoreError};

/// One operator action as decided, with when.
#[derive(Debug, Clone, Serialize)]
pub struct OperationRow {
    pub seq: u64,
    pub operation_id: OperationId,
    pub operator: OperatorId,
    pub kind: &'static str,
    pub units: Option<u32>,
    pub decided_at: DateTime<Utc>,
}

impl OperationRow {
    /// The action as the ledger takes it.
    pub fn control(&self) -> Result<Control, StoreError> {
        let action = match (self.kind, self.units) {
            ("close", None) => Action::Close,
            ("restock", Some(units)) => {
                Action::Restock(Stock::parse(units.into()).map_err(corrupt)?)
            }
            (kind, units) => return Err(corrupt(format!("operation {kind} with units {units:?}"))),
        };
        Ok(Control {
            seq: self.seq,
            op: self.operation_id.clone(),
            by: self.operator.clone(),
            action,
        })
    }
}

impl Store {
    /// Every operator action decided for `sku`, in line order.
    pub async fn operations(&self, sku: &Sku) -> Result<Vec<OperationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, operation_id, operator, kind, units, decided_at \
               FROM operations WHERE sku = $1 ORDER BY seq",
        )
        .bind(sku.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let kind: String = row.try_get("kind")?;
                let units: Option<i32> = row.try_get("units")?;
                Ok(OperationRow {
                    seq: u64::try_from(seq).map_err(|_| corrupt("operations.seq < 0"))?,
                    operation_id: OperationId::parse(row.try_get::<String, _>("operation_id")?)
                        .map_err(corrupt)?,
                    operator: OperatorId::parse(row.try_get::<String, _>("operator")?)
                        .map_err(corrupt)?,
                    kind: match kind.as_str() {
                        "close" => "close",
                        "restock" => "restock",
                        other => return Err(corrupt(format!("operation kind {other}"))),
                    },
                    units: units.map(|n| n.max(0) as u32),
                    decided_at: row.try_get("decided_at")?,
                })
            })
            .collect()
    }
}
