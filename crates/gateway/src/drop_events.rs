//! The gateway's one subscription to drop events (`dropline.drops.*`):
//! an admission change nudges the refresh, a sell-out's parts and an
//! in-stock go to the sell-outs and to the SKU's publisher lane.
//!
//! Must not be relied on: events come at most once, and everything they
//! say is in the store, which the refresh reads every second anyway. They
//! only make the gateway learn sooner.

use std::sync::Arc;
use std::time::Instant;

use dropline_bus::DropEvents;
use dropline_core::wire::DropEvent;
use tokio::sync::Notify;

use crate::publisher::Publisher;
use crate::sell_out::{SellOuts, SoldOutPart};

/// Hands each drop event to what it concerns, until the subscription ends.
pub async fn run(
    mut events: DropEvents,
    sell_outs: Arc<SellOuts>,
    publisher: Arc<Publisher>,
    refresh: Arc<Notify>,
) {
    while let Some(event) = events.next().await {
        let at = Instant::now();
        match event {
            DropEvent::AdmissionChanged { .. } => refresh.notify_one(),
            DropEvent::SoldOut {
                sku,
                part,
                parts,
                answers,
                every_decision,
            } => {
                let part = SoldOutPart {
                    part,
                    parts,
                    answers,
                    every_decision,
                };
                sell_outs.part(&sku, part, at);
                publisher.sold_out(&sku);
            }
            DropEvent::InStock { sku } => {
                sell_outs.lift(&sku, at);
                publisher.restocked(&sku);
            }
        }
    }
    tracing::warn!(
        "drop events subscription ended; the gateway learns from the store each refresh"
    );
}
