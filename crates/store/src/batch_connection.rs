//! A connection kept for committing batches.
//!
//! Postgres caches the plans of a function's statements per connection,
//! and plans each statement afresh for its first five calls there. Batches
//! spread over a pool's connections kept most calls cold: the shared commit
//! took about 5 ms a call in a 200-SKU burst, against 0.2–0.3 ms a batch
//! once warm. An instance commits its batches on one connection it keeps,
//! and pays that once.

use dropline_core::{BatchPlan, Sku};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::apply::apply_batch_on;
use crate::shared_apply::apply_batches_on;
use crate::{AppliedBatch, PartitionBatch, Store, StoreError};

/// Commits batches on one connection of the store's pool, kept between
/// calls; taken again from the pool after a failure that may have broken it.
pub struct BatchConnection {
    store: Store,
    kept: Option<PoolConnection<Postgres>>,
}

impl Store {
    /// A connection for committing batches, taken from the pool on first use.
    pub fn batch_connection(&self) -> BatchConnection {
        BatchConnection {
            store: self.clone(),
            kept: None,
        }
    }
}

impl BatchConnection {
    /// [`Store::apply_batch`], on the kept connection.
    pub async fn apply_batch(
        &mut self,
        sku: &Sku,
        epoch: u64,
        plan: &BatchPlan,
    ) -> Result<AppliedBatch, StoreError> {
        let connection = self.connection().await?;
        let applied = apply_batch_on(&mut **connection, sku, epoch, plan).await;
        self.keep_if_sound(applied)
    }

    /// [`Store::apply_batches`], on the kept connection.
    pub async fn apply_batches(
        &mut self,
        batches: &[PartitionBatch<'_>],
    ) -> Result<Vec<Result<AppliedBatch, StoreError>>, StoreError> {
        let connection = self.connection().await?;
        let applied = apply_batches_on(&mut **connection, batches).await;
        self.keep_if_sound(applied)
    }

    async fn connection(&mut self) -> Result<&mut PoolConnection<Postgres>, StoreError> {
        let connection = match self.kept.take() {
            Some(kept) => kept,
            None => self.store.pool.acquire().await?,
        };
        Ok(self.kept.insert(connection))
    }

    /// Lets go of the connection after an error Postgres did not answer
    /// with (a lost connection, a timeout): it may be broken, and the pool
    /// checks what it gets back.
    fn keep_if_sound<T>(&mut self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Database(err)) = &outcome {
            if err.as_database_error().is_none() {
                self.kept = None;
            }
        }
        outcome
    }
}
