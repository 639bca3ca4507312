//! Telling waiting gateways what was decided: each committed batch, and on
//! taking a partition the previous owner's last batch again; and what
//! happened to the drop as a whole (finally sold out, back in stock).
//!
//! At most once and best effort: must not fail a batch nor retry, since a
//! gateway that misses an announcement reads the store before it answers.

use dropline_core::wire::DropEvent;
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

/// Tells every gateway the drop is finally sold out, with the recorded
/// answers a repeated key must still get (read from the store: the ledger
/// does not remember every decision): they answer every other purchase
/// `sold_out` from then on without sending it to the line.
pub(crate) async fn announce_sell_out(ctx: &Context, sku: &Sku) {
    let answers = match ctx.store.answers_other_than_sold_out(sku).await {
        Ok(answers) => answers,
        // Gateways learn the sell-out from the store at their next refresh.
        Err(err) => return tracing::warn!(%err, "read the answers to announce a sell-out"),
    };
    for event in DropEvent::sold_out(sku, &answers) {
        publish_event(ctx, &event).await;
    }
    tracing::info!(answers = answers.len(), "announced the final sell-out");
}

/// Tells every gateway that units came back: purchases go to the line again.
pub(crate) async fn announce_in_stock(ctx: &Context, sku: &Sku) {
    publish_event(ctx, &DropEvent::InStock { sku: sku.clone() }).await;
}

async fn publish_event(ctx: &Context, event: &DropEvent) {
    if let Err(err) = ctx.bus.publish_drop_event(event).await {
        // Gateways learn the same from the store at their next refresh.
        tracing::warn!(%err, "announce a drop event");
    }
}
