//! Keeps a claimed partition's lease alive in the background and says when
//! it is lost.
//!
//! Must not decide who works a partition beyond that: the lease only keeps
//! instances from getting in each other's way; correctness rests on the
//! fencing epoch every commit checks.

use std::time::Duration;

use dropline_core::Sku;
use dropline_store::Store;
use tokio::sync::watch;

/// Renews `owner`'s lease on `sku` at `epoch` every third of `lease_ms`. The
/// returned receiver turns `true` when the partition has moved to another
/// epoch (another instance took it).
pub(crate) fn keep_alive(
    store: Store,
    sku: Sku,
    epoch: u64,
    owner: String,
    lease_ms: u64,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (lost_tx, lost_rx) = watch::channel(false);
    let every = Duration::from_millis((lease_ms / 3).max(1));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match store.renew_partition(&sku, &owner, epoch, lease_ms).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(%sku, epoch, "lease lost: the partition moved on");
                    let _ = lost_tx.send(true);
                    return;
                }
                // A failed renewal is not a lost lease; the epoch check in
                // every commit is what keeps a late owner out.
                Err(err) => tracing::warn!(%sku, epoch, %err, "renew lease"),
            }
        }
    });
    (lost_rx, task)
}
