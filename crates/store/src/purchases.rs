//! Recorded decisions: the purchases read model.

use chrono::{DateTime, Utc};
use dropline_core::{Decision, IdempotencyKey, Outcome, Quantity, Sku, UserId};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

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

    /// The decisions recorded for those of `keys` that have one, in line
    /// order: what a processor learns when the store refuses a batch for a
    /// key decided before.
    pub async fn purchases_of_keys(
        &self,
        sku: &Sku,
        keys: &[&str],
    ) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM purchases \
              WHERE sku = $1 AND idempotency_key = ANY($2) ORDER BY seq"
        ))
        .bind(sku.as_str())
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
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
    /// newest row's commit time and epoch), in line order. A new owner
    /// re-announces them: the previous owner may have died between its
    /// commit and its announce.
    pub async fn last_batch(
        &self,
        sku: &Sku,
        batch_len_max: usize,
    ) -> Result<Vec<Decision>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Only a walk back along the (sku, seq) index reads just the newest
        // rows. A SKU newer than the table's statistics (a hot drop in a
        // table analyzed before it) looks small to the planner, which then
        // sorts every row of it instead: 0.44 s for a SKU of a million
        // decisions (`just bench --only history`), against 3 ms.
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM ( \
                 SELECT {DECISION_COLUMNS}, decided_at, epoch FROM purchases \
                  WHERE sku = $1 ORDER BY seq DESC LIMIT $2) recent \
              WHERE (decided_at, epoch) = ( \
                 SELECT decided_at, epoch FROM purchases WHERE sku = $1 ORDER BY seq DESC LIMIT 1)"
        ))
        .bind(sku.as_str())
        .bind(batch_len_max as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut decisions = rows
            .iter()
            .map(decision_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        decisions.sort_unstable_by_key(|decision| decision.seq);
        Ok(decisions)
    }
}

/// One won order, as the warehouse and the audits read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Winner {
    /// The purchase's place in line.
    pub seq: u64,
    pub order_id: Uuid,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub idempotency_key: IdempotencyKey,
    pub decided_at: DateTime<Utc>,
}

/// When a drop's decisions were committed: the processor's pace, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionSpan {
    /// The first and the last batch's commit (`None` before any decision).
    pub first_commit: Option<DateTime<Utc>>,
    pub last_commit: Option<DateTime<Utc>>,
    /// Batches committed: the rows of one batch share its commit time.
    pub batches: u64,
    pub decided: u64,
    pub won: u64,
}

impl Store {
    /// Every won order of `sku`, in line order.
    pub async fn winners(&self, sku: &Sku) -> Result<Vec<Winner>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS}, decided_at \
               FROM purchases WHERE sku = $1 AND outcome = 'won' ORDER BY seq"
        ))
        .bind(sku.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let decision = decision_from_row(row)?;
                Ok(Winner {
                    seq: decision.seq,
                    order_id: decision
                        .order_id
                        .ok_or_else(|| corrupt("a won purchase without an order id"))?,
                    user_id: decision.user_id,
                    quantity: decision.quantity,
                    idempotency_key: decision.key,
                    decided_at: row.try_get("decided_at")?,
                })
            })
            .collect()
    }

    /// When `sku`'s decisions were committed, from the purchases' commit times.
    pub async fn decision_span(&self, sku: &Sku) -> Result<DecisionSpan, StoreError> {
        let row = sqlx::query(
            "SELECT min(decided_at) AS first_commit, max(decided_at) AS last_commit, \
                    count(DISTINCT decided_at) AS batches, count(*) AS decided, \
                    count(*) FILTER (WHERE outcome = 'won') AS won \
               FROM purchases WHERE sku = $1",
        )
        .bind(sku.as_str())
        .fetch_one(&self.pool)
        .await?;
        let count = |column: &str| -> Result<u64, StoreError> {
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| corrupt(format!("{column} = {value}")))
        };
        Ok(DecisionSpan {
            first_commit: row.try_get("first_commit")?,
            last_commit: row.try_get("last_commit")?,
            batches: count("batches")?,
            decided: count("decided")?,
            won: count("won")?,
        })
    }
}

impl Store {
    /// `sku`'s recorded decisions other than `sold_out`, in line order: what
    /// a gateway answers from once the drop is finally sold out (bounded by
    /// the stock and the per-user limit).
    pub async fn answers_other_than_sold_out(
        &self,
        sku: &Sku,
    ) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM purchases \
              WHERE sku = $1 AND outcome <> 'sold_out' ORDER BY seq"
        ))
        .bind(sku.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decision_from_row).collect()
    }
}

/// How a drop's decided intents came out, one count per outcome: the tally
/// an operator reads after a drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub won: u64,
    pub sold_out: u64,
    pub limit_reached: u64,
    pub closed: u64,
    /// Every decided intent, whatever its outcome.
    pub decided: u64,
}

impl Store {
    /// `sku`'s decided intents counted by outcome (purchases, not units).
    pub async fn outcome_counts(&self, sku: &Sku) -> Result<OutcomeCounts, StoreError> {
        let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE outcome = 'won'), \
                    count(*) FILTER (WHERE outcome = 'sold_out'), \
                    count(*) FILTER (WHERE outcome = 'limit_reached'), \
                    count(*) FILTER (WHERE outcome = 'closed'), count(*) \
               FROM purchases WHERE sku = $1",
        )
        .bind(sku.as_str())
        .fetch_one(&self.pool)
        .await?;
        let (won, sold_out, limit_reached, closed, decided) = counts;
        let count = |value: i64| {
            u64::try_from(value).map_err(|_| corrupt(format!("an outcome count of {value}")))
        };
        Ok(OutcomeCounts {
            won: count(won)?,
            sold_out: count(sold_out)?,
            limit_reached: count(limit_reached)?,
            closed: count(closed)?,
            decided: count(decided)?,
        })
    }
}
