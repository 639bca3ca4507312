//! One partition's ownership: claim it with a new fencing epoch, keep the
//! lease alive while working it, hand it back on shutdown or to a less
//! loaded instance, and try again after losing it.
//!
//! Must not pull, decide or commit (that is `work`) nor choose its pauses
//! (that is `attempts`): this module only runs claims and hand-backs and
//! says what happened.

use std::sync::Arc;
use std::time::Duration;

use dropline_core::Sku;
use dropline_store::PartitionClaim;
use tokio::sync::watch;

use crate::attempts::{Attempt, Attempts, Next};
use crate::context::Context;
use crate::meters::{lease_changed, LeaseChange, Owned};
use crate::work::{work, Exit};

/// Owns `sku`'s partition whenever it can, until `stop` turns true.
#[tracing::instrument(skip_all, fields(sku = %sku))]
pub(crate) async fn own_partition(ctx: Arc<Context>, sku: Sku, mut stop: watch::Receiver<bool>) {
    let mut attempts = Attempts::default();
    while !*stop.borrow() {
        let pause = if ctx.share.try_take() {
            match attempts.after(attempt(&ctx, &sku, &stop).await, &ctx.config) {
                Next::Stop => return,
                Next::RetryAfter(pause) => pause,
                Next::LetGoAndRetryAfter(pause) => {
                    tracing::warn!("the partition moved to another instance; letting it go");
                    pause
                }
            }
        } else {
            // At the fair share: leave this partition to another instance,
            // unless it is still free when we look again.
            Duration::from_millis(ctx.config.lease_ms / 2)
        };
        tokio::select! {
            _ = tokio::time::sleep(spread(pause)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// `pause`, shortened by a random part of up to half its length.
///
/// An instance's partition tasks start on the same discovery tick and
/// their pauses are equal, so without this they wake in the same
/// millisecond for good. Then the tasks of partitions another instance
/// holds, each taking a share slot for the few milliseconds of its refused
/// claim, fill the share at the very moment the tasks of the last free
/// partitions look, every time: measured with 1,000 drops and two
/// processors, a few drops stayed unowned for minutes in most runs.
fn spread(pause: Duration) -> Duration {
    use rand::Rng as _;
    pause.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Claims the partition with the share slot already taken and, if it is
/// ours, holds it until the work ends. The slot is given back unless the
/// partition is still ours to count.
async fn attempt(ctx: &Context, sku: &Sku, stop: &watch::Receiver<bool>) -> Attempt {
    let claim = ctx
        .store
        .claim_partition(sku, &ctx.config.instance_id, ctx.config.lease_ms)
        .await;
    match claim {
        Ok(Some(claim)) => hold(ctx, sku, claim, stop.clone()).await,
        // Someone else holds a live lease.
        Ok(None) => {
            ctx.share.give_back();
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
            Attempt::Worked(Exit::Yielded)
        }
        Ok(Exit::Stopped) => {
            hand_back(ctx, sku, epoch).await;
            tracing::info!(epoch, "partition handed back");
            Attempt::Worked(Exit::Stopped)
        }
        Ok(Exit::Halted) => {
            // Handed back so that another (newer) instance may take it.
            hand_back(ctx, sku, epoch).await;
            Attempt::Worked(Exit::Halted)
        }
        Ok(Exit::Fenced) => {
            tracing::warn!(epoch, "fenced: another instance owns the partition");
            Attempt::Worked(Exit::Fenced)
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
