//! Telling waiting gateways what was decided: each committed batch, and on
//! taking a partition the previous owner's last batch again; and what
//! happened to the drop as a whole (finally sold out, back in stock).
//!
//! At most once and best effort: must not fail a batch nor retry, since a
//! gateway that misses an announcement reads the store before it answers.

use dropline_bus::Bus;
use dropline_core::wire::DropEvent;
use dropline_core::{BatchPlan, Decision, Sku};
use dropline_store::Store;
use tokio::sync::mpsc;
use tracing::Instrument as _;

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

/// What happened to the drop as a whole, announced in the order the
/// partition's batches made it happen but off the batch loop: announcing a
/// sell-out reads the drop's answers from the store, and the next batch
/// need not wait for that read (on a database 200 ms slow per transaction,
/// `just compare`'s slow-db, the tail of the burst waited 0.2 s for it).
/// One task per partition owner, so a sell-out and a later return of
/// units are never announced the other way round; it ends once the owner's
/// work ends and what it was handed is announced.
pub(crate) struct DropAnnouncer {
    changes: mpsc::UnboundedSender<DropChange>,
}

#[derive(Debug, Clone, Copy)]
enum DropChange {
    SoldOut,
    InStock,
}

impl DropAnnouncer {
    pub fn start(ctx: &Context, sku: &Sku) -> Self {
        let (changes, mut pending) = mpsc::unbounded_channel();
        let (store, bus, sku) = (ctx.store.clone(), ctx.bus.clone(), sku.clone());
        tokio::spawn(
            async move {
                while let Some(change) = pending.recv().await {
                    match change {
                        DropChange::SoldOut => announce_sell_out(&store, &bus, &sku).await,
                        DropChange::InStock => {
                            publish_event(&bus, &DropEvent::InStock { sku: sku.clone() }).await;
                        }
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Self { changes }
    }

    /// The drop is finally sold out: gateways answer `sold_out` themselves.
    pub fn sold_out(&self) {
        // The task ends only when this sender is dropped.
        let _ = self.changes.send(DropChange::SoldOut);
    }

    /// Units came back: purchases go to the line again.
    pub fn in_stock(&self) {
        let _ = self.changes.send(DropChange::InStock);
    }
}

/// Tells every gateway the drop is finally sold out, with the recorded
/// answers a repeated key must still get (read from the store: the ledger
/// does not remember every decision): they answer every other purchase
/// `sold_out` from then on without sending it to the line.
async fn announce_sell_out(store: &Store, bus: &Bus, sku: &Sku) {
    let answers = match store.answers_other_than_sold_out(sku).await {
        Ok(answers) => answers,
        // Gateways learn the sell-out from the store at their next refresh.
        Err(err) => return tracing::warn!(%err, "read the answers to announce a sell-out"),
    };
    for event in DropEvent::sold_out(sku, &answers) {
        publish_event(bus, &event).await;
    }
    tracing::info!(answers = answers.len(), "announced the final sell-out");
}

async fn publish_event(bus: &Bus, event: &DropEvent) {
    if let Err(err) = bus.publish_drop_event(event).await {
        // Gateways learn the same from the store at their next refresh.
        tracing::warn!(%err, "announce a drop event");
    }
}
