//! What travels on the bus, shared by the gateway (writer of intents, reader
//! of decisions) and the processor (the other way round).

use serde::{Deserialize, Serialize};

use crate::domain::{IdempotencyKey, Quantity, Sku, UserId};
use crate::ledger::Decision;

/// The body of an intent message on `dropline.intents.<sku>`. The SKU is the
/// subject's last token and the stream sequence is assigned by JetStream, so
/// neither is repeated here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentPayload {
    #[serde(rename = "k")]
    pub key: IdempotencyKey,
    #[serde(rename = "u")]
    pub user_id: UserId,
    #[serde(rename = "q")]
    pub quantity: Quantity,
}

/// A message on `dropline.decisions.<sku>`, as read: decisions of a
/// committed batch, including recorded ones re-announced for a key that came
/// again, so that whichever gateway waits for a key hears about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionBatch {
    pub sku: Sku,
    pub decisions: Vec<Decision>,
}

/// The same message, as written: borrowed, so a batch is announced without
/// copying its decisions.
#[derive(Debug, Serialize)]
pub struct DecisionBatchRef<'a> {
    pub sku: &'a Sku,
    pub decisions: &'a [Decision],
}

/// At most this many decisions per message: with the longest keys and user
/// ids (about 0.5 KiB a decision) a message stays well below NATS's default
/// 1 MiB payload limit, whatever the processor's batch length.
pub const DECISIONS_PER_MESSAGE: usize = 500;
