//! Partition ownership: claiming with a new fencing epoch, renewing,
//! releasing, and loading the ledger under the claimed epoch.
//!
//! A lease only decides who does the work; correctness rests on the epoch
//! checked inside every batch transaction (see `apply`).

use dropline_core::ledger::order_id_range;
use dropline_core::{LedgerState, OperationId, PerUserLimit, Sku};
use sqlx::Row;

use crate::drops::LIVE_DROP;
use crate::error::corrupt;
use crate::purchases::{decision_from_row, DECISION_COLUMNS};
use crate::sharing_changes::SHARING_CHANNEL;
use crate::{Store, StoreError};

/// What the processors share: the live drops, over the instances alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    pub live_drops: usize,
    pub instances: usize,
}

/// A partition this instance now owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionClaim {
    pub epoch: u64,
    pub applied_seq: u64,
}

impl Store {
    /// Takes the partition if it is free, its lease ran out, or `owner`
    /// already holds it; bumps the epoch either way, which fences every
    /// earlier owner. `None` when someone else holds a live lease.
    pub async fn claim_partition(
        &self,
        sku: &Sku,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<PartitionClaim>, StoreError> {
        let row = sqlx::query(
            "UPDATE partitions \
                SET epoch = epoch + 1, owner = $2, \
                    lease_until = now() + $3 * interval '1 millisecond', updated_at = now() \
              WHERE sku = $1 AND (owner IS NULL OR owner = $2 OR lease_until < now()) \
          RETURNING epoch, applied_seq",
        )
        .bind(sku.as_str())
        .bind(owner)
        .bind(lease_ms as f64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(claim_from_row).transpose()
    }

    /// Claims up to `limit` partitions of live drops (see [`LIVE_DROP`])
    /// that nobody holds, or whose lease ran out, leaving out `busy` (those
    /// this instance still works); one statement, each claimed partition's
    /// epoch bumped. Two instances claiming at once skip each other's rows
    /// instead of waiting for them.
    pub async fn claim_free_partitions(
        &self,
        owner: &str,
        limit: usize,
        busy: &[Sku],
        lease_ms: u64,
        closed_linger_s: u64,
    ) -> Result<Vec<(Sku, PartitionClaim)>, StoreError> {
        let busy: Vec<&str> = busy.iter().map(Sku::as_str).collect();
        let rows = sqlx::query(&format!(
            "UPDATE partitions p \
                SET epoch = p.epoch + 1, owner = $2, \
                    lease_until = now() + $3 * interval '1 millisecond', updated_at = now() \
               FROM (SELECT q.sku FROM partitions q JOIN drops d USING (sku) \
                      WHERE (q.owner IS NULL OR q.lease_until < now()) AND {LIVE_DROP} \
                        AND q.sku <> ALL($5::text[]) \
                      ORDER BY q.sku LIMIT $4 \
                      FOR UPDATE OF q SKIP LOCKED) free \
              WHERE p.sku = free.sku \
          RETURNING p.sku, p.epoch, p.applied_seq"
        ))
        .bind(closed_linger_s as f64)
        .bind(owner)
        .bind(lease_ms as f64)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(&busy)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let sku: String = row.try_get("sku")?;
                Ok((Sku::parse(sku).map_err(corrupt)?, claim_from_row(row)?))
            })
            .collect()
    }

