//! One claimed partition's ownership: keep the lease alive while working
//! it, hand it back on shutdown or to a less loaded instance, park it when
//! halted, and claim it again after a failure.
//!
//! Must not pull, decide or commit (that is `work`) nor choose its pauses
//! (that is `attempts`): this module only runs claims and hand-backs and
//! says what happened.

use std::sync::Arc;

use dropline_core::Sku;
use dropline_store::PartitionClaim;
use tokio::sync::watch;

use crate::attempts::{Attempt, Attempts, Next};
use crate::context::Context;
use crate::meters::{lease_changed, LeaseChange, Owned};
use crate::work::{work, Exit};

/// Works `sku`'s partition, claimed by the supervisor as `claim` (its
/// share slot taken), until the work ends; after a failure it claims the
/// partition again itself, backing off, while it is still free or ours.
#[tracing::instrument(skip_all, fields(sku = %sku))]
pub(crate) async fn own_partition(
    ctx: Arc<Context>,
    sku: Sku,
    claim: PartitionClaim,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempts = Attempts::default();
    let mut attempt = hold(&ctx, &sku, claim, stop.clone()).await;
    loop {
        let pause = match attempts.after(attempt, &ctx.config) {
            Next::LetGo => return,
            Next::RetryAfter(pause) => pause,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() || !ctx.share.try_take() {
            // At the fair share: the partition is left to whoever has room.
            return;
        }
        attempt = reclaim(&ctx, &sku, &stop).await;
    }
}

/// Claims the partition again with the share slot already taken and, if
/// it is ours, holds it until the work ends. The slot is given back unless
/// the partition is still ours to count.
async fn reclaim(ctx: &Context, sku: &Sku, stop: &watch::Receiver<bool>) -> Attempt {
    let claim = ctx
        .store
        .claim_partition(sku, &ctx.config.instance_id, ctx.config.lease_ms)
        .await;
    match claim {
        Ok(Some(claim)) => hold(ctx, sku, claim, stop.clone()).await,
        // Someone else holds a live lease.
        Ok(None) => {
            ctx.share.give_back();
            tracing::warn!("the partition moved to another instance; letting it go");
            Attempt::HeldElsewhere
        }
        Err(err) => {
            ctx.share.give_back();
            tracing::warn!(%err, "claim partition");
            Attempt::ClaimFailed
        }
    }
}

/// Works a claimed partition with its lease kept alive, then hands it back
/// if the work ended by a stop or a yield.
async fn hold(
    ctx: &Context,
    sku: &Sku,
    claim: PartitionClaim,
    stop: watch::Receiver<bool>,
) -> Attempt {
    let epoch = claim.epoch;
    tracing::info!(epoch, applied_seq = claim.applied_seq, "partition claimed");
    // Counted as owned until this function returns, whichever way.
    let _owned = Owned::claimed();
    let (lost, lease) = ctx.leases.hold(sku, epoch);
    let outcome = work(ctx, sku, epoch, stop, lost).await;
    drop(lease);
    if !matches!(outcome, Ok(Exit::Yielded)) {
        // `should_yield` already gave the slot back.
        ctx.share.give_back();
    }
    lease_changed(match outcome {
        Ok(Exit::Yielded | Exit::Stopped | Exit::Halted) => LeaseChange::HandedBack,
        Ok(Exit::Fenced) => LeaseChange::Lost,
        Err(_) => LeaseChange::Failed,
    });
    match outcome {
        Ok(Exit::Yielded) => {
            hand_back(ctx, sku, epoch).await;
            tracing::info!(epoch, "partition handed to a less loaded instance");
            Attempt::Worked
        }
        Ok(Exit::Stopped) => {
            hand_back(ctx, sku, epoch).await;
            tracing::info!(epoch, "partition handed back");
            Attempt::Worked
        }
        Ok(Exit::Halted) => {
            // Not soon, and then by any instance: only a newer build helps.
            park(ctx, sku, epoch).await;
            Attempt::Worked
        }
        Ok(Exit::Fenced) => {
            tracing::warn!(epoch, "fenced: another instance owns the partition");
            Attempt::Worked
        }
        Err(err) => {
            tracing::warn!(
                epoch,
                err = format!("{err:#}"),
                "partition loop failed; reclaiming"
            );
            Attempt::WorkFailed
        }
    }
}

/// Releases the lease at `epoch` so another instance can claim the
/// partition at once instead of waiting for the lease to run out. A failed
/// release only costs that wait.
async fn hand_back(ctx: &Context, sku: &Sku, epoch: u64) {
    if let Err(err) = ctx
        .store
        .release_partition(sku, &ctx.config.instance_id, epoch)
        .await
    {
        tracing::warn!(%err, "hand partition back");
    }
}

/// Keeps a halted partition from every instance for `halted_retry_ms`, so
/// that it is not claimed and halted again at once; after that any
/// instance (a newer one, after an upgrade) may try it. One last renewal,
/// that long, that nobody renews again.
async fn park(ctx: &Context, sku: &Sku, epoch: u64) {
    let parked = ctx
        .store
        .renew_partition(
            sku,
            &ctx.config.instance_id,
            epoch,
            ctx.config.halted_retry_ms,
        )
        .await;
    if let Err(err) = parked {
        tracing::warn!(%err, "park the halted partition");
    }
}
