//! Finds live drops and keeps one partition task running for each, and
//! sets this instance's fair share from the processors alive.
//!
//! Must not claim partitions itself: each partition task does, so that one
//! slow claim never holds up the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dropline_bus::Bus;
use dropline_core::Sku;
use dropline_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::lease::renew_all;
use crate::meters;
use crate::partition::own_partition;
use crate::share::Share;
use crate::ProcessorConfig;

/// Runs until `shutdown` completes, then stops every partition loop and
/// hands its partition back so another instance can take it at once.
pub async fn run(
    store: Store,
    bus: Bus,
    config: ProcessorConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Context {
        store,
        bus,
        config,
        share: Share::new(),
        leases: Arc::default(),
    });
    let renewer = renew_all(
        ctx.leases.clone(),
        ctx.store.clone(),
        ctx.config.instance_id.clone(),
        ctx.config.lease_ms,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut partitions: HashMap<Sku, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.config.discovery_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    meters::register();
    tracing::info!(instance = %ctx.config.instance_id, "processor started");
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        partitions.retain(|_, task| !task.is_finished());
        let live = match ctx.store.live_skus(ctx.config.closed_linger_s).await {
            Ok(live) => live,
            Err(err) => {
                tracing::warn!(%err, "list live drops");
                continue;
            }
        };
        meters::live_drops(live.len());
        // A lease's length without a heartbeat and an instance counts as gone.
        match ctx
            .store
            .processor_heartbeat(&ctx.config.instance_id, ctx.config.lease_ms)
            .await
        {
            Ok(instances) => ctx.share.set_fair(live.len(), instances),
            Err(err) => tracing::warn!(%err, "processor heartbeat"),
        }
        for sku in live {
            partitions
                .entry(sku.clone())
                .or_insert_with(|| tokio::spawn(own_partition(ctx.clone(), sku, stop_rx.clone())));
        }
    }

    tracing::info!(partitions = partitions.len(), "processor stopping");
    let _ = stop_tx.send(true);
    for (_, task) in partitions {
        let _ = task.await;
    }
    renewer.abort();
    if let Err(err) = ctx.store.processor_leaving(&ctx.config.instance_id).await {
        tracing::warn!(%err, "leave the processor list");
    }
    Ok(())
}
