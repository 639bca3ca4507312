//! What a partition's owner records about its progress (intents waiting,
//! the oldest one's age, decisions per second) and why it halted, so that
//! operators read one row per drop instead of asking NATS about each SKU.
//! Written only by the owner of the current epoch.

use chrono::{DateTime, Utc};
use dropline_core::Sku;

use crate::{Store, StoreError};

/// The owner's view of its line at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionProgress {
    /// Intents in line after the applied sequence, as far as the owner can
    /// see: those delivered to it, plus one per message not delivered yet.
    pub waiting_intents: u64,
    /// When the oldest of them was accepted (its message's stream time).
    pub oldest_waiting_at: Option<DateTime<Utc>>,
    pub decisions_per_s: f64,
    /// When the owner looked: what `lag_s` and the freshness of a record
    /// are measured from, however late the record is written.
    pub seen_at: DateTime<Utc>,
}

impl Store {
    /// Records the progress of several partitions in one statement, each
    /// unless its partition has moved on to another epoch or its row is
    /// locked right now; the SKUs recorded.
    ///
    /// Never waits for a row lock (`SKIP LOCKED`): a record is advisory,
    /// and a statement that locks many partition rows in whatever order
    /// its plan reads them could otherwise deadlock with a shared commit,
    /// which locks them in SKU order, and stall every batch of the
    /// instance until Postgres broke the deadlock. A record skipped is
    /// the caller's to write again. The epoch is checked where the row is
    /// locked, so it still holds when the row is written.
    pub async fn record_progress_of(
        &self,
        records: &[(Sku, u64, PartitionProgress)],
    ) -> Result<Vec<Sku>, StoreError> {
        let skus: Vec<&str> = records.iter().map(|(sku, ..)| sku.as_str()).collect();
        let epochs: Vec<i64> = records.iter().map(|(_, epoch, _)| *epoch as i64).collect();
        let waiting: Vec<i64> = records
            .iter()
            .map(|(.., p)| p.waiting_intents as i64)
            .collect();
        let oldest: Vec<Option<DateTime<Utc>>> =
            records.iter().map(|(.., p)| p.oldest_waiting_at).collect();
        let rates: Vec<f64> = records
            .iter()
            .map(|(.., p)| p.decisions_per_s.max(0.0))
            .collect();
        let seen: Vec<DateTime<Utc>> = records.iter().map(|(.., p)| p.seen_at).collect();
        let recorded: Vec<String> = sqlx::query_scalar(
            "WITH free AS ( \
                 SELECT r.* FROM unnest($1::text[], $2::bigint[], $3::bigint[], \
                                        $4::timestamptz[], $5::float8[], $6::timestamptz[]) \
                            AS r(sku, epoch, waiting, oldest, rate, seen) \
                   JOIN partitions p ON p.sku = r.sku AND p.epoch = r.epoch \
                    FOR NO KEY UPDATE OF p SKIP LOCKED \
             ) \
             UPDATE partitions p SET waiting_intents = r.waiting, oldest_waiting_at = r.oldest, \
                    decisions_per_s = r.rate, progress_at = r.seen \
               FROM free r \
              WHERE p.sku = r.sku \
          RETURNING p.sku",
        )
        .bind(&skus)
        .bind(&epochs)
        .bind(&waiting)
        .bind(&oldest)
        .bind(&rates)
        .bind(&seen)
        .fetch_all(&self.pool)
        .await?;
        recorded
            .into_iter()
            .map(|sku| Sku::parse(sku).map_err(crate::error::corrupt))
            .collect()
    }

    /// Records why `sku`'s partition stopped deciding (`None`: it decides
    /// again). A row that already says so is left alone: every claim clears
    /// the halt, and 200 drops claimed together each paid a row lock and a
    /// write for nothing (17–20 ms of Postgres and 200 row writes in a
    /// 200-SKU load test's claims; 4–5 ms and none without them).
    pub async fn record_halt(
        &self,
        sku: &Sku,
        epoch: u64,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE partitions SET halted = $3 \
             WHERE sku = $1 AND epoch = $2 AND halted IS DISTINCT FROM $3",
        )
        .bind(sku.as_str())
        .bind(epoch as i64)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
