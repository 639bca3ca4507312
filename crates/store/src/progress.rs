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
}

impl Store {
    /// Records `progress` for `sku`, unless the partition has moved on to
    /// another epoch (`false` then).
    pub async fn record_progress(
        &self,
        sku: &Sku,
        epoch: u64,
        progress: &PartitionProgress,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE partitions SET waiting_intents = $3, oldest_waiting_at = $4, \
                    decisions_per_s = $5, progress_at = now() \
              WHERE sku = $1 AND epoch = $2",
        )
        .bind(sku.as_str())
        .bind(epoch as i64)
        .bind(progress.waiting_intents as i64)
        .bind(progress.oldest_waiting_at)
        .bind(progress.decisions_per_s.max(0.0))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Records why `sku`'s partition stopped deciding (`None`: it decides
    /// again).
    pub async fn record_halt(
        &self,
        sku: &Sku,
        epoch: u64,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE partitions SET halted = $3 WHERE sku = $1 AND epoch = $2")
            .bind(sku.as_str())
            .bind(epoch as i64)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
