//! JetStream and core NATS: everything dropline sends or receives on the bus.
//!
//! Owns stream and consumer provisioning, publishing intents (accepted once
//! the PubAck is back), pulling an SKU's intents in batches, and the decision
//! fan-out from processors to gateways. Must not decide or store anything:
//! the bus carries, `dropline-core` decides, `dropline-store` records.

mod connect;
mod decisions;
mod intents;
mod provision;

pub use connect::{Bus, BusOptions, DEFAULT_NATS_URL};
pub use decisions::DecisionFeed;
pub use dropline_core::wire::{IntentMessage, PulledIntent};
pub use intents::{Continuity, IntentBatch, IntentPuller, PendingAck, PublishError};
pub use provision::{ConsumerSettings, StreamSettings};

/// Any bus failure that is not a refusal the caller must branch on.
pub type BusError = async_nats::Error;
