//! The pure heart of dropline.
//!
//! Owns the domain types (parsed once at the edge, trusted everywhere after),
//! the per-SKU [`Ledger`] that decides a SKU's line (purchases, closes and
//! restocks) in stream order, the wire
//! formats shared by gateway and processor, and the NATS subject names.
//!
//! Must not do I/O: no async runtime, database or broker client. A batch of
//! intents goes in, a [`BatchPlan`] of decisions comes out; the processor turns
//! the plan into one transaction, then acks, then replies.

pub mod domain;
pub mod ledger;
pub mod names;
mod recent;
pub mod redact;
pub mod wire;

pub use domain::{
    DropStatus, IdempotencyKey, InvalidInput, OperationId, OperatorId, Outcome, PerUserLimit,
    Quantity, Sku, Stock, UserId,
};
pub use ledger::{Action, BatchPlan, Control, Decision, Entry, Intent, Ledger, LedgerState};
pub use recent::REMEMBERED_PER_GENERATION;
pub use redact::redact;
