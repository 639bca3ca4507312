//! Committing one decided batch: decide it with the ledger, apply it in one
//! transaction, and keep retrying (reloading the ledger from the store each
//! time) until it is in, fenced out, or stopped.
//!
//! A key the ledger no longer remembers is refused by the store and its
//! recorded decision learned from it; the batch is then decided again.
//!
//! Must not ack or announce: a batch is acked and announced only after this
//! returns its committed plan. Must not trust the in-memory ledger after a
//! failed commit: only the store knows what was applied.

use std::sync::Arc;
use std::time::Duration;

use dropline_bus::IntentBatch;
use dropline_core::{BatchPlan, Entry, Ledger, Sku};
use dropline_store::StoreError;
use tokio::sync::watch;

use crate::context::Context;
use crate::meters;

/// Decides and commits one batch, retrying until it is in the store.
/// Returns the committed plan, or `None` when fenced.
pub(crate) async fn commit(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    ledger: &mut Ledger,
    entries: &[Entry],
    batch: &IntentBatch,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<BatchPlan>> {
    let mut failures = 0u32;
    loop {
        // Shared with the committer, which may commit it with other SKUs'.
        let plan = Arc::new(ledger.decide(entries));
        if plan.is_noop() {
            return Ok(Some(unshared(plan)));
        }
        let failure = match apply_keeping_messages(ctx, sku, epoch, &plan, batch).await {
            Ok(applied) => {
                ledger.apply(&plan);
                if applied.remaining != ledger.remaining() {
                    // Stock moved outside this partition's ledger: trust the store.
                    tracing::warn!(
                        store = applied.remaining,
                        ledger = ledger.remaining(),
                        "stock differs; reloading ledger"
                    );
                    *ledger = Ledger::new(ctx.store.load_ledger_state(sku).await?);
                }
                return Ok(Some(unshared(plan)));
            }
            Err(StoreError::Fenced) => return Ok(None),
            // Not a failure: the ledger had forgotten (or never loaded) a
            // key's decision; the store wrote nothing.
            Err(StoreError::KeyDecidedBefore) => {
                match learn_recorded(ctx, sku, ledger, &plan).await {
                    Ok(true) => continue,
                    Ok(false) => anyhow::anyhow!("the store refused a key it has no decision for"),
                    Err(err) => err.into(),
                }
            }
            Err(err) => err.into(),
        };
        failures += 1;
        meters::commit_failed();
        tracing::warn!(err = %failure, failures, decided = plan.decided.len(), "commit batch; reloading ledger and retrying");
        // Keep the messages from being redelivered while we retry.
        let _ = batch.in_progress().await;
        tokio::select! {
            _ = tokio::time::sleep(ctx.config.retry_backoff(failures)) => {}
            _ = stop.changed() => anyhow::bail!("stopped while retrying a commit"),
        }
        // The outcome of a failed commit may be unknown (connection
        // lost mid-commit): only the store can say what was applied.
        match ctx.store.load_ledger_state(sku).await {
            Ok(state) => *ledger = Ledger::new(state),
            Err(err) => tracing::warn!(%err, "reload ledger"),
        }
    }
}

/// The plan back from the committer, which has let go of it by the time
/// the answer came (a copy only if it still had not).
fn unshared(plan: Arc<BatchPlan>) -> BatchPlan {
    Arc::try_unwrap(plan).unwrap_or_else(|shared| (*shared).clone())
}

/// Teaches the ledger the recorded decisions of the plan's new keys; false
/// when the store has none of them (then something else refused the batch).
async fn learn_recorded(
    ctx: &Context,
    sku: &Sku,
    ledger: &mut Ledger,
    plan: &BatchPlan,
) -> Result<bool, StoreError> {
    let keys: Vec<&str> = plan.decided.iter().map(|d| d.key.as_str()).collect();
    let recorded = ctx.store.purchases_of_keys(sku, &keys).await?;
    tracing::debug!(
        keys = keys.len(),
        recorded = recorded.len(),
        "learned decisions the ledger had forgotten"
    );
    let learned = !recorded.is_empty();
    ledger.learn(recorded);
    Ok(learned)
}

/// Applies the plan; while a slow commit runs, tells JetStream the batch is
/// in progress so it is not redelivered after `ack_wait`.
async fn apply_keeping_messages(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    plan: &Arc<BatchPlan>,
    batch: &IntentBatch,
) -> Result<dropline_store::AppliedBatch, StoreError> {
    let apply = ctx.commits.apply(sku, epoch, plan.clone());
    tokio::pin!(apply);
    let every = Duration::from_millis((ctx.config.consumer.ack_wait_ms / 3).max(1));
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut apply => return result,
            _ = progress.tick() => {
                if let Err(err) = batch.in_progress().await {
                    tracing::warn!(%err, "signal batch in progress");
                }
            }
        }
    }
}
