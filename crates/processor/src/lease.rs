//! Keeps a claimed partition's lease alive in the background and says when
//! it is lost.

use std::sync::Arc;
use std::time::Duration;

use dropline_core::Sku;
use tokio::sync::watch;

use crate::partition::Context;

/// Renews every third of the lease. The returned receiver turns `true` when
/// the partition has moved to another epoch (another instance took it).
pub(crate) fn keep_alive(
    ctx: Arc<Context>,
    sku: Sku,
    epoch: u64,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (lost_tx, lost_rx) = watch::channel(false);
    let every = Duration::from_millis((ctx.config.lease_ms / 3).max(1));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match ctx
                .store
                .renew_partition(&sku, &ctx.config.instance_id, epoch, ctx.config.lease_ms)
                .await
            {
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
