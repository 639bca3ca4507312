//! Telling waiting gateways what was decided: each committed batch, and on
//! taking a partition the previous owner's last batch again.
//!
//! At most once and best effort: must not fail a batch nor retry, since a
//! gateway that misses an announcement reads the store before it answers.

use dropline_core::{BatchPlan, Decision, Sku};

use crate::context::Context;

/// Announces the previous owner's last batch again: it may have died
/// between committing and announcing, leaving buyers waiting out their wait.
pub(crate) async fn reannounce_last_batch(ctx: &Context, sku: &Sku) {
    match ctx.store.last_batch(sku, ctx.config.batch_len_max).await {
        Ok(decisions) => publish_decisions(ctx, sku, &decisions).await,
        Err(err) => tracing::warn!(%err, "read the last batch to announce it again"),
    }
}

/// Tells waiting gateways about every decision of the batch, new and repeated.
pub(crate) async fn announce(ctx: &Context, sku: &Sku, plan: &BatchPlan) {
    publish_decisions(ctx, sku, &plan.decided).await;
    publish_decisions(ctx, sku, &plan.repeated).await;
}

async fn publish_decisions(ctx: &Context, sku: &Sku, decisions: &[Decision]) {
    if let Err(err) = ctx.bus.publish_decisions(sku, decisions).await {
        // Gateways fall back to reading the store.
        tracing::warn!(%err, "announce decisions");
    }
}
