//! Decision fan-out: the processor broadcasts each batch's decisions on its
//! SKU's decision subject; every gateway holds ONE subscription to all of them
//! and hands each decision to whichever request waits for it.
//!
//! Core NATS, at most once: a lost decision message only delays an answer,
//! since a waiting gateway falls back to reading the store. Must therefore
//! never be what correctness rests on: nothing here is retried or persisted.

use dropline_core::names::{
    decision_subject, drop_events_subject, DECISIONS_SUBJECTS, DROP_EVENTS_SUBJECTS,
};
use dropline_core::wire::{
    DecisionBatch, DecisionBatchRef, DropEvent, LineAfter, DECISIONS_PER_MESSAGE,
};
use dropline_core::{Decision, Sku};
use futures::StreamExt;

use crate::{Bus, BusError};

impl Bus {
    /// Broadcasts decisions of `sku` (fire and forget), in messages of at
    /// most `DECISIONS_PER_MESSAGE`, each telling where the `line` stands
    /// after them when known.
    pub async fn publish_decisions(
        &self,
        sku: &Sku,
        decisions: &[Decision],
        line: Option<LineAfter>,
    ) -> Result<(), BusError> {
        for chunk in decisions.chunks(DECISIONS_PER_MESSAGE) {
            let payload = serde_json::to_vec(&DecisionBatchRef {
                sku,
                decisions: chunk,
                line,
            })?;
            self.client
                .publish(decision_subject(sku), payload.into())
                .await?;
        }
        Ok(())
    }

    /// Broadcasts an event about a drop as a whole (fire and forget).
    pub async fn publish_drop_event(&self, event: &DropEvent) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event)?;
        self.client
            .publish(drop_events_subject(event.sku()), payload.into())
            .await?;
        Ok(())
    }

    /// Subscribes to the events of every drop.
    pub async fn drop_events(&self) -> Result<DropEvents, BusError> {
        Ok(DropEvents {
            subscriber: self.client.subscribe(DROP_EVENTS_SUBJECTS).await?,
        })
    }

    /// Subscribes to the decisions of every SKU.
    pub async fn decision_feed(&self) -> Result<DecisionFeed, BusError> {
        Ok(DecisionFeed {
            subscriber: self.client.subscribe(DECISIONS_SUBJECTS).await?,
        })
    }
}

/// The one decision subscription of a gateway.
pub struct DecisionFeed {
    subscriber: async_nats::Subscriber,
}

impl DecisionFeed {
    /// The next batch of decisions; `None` once the subscription ended.
    /// Messages that do not parse are logged and skipped.
    pub async fn next(&mut self) -> Option<DecisionBatch> {
        loop {
            let message = self.subscriber.next().await?;
            match serde_json::from_slice(&message.payload) {
                Ok(batch) => return Some(batch),
                Err(err) => {
                    tracing::warn!(subject = %message.subject, %err, "skip malformed decision batch")
                }
            }
        }
    }
}

/// A gateway's subscription to drop-level events.
pub struct DropEvents {
    subscriber: async_nats::Subscriber,
}

impl DropEvents {
    /// The next event; `None` once the subscription ended. Messages that do
    /// not parse (a newer dropline's events) are logged and skipped: every
    /// event is also in the store, read at the next refresh.
    pub async fn next(&mut self) -> Option<DropEvent> {
        loop {
            let message = self.subscriber.next().await?;
            match serde_json::from_slice(&message.payload) {
                Ok(event) => return Some(event),
                Err(err) => {
                    tracing::warn!(subject = %message.subject, %err, "skip an unknown drop event")
                }
            }
        }
    }
}
