//! Recorded decisions: the purchases read model.

use dropline_core::{Decision, IdempotencyKey, Outcome, Quantity, Sku, UserId};
use sqlx::Row;

use crate::error::corrupt;
use crate::{Store, StoreError};

pub(crate) const DECISION_COLUMNS: &str =
    "seq, idempotency_key, user_id, quantity, outcome, order_id";

pub(crate) fn decision_from_row(row: &sqlx::postgres::PgRow) -> Result<Decision, StoreError> {
    let seq: i64 = row.try_get("seq")?;
    let key: String = row.try_get("idempotency_key")?;
    let user: String = row.try_get("user_id")?;
    let quantity: i32 = row.try_get("quantity")?;
    let outcome: String = row.try_get("outcome")?;
    Ok(Decision {
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("purchases.seq = {seq}")))?,
        key: IdempotencyKey::parse(key).map_err(corrupt)?,
        user_id: UserId::parse(user).map_err(corrupt)?,
        quantity: Quantity::parse(quantity.into()).map_err(corrupt)?,
        outcome: Outcome::parse(&outcome).map_err(corrupt)?,
        order_id: row.try_get("order_id")?,
    })
}

impl Store {
    /// The decision recorded for (SKU, key), if any.
    pub async fn purchase(
        &self,
        sku: &Sku,
        key: &IdempotencyKey,
    ) -> Result<Option<Decision>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM purchases WHERE sku = $1 AND idempotency_key = $2"
        ))
        .bind(sku.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    /// Every decision of a drop, in stream order.
    pub async fn decisions(&self, sku: &Sku) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM purchases WHERE sku = $1 ORDER BY seq"
        ))
        .bind(sku.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
    }
}

impl Store {
    /// The decisions of the last committed batch of `sku` (rows sharing the
    /// newest row's commit time and epoch). A new owner re-announces them:
    /// the previous owner may have died between its commit and its announce.
    pub async fn last_batch(
        &self,
        sku: &Sku,
        batch_len_max: usize,
    ) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM ( \
                 SELECT {DECISION_COLUMNS}, decided_at, epoch FROM purchases \
                  WHERE sku = $1 ORDER BY seq DESC LIMIT $2) recent \
              WHERE (decided_at, epoch) = ( \
                 SELECT decided_at, epoch FROM purchases WHERE sku = $1 ORDER BY seq DESC LIMIT 1) \
              ORDER BY seq"
        ))
        .bind(sku.as_str())
        .bind(batch_len_max as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
    }
}
