//! The gateway's one subscription to drop events (`dropline.drops.*`): an
//! admission change nudges the refresh; the other events are not used yet.
//!
//! Must not be relied on: events come at most once, and everything they
//! say is in the store, which the refresh reads every second anyway. They
//! only make the gateway learn sooner.

use std::sync::Arc;

use dropline_bus::DropEvents;
use dropline_core::wire::DropEvent;
use tokio::sync::Notify;

/// Nudges the refresh on each admission change, until the subscription ends.
pub async fn run(mut events: DropEvents, refresh: Arc<Notify>) {
    while let Some(event) = events.next().await {
        if let DropEvent::AdmissionChanged { .. } = event {
            refresh.notify_one();
        }
    }
    tracing::warn!(
        "drop events subscription ended; the gateway learns from the store each refresh"
    );
}