    /// Extends the lease; `false` when the partition has moved on.
    pub async fn renew_partition(
        &self,
        sku: &Sku,
        owner: &str,
        epoch: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE partitions SET lease_until = now() + $4 * interval '1 millisecond' \
              WHERE sku = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(sku.as_str())
        .bind(owner)
        .bind(epoch as i64)
        .bind(lease_ms as f64)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Extends `owner`'s leases on every `(sku, epoch)` given, in one
    /// statement; the SKUs renewed. One left out has moved on.
    ///
    /// Locks the rows in SKU order, as a shared commit does
    /// (`dropline_apply_batches`). Unordered, the renewal and the instance's
    /// own shared commit each held a row the other wanted: Postgres broke
    /// the deadlock only after `deadlock_timeout` (1 s), and every batch of
    /// the instance waited that second (in about one 200-SKU load test in
    /// seven, the runs that took 1.8–2 s instead of 1).
    pub async fn renew_partitions(
        &self,
        owner: &str,
        held: &[(Sku, u64)],
        lease_ms: u64,
    ) -> Result<Vec<Sku>, StoreError> {
        let skus: Vec<&str> = held.iter().map(|(sku, _)| sku.as_str()).collect();
        let epochs: Vec<i64> = held.iter().map(|(_, epoch)| *epoch as i64).collect();
        let renewed: Vec<String> = sqlx::query_scalar(
            "WITH held AS ( \
                SELECT p.sku FROM partitions p \
                  JOIN unnest($1::text[], $2::bigint[]) AS h(sku, epoch) \
                    ON p.sku = h.sku AND p.epoch = h.epoch \
                 WHERE p.owner = $3 \
                 ORDER BY p.sku \
                   FOR UPDATE OF p) \
             UPDATE partitions p SET lease_until = now() + $4 * interval '1 millisecond' \
               FROM held WHERE p.sku = held.sku \
          RETURNING p.sku",
        )
        .bind(&skus)
        .bind(&epochs)
        .bind(owner)
        .bind(lease_ms as f64)
        .fetch_all(&self.pool)
        .await?;
        renewed
            .into_iter()
            .map(|sku| Sku::parse(sku).map_err(corrupt))
            .collect()
    }

    /// Hands the partition back so another instance can take it at once.
    pub async fn release_partition(
        &self,
        sku: &Sku,
        owner: &str,
        epoch: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE partitions SET owner = NULL, lease_until = NULL \
              WHERE sku = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(sku.as_str())
        .bind(owner)
        .bind(epoch as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads what a ledger is rebuilt from, in one consistent snapshot:
    /// its counters, its operator actions and its winners (not the rest of
    /// its decisions, which the ledger learns when a key comes back).
    pub async fn load_ledger_state(&self, sku: &Sku) -> Result<LedgerState, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT d.remaining, d.per_user_limit, d.closed_seq, p.applied_seq, p.decided \
               FROM drops d JOIN partitions p USING (sku) WHERE d.sku = $1",
        )
        .bind(sku.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::UnknownDrop(sku.to_string()))?;
        let remaining: i32 = row.try_get("remaining")?;
        let limit: i32 = row.try_get("per_user_limit")?;
        let applied_seq: i64 = row.try_get("applied_seq")?;
        let closed_seq: Option<i64> = row.try_get("closed_seq")?;
        let decided: i64 = row.try_get("decided")?;
        let operations: Vec<String> =
            sqlx::query_scalar("SELECT operation_id FROM operations WHERE sku = $1")
                .bind(sku.as_str())
                .fetch_all(&mut *tx)
                .await?;
        // Winners only, through the order-id index: what the ledger must
        // count, bounded by the stock however long the SKU's history is.
        let (first_order, last_order) = order_id_range(sku);
        let decisions = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM purchases \
              WHERE order_id BETWEEN $2 AND $3 AND sku = $1 ORDER BY seq"
        ))
        .bind(sku.as_str())
        .bind(first_order)
        .bind(last_order)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decision_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        // Every purchase row is counted: when all are winners, the ledger
        // starts with the SKU's whole history (a fresh drop: none at all).
        let holds_every_decision = usize::try_from(decided).is_ok_and(|n| n == decisions.len());
        Ok(LedgerState {
            sku: sku.clone(),
            remaining: u32::try_from(remaining).map_err(|_| corrupt("drops.remaining < 0"))?,
            per_user_limit: PerUserLimit::parse(limit.into()).map_err(corrupt)?,
            applied_seq: u64::try_from(applied_seq).map_err(|_| corrupt("applied_seq < 0"))?,
            closed_seq: closed_seq.map(|seq| seq as u64),
            decisions,
            holds_every_decision,
            operations: operations
                .into_iter()
                .map(|op| OperationId::parse(op).map_err(corrupt))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Store {
    /// Records that `instance` is alive; when `joining` (its first heartbeat
    /// of a run), also tells the processors listening that the sharing
    /// changed, whether the name is new or back after a crash.
    pub async fn processor_heartbeat(
        &self,
        instance: &str,
        joining: bool,
    ) -> Result<(), StoreError> {
        let upsert = "INSERT INTO processors (instance_id) VALUES ($1) \
                      ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now()";
        // One statement either way: the notification leaves at its commit.
        let statement = if joining {
            format!(
                "WITH beat AS ({upsert} RETURNING 1) \
                 SELECT pg_notify('{SHARING_CHANNEL}', '') FROM beat"
            )
        } else {
            upsert.to_string()
        };
        sqlx::query(&statement)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What the processors share, in one read: the live drops (see
    /// [`LIVE_DROP`]) and the instances with a heartbeat within
    /// `alive_ms` (at least one: the asker).
    pub async fn sharing(
        &self,
        closed_linger_s: u64,
        alive_ms: u64,
    ) -> Result<Sharing, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT (SELECT count(*) FROM drops d WHERE {LIVE_DROP}) AS live_drops, \
                    (SELECT count(*) FROM processors \
                      WHERE heartbeat_at > now() - $2 * interval '1 millisecond') AS instances"
        ))
        .bind(closed_linger_s as f64)
        .bind(alive_ms as f64)
        .fetch_one(&self.pool)
        .await?;
        let live_drops: i64 = row.try_get("live_drops")?;
        let instances: i64 = row.try_get("instances")?;
        Ok(Sharing {
            live_drops: usize::try_from(live_drops).unwrap_or_default(),
            instances: usize::try_from(instances).unwrap_or_default().max(1),
        })
    }

    /// Removes `instance` from the live ones (graceful shutdown), and
    /// forgets instances silent for a day.
    pub async fn processor_leaving(&self, instance: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM processors WHERE instance_id = $1 OR heartbeat_at < now() - interval '1 day'",
        )
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn claim_from_row(row: &sqlx::postgres::PgRow) -> Result<PartitionClaim, StoreError> {
    let epoch: i64 = row.try_get("epoch")?;
    let applied_seq: i64 = row.try_get("applied_seq")?;
    Ok(PartitionClaim {
        epoch: epoch as u64,
        applied_seq: applied_seq as u64,
    })
}
