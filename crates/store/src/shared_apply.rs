//! The shared commit: the ready batches of several SKUs in one transaction,
//! each still fenced on its own.

use dropline_core::{BatchPlan, Sku};
use sqlx::PgExecutor;

use crate::apply::{ControlColumns, DecidedColumns};
use crate::error::corrupt;
use crate::{AppliedBatch, Store, StoreError};

/// One partition's batch in a shared commit: `plan`, decided by the owner
/// of `sku` at `epoch`.
#[derive(Debug, Clone, Copy)]
pub struct PartitionBatch<'a> {
    pub sku: &'a Sku,
    pub epoch: u64,
    pub plan: &'a BatchPlan,
}

impl Store {
    /// Records every batch whose caller still holds its partition (its epoch
    /// and applied sequence), all in one transaction, and says what became
    /// of each, in the order given: applied, or refused with nothing of it
    /// written ([`StoreError::Fenced`], [`StoreError::StaleLedger`]) while
    /// the others are applied.
    ///
    /// The outer error means nothing at all was written (or, when the
    /// connection was lost at the commit, that nobody knows: the applied
    /// sequences tell). It is also how a key decided before is refused: the
    /// unique violation aborts the whole transaction, and only applying the
    /// batches one by one says whose key it was.
    #[tracing::instrument(skip_all, fields(batches = batches.len()))]
    pub async fn apply_batches(
        &self,
        batches: &[PartitionBatch<'_>],
    ) -> Result<Vec<Result<AppliedBatch, StoreError>>, StoreError> {
        apply_batches_on(&self.pool, batches).await
    }
}

/// [`Store::apply_batches`] on `executor`: the pool, or a connection kept
/// for committing (see [`crate::BatchConnection`]).
pub(crate) async fn apply_batches_on<'e>(
    executor: impl PgExecutor<'e>,
    batches: &[PartitionBatch<'_>],
) -> Result<Vec<Result<AppliedBatch, StoreError>>, StoreError> {
    let columns = SharedColumns::of(batches);
    let rows: Vec<(i32, String, Option<i32>)> = sqlx::query_as(
        "SELECT batch, outcome, remaining FROM dropline_apply_batches(\
                $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&columns.skus)
    .bind(&columns.epochs)
    .bind(&columns.seqs_before)
    .bind(&columns.seqs_after)
    .bind(&columns.closed_seqs)
    .bind(&columns.decided_batches)
    .bind(&columns.decided.keys)
    .bind(&columns.decided.users)
    .bind(&columns.decided.quantities)
    .bind(&columns.decided.outcomes)
    .bind(&columns.decided.order_ids)
    .bind(&columns.decided.seqs)
    .bind(&columns.control_batches)
    .bind(&columns.controls.ids)
    .bind(&columns.controls.kinds)
    .bind(&columns.controls.units)
    .bind(&columns.controls.operators)
    .bind(&columns.controls.seqs)
    .fetch_all(executor)
    .await
    .map_err(StoreError::from_db)?;
    if rows.len() != batches.len() {
        return Err(corrupt(format!(
            "a shared commit of {} batches answered for {}",
            batches.len(),
            rows.len()
        )));
    }
    rows.into_iter().map(|row| Ok(outcome_of(row))).collect()
}

fn outcome_of(
    (batch, outcome, remaining): (i32, String, Option<i32>),
) -> Result<AppliedBatch, StoreError> {
    match (outcome.as_str(), remaining) {
        // The CHECK constraint guarantees remaining >= 0.
        ("applied", Some(remaining)) => Ok(AppliedBatch {
            remaining: remaining.max(0) as u32,
        }),
        ("fenced", _) => Err(StoreError::Fenced),
        ("stale", _) => Err(StoreError::StaleLedger),
        _ => Err(corrupt(format!(
            "shared commit: batch {batch} came back {outcome} with {remaining:?} left"
        ))),
    }
}

/// The batches, column by column: one element per batch, then their
/// decisions and operator actions, each naming its batch by its place in
/// the batch columns (from 1, as Postgres counts).
#[derive(Default)]
struct SharedColumns<'a> {
    skus: Vec<&'a str>,
    epochs: Vec<i64>,
    seqs_before: Vec<i64>,
    seqs_after: Vec<i64>,
    closed_seqs: Vec<Option<i64>>,
    decided_batches: Vec<i32>,
    decided: DecidedColumns<'a>,
    control_batches: Vec<i32>,
    controls: ControlColumns<'a>,
}

impl<'a> SharedColumns<'a> {
    fn of(batches: &[PartitionBatch<'a>]) -> Self {
        let mut columns = Self::default();
        for (place, batch) in (1i32..).zip(batches) {
            let plan = batch.plan;
            columns.skus.push(batch.sku.as_str());
            columns.epochs.push(batch.epoch as i64);
            columns.seqs_before.push(plan.applied_seq_before as i64);
            columns.seqs_after.push(plan.applied_seq_after as i64);
            columns
                .closed_seqs
                .push(plan.closed_seq.map(|seq| seq as i64));
            columns
                .decided_batches
                .extend(std::iter::repeat_n(place, plan.decided.len()));
            columns.decided.extend(plan);
            columns
                .control_batches
                .extend(std::iter::repeat_n(place, plan.controls.len()));
            columns.controls.extend(plan);
        }
        columns
    }
}
