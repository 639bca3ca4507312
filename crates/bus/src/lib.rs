//! JetStream and core NATS: everything dropline sends or receives on the bus.
//!
//! Owns stream and consumer provisioning, publishing intents (accepted once
//! the PubAck is back), pulling an SKU's intents in batches, and the decision
//! fan-out from processors to gateways. Must not decide or store anything:
//! the bus carries, `dropline-core` decides, `dropline-store` records; and
//! must not define the wire format, which `dropline_core::wire` owns.

mod connect;
mod decisions;
mod provision;
mod publish;
mod pull;
mod read;
mod version;

pub use connect::{Bus, BusOptions, NatsAccess, DEFAULT_NATS_URL};
pub use decisions::{DecisionFeed, DropEvents};
// The intent message codec lives with the wire types in the core;
// re-exported because every sender and reader of intents goes through here.
pub use dropline_core::wire::{IntentMessage, PulledEntry};
pub use provision::{ConsumerSettings, StreamSettings};
pub use publish::{PendingAck, PublishError};
pub use pull::{Continuity, IntentBatch, IntentPuller, PullInterrupted};
pub use version::{NotAVersion, ServerVersion};

/// Any bus failure that is not a refusal the caller must branch on.
pub type BusError = async_nats::Error;
