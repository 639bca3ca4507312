//! The batch transaction: one statement, one round trip, one commit.

use dropline_core::{BatchPlan, Sku};
use uuid::Uuid;

use crate::{Store, StoreError};

/// What the store says after applying a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedBatch {
    /// Units left after the batch, as the database computed them.
    pub remaining: u32,
}

impl Store {
    /// Records `plan` for `sku` under `epoch`, atomically.
    ///
    /// Refused, with nothing written, if the epoch is no longer the
    /// partition's ([`StoreError::Fenced`]) or the store's applied sequence is
    /// not the one the plan was made from ([`StoreError::StaleLedger`]). A
    /// second decision for a key or a sequence violates a unique constraint,
    /// and stock below zero a CHECK: the database is the second line of
    /// defence behind the ledger.
    #[tracing::instrument(skip_all, fields(sku = %sku, epoch, decided = plan.decided.len()))]
    pub async fn apply_batch(
        &self,
        sku: &Sku,
        epoch: u64,
        plan: &BatchPlan,
    ) -> Result<AppliedBatch, StoreError> {
        let n = plan.decided.len();
        let mut keys = Vec::with_capacity(n);
        let mut users = Vec::with_capacity(n);
        let mut quantities = Vec::with_capacity(n);
        let mut outcomes = Vec::with_capacity(n);
        let mut order_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        for d in &plan.decided {
            keys.push(d.key.as_str());
            users.push(d.user_id.as_str());
            quantities.push(d.quantity.get() as i32);
            outcomes.push(d.outcome.as_str());
            order_ids.push(d.order_id);
            seqs.push(d.seq as i64);
        }
        let remaining: i32 = sqlx::query_scalar(
            "SELECT dropline_apply_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(sku.as_str())
        .bind(epoch as i64)
        .bind(plan.applied_seq_before as i64)
        .bind(plan.applied_seq_after as i64)
        .bind(&keys)
        .bind(&users)
        .bind(&quantities)
        .bind(&outcomes)
        .bind(&order_ids)
        .bind(&seqs)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_db)?;
        Ok(AppliedBatch {
            // The CHECK constraint guarantees remaining >= 0.
            remaining: remaining.max(0) as u32,
        })
    }
}
