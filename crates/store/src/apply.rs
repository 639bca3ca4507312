//! The batch transaction: one statement, one round trip, one commit.

use dropline_core::{Action, BatchPlan, Sku};
use sqlx::PgExecutor;
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
    #[tracing::instrument(skip_all, fields(sku = %sku, epoch, decided = plan.decided.len(), controls = plan.controls.len()))]
    pub async fn apply_batch(
        &self,
        sku: &Sku,
        epoch: u64,
        plan: &BatchPlan,
    ) -> Result<AppliedBatch, StoreError> {
        apply_batch_on(&self.pool, sku, epoch, plan).await
    }
}

/// [`Store::apply_batch`] on `executor`: the pool, or a connection kept for
/// committing (see [`crate::BatchConnection`]).
pub(crate) async fn apply_batch_on<'e>(
    executor: impl PgExecutor<'e>,
    sku: &Sku,
    epoch: u64,
    plan: &BatchPlan,
) -> Result<AppliedBatch, StoreError> {
    let decided = DecidedColumns::of(plan);
    let controls = ControlColumns::of(plan);
    let remaining: i32 = sqlx::query_scalar(
        "SELECT dropline_apply_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                                         $11, $12, $13, $14, $15, $16)",
    )
    .bind(sku.as_str())
    .bind(epoch as i64)
    .bind(plan.applied_seq_before as i64)
    .bind(plan.applied_seq_after as i64)
    .bind(&decided.keys)
    .bind(&decided.users)
    .bind(&decided.quantities)
    .bind(&decided.outcomes)
    .bind(&decided.order_ids)
    .bind(&decided.seqs)
    .bind(&controls.ids)
    .bind(&controls.kinds)
    .bind(&controls.units)
    .bind(&controls.operators)
    .bind(&controls.seqs)
    .bind(plan.closed_seq.map(|seq| seq as i64))
    .fetch_one(executor)
    .await
    .map_err(StoreError::from_db)?;
    Ok(AppliedBatch {
        // The CHECK constraint guarantees remaining >= 0.
        remaining: remaining.max(0) as u32,
    })
}

/// Plans' decisions, column by column, as the batch statements take them.
#[derive(Default)]
pub(crate) struct DecidedColumns<'a> {
    pub keys: Vec<&'a str>,
    pub users: Vec<&'a str>,
    pub quantities: Vec<i32>,
    pub outcomes: Vec<&'static str>,
    pub order_ids: Vec<Option<Uuid>>,
    pub seqs: Vec<i64>,
}

impl<'a> DecidedColumns<'a> {
    fn of(plan: &'a BatchPlan) -> Self {
        let mut columns = Self::default();
        columns.extend(plan);
        columns
    }

    /// Appends the plan's decisions. Room is made first: a hot SKU's
    /// batch is 5,000 rows, and growing six columns by doubling would copy
    /// each a dozen times per batch.
    pub(crate) fn extend(&mut self, plan: &'a BatchPlan) {
        let n = plan.decided.len();
        self.keys.reserve(n);
        self.users.reserve(n);
        self.quantities.reserve(n);
        self.outcomes.reserve(n);
        self.order_ids.reserve(n);
        self.seqs.reserve(n);
        for d in &plan.decided {
            self.keys.push(d.key.as_str());
            self.users.push(d.user_id.as_str());
            self.quantities.push(d.quantity.get() as i32);
            self.outcomes.push(d.outcome.as_str());
            self.order_ids.push(d.order_id);
            self.seqs.push(d.seq as i64);
        }
    }
}

/// Plans' operator actions, column by column.
#[derive(Default)]
pub(crate) struct ControlColumns<'a> {
    pub ids: Vec<&'a str>,
    pub kinds: Vec<&'static str>,
    pub units: Vec<Option<i32>>,
    pub operators: Vec<&'a str>,
    pub seqs: Vec<i64>,
}

impl<'a> ControlColumns<'a> {
    fn of(plan: &'a BatchPlan) -> Self {
        let mut columns = Self::default();
        columns.extend(plan);
        columns
    }

    /// Appends the plan's operator actions.
    pub(crate) fn extend(&mut self, plan: &'a BatchPlan) {
        for c in &plan.controls {
            self.ids.push(c.op.as_str());
            self.kinds.push(c.action.kind());
            self.units.push(match c.action {
                Action::Close => None,
                Action::Restock(units) => Some(units.get() as i32),
            });
            self.operators.push(c.by.as_str());
            self.seqs.push(c.seq as i64);
        }
    }
}
