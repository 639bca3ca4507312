//! Drops: creating them and reading their state.

use chrono::{DateTime, Utc};
use dropline_core::{DropStatus, PerUserLimit, Sku, Stock};
use serde::Serialize;
use sqlx::Row;

use crate::error::corrupt;
use crate::{Store, StoreError};

/// A drop `d` whose line must be decided now: every drop not closed, and a
/// closed one until its close is decided and `$1` seconds (the closed
/// linger) have passed since: intents a late gateway admitted after the
/// cutoff are decided `closed` meanwhile.
pub(crate) const LIVE_DROP: &str = "(d.status <> 'closed' OR d.closed_at IS NULL \
     OR d.closed_at > now() - $1 * interval '1 second')";

/// What an operator asks for when creating a drop.
#[derive(Debug, Clone)]
pub struct NewDrop {
    pub sku: Sku,
    pub name: String,
    pub stock: Stock,
    pub per_user_limit: PerUserLimit,
    /// When it opens; `None` (or a time already past): open at once.
    pub opens_at: Option<DateTime<Utc>>,
}

/// A drop as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DropRow {
    pub sku: Sku,
    pub name: String,
    pub status: DropStatus,
    pub initial_stock: u32,
    pub restocked: u32,
    pub remaining: u32,
    pub won_units: u32,
    pub per_user_limit: PerUserLimit,
    pub created_at: DateTime<Utc>,
    /// When a scheduled drop opens.
    pub opens_at: Option<DateTime<Utc>>,
    /// Where the close stands in line, once the owner has decided it.
    pub closed_seq: Option<u64>,
    /// The admission change this state came with (see the gateways table).
    pub admission_version: u64,
}

/// A drop with its partition's progress, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct DropStatusRow {
    #[serde(flatten)]
    pub drop: DropRow,
    /// Intents decided (every outcome).
    pub decided: u64,
    /// Last stream sequence applied.
    pub applied_seq: u64,
    pub epoch: u64,
    /// The instance that owns (or last owned) the partition.
    pub owner: Option<String>,
    /// True while the owner's lease runs: someone is deciding this drop.
    pub lease_live: bool,
    /// The owner's last word on its progress (see [`crate::PartitionProgress`]).
    pub waiting_intents: u64,
    /// Seconds the oldest undecided intent has waited, as of `progress_at`.
    pub lag_s: f64,
    pub decisions_per_s: f64,
    pub progress_at: Option<DateTime<Utc>>,
    /// Why the partition stopped deciding, if it did.
    pub halted: Option<String>,
}

impl DropRow {
    /// The state buyers meet at `now`: a scheduled drop whose opening time
    /// has come is open (see [`DropStatus::as_met`]).
    pub fn status_at(&self, now: DateTime<Utc>) -> DropStatus {
        self.status
            .as_met(self.opens_at.is_some_and(|at| at <= now))
    }
}

pub(crate) const DROP_COLUMNS: &str =
    "d.sku, d.name, d.status, d.initial_stock, d.restocked, d.remaining, \
     d.won_units, d.per_user_limit, d.created_at, d.opens_at, d.closed_seq, d.admission_version";

pub(crate) fn drop_from_row(row: &sqlx::postgres::PgRow) -> Result<DropRow, StoreError> {
    let count = |column: &str| -> Result<u32, StoreError> {
        let value: i32 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| corrupt(format!("drops.{column} = {value}")))
    };
    let sku: String = row.try_get("sku")?;
    let status: String = row.try_get("status")?;
    let limit: i32 = row.try_get("per_user_limit")?;
    Ok(DropRow {
        sku: Sku::parse(sku).map_err(corrupt)?,
        name: row.try_get("name")?,
        status: DropStatus::parse(&status).map_err(corrupt)?,
        initial_stock: count("initial_stock")?,
        restocked: count("restocked")?,
        remaining: count("remaining")?,
        won_units: count("won_units")?,
        per_user_limit: PerUserLimit::parse(limit.into()).map_err(corrupt)?,
        created_at: row.try_get("created_at")?,
        opens_at: row.try_get("opens_at")?,
        closed_seq: row
            .try_get::<Option<i64>, _>("closed_seq")?
            .map(|seq| unsigned(seq, "drops.closed_seq"))
            .transpose()?,
        admission_version: unsigned(row.try_get("admission_version")?, "drops.admission_version")?,
    })
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("{what} = {value}")))
}

impl Store {
    /// Creates a drop (open, or scheduled when it opens later) and its
    /// partition row, in one transaction.
    pub async fn create_drop(&self, drop: &NewDrop) -> Result<DropRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO drops AS d (sku, name, initial_stock, remaining, per_user_limit, \
                                     opens_at, status, admission_version) \
             VALUES ($1, $2, $3, $3, $4, $5, \
                     CASE WHEN $5 > now() THEN 'scheduled' ELSE 'open' END, \
                     nextval('drops_admission_version')) \
             ON CONFLICT (sku) DO NOTHING RETURNING {DROP_COLUMNS}"
        ))
        .bind(drop.sku.as_str())
        .bind(&drop.name)
        .bind(drop.stock.get() as i32)
        .bind(drop.per_user_limit.get() as i32)
        .bind(drop.opens_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(StoreError::DropExists(drop.sku.to_string()));
        };
        sqlx::query("INSERT INTO partitions (sku) VALUES ($1)")
            .bind(drop.sku.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop_from_row(&row)
    }

    pub async fn drop(&self, sku: &Sku) -> Result<Option<DropRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DROP_COLUMNS} FROM drops d WHERE d.sku = $1"
        ))
        .bind(sku.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(drop_from_row).transpose()
    }

    /// Drops with their partition progress; all of them, or one.
    pub async fn drop_statuses(&self, sku: Option<&Sku>) -> Result<Vec<DropStatusRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DROP_COLUMNS}, p.decided, p.applied_seq, p.epoch, p.owner, \
                    coalesce(p.lease_until > now(), false) AS lease_live, \
                    p.waiting_intents, p.decisions_per_s, p.progress_at, p.halted, \
                    coalesce(extract(epoch FROM p.progress_at - p.oldest_waiting_at), 0)::float8 \
                        AS lag_s \
             FROM drops d JOIN partitions p USING (sku) \
             WHERE $1::text IS NULL OR d.sku = $1 ORDER BY d.created_at, d.sku"
        ))
        .bind(sku.map(Sku::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DropStatusRow {
                    drop: drop_from_row(row)?,
                    decided: unsigned(row.try_get("decided")?, "partitions.decided")?,
                    applied_seq: unsigned(row.try_get("applied_seq")?, "partitions.applied_seq")?,
                    epoch: unsigned(row.try_get("epoch")?, "partitions.epoch")?,
                    owner: row.try_get("owner")?,
                    lease_live: row.try_get("lease_live")?,
                    waiting_intents: unsigned(row.try_get("waiting_intents")?, "waiting_intents")?,
                    lag_s: row.try_get::<f64, _>("lag_s")?.max(0.0),
                    decisions_per_s: row.try_get("decisions_per_s")?,
                    progress_at: row.try_get("progress_at")?,
                    halted: row.try_get("halted")?,
                })
            })
            .collect()
    }
}
