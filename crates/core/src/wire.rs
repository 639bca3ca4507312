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

/// One message on `dropline.decisions.<sku>` per committed batch: every
/// decision of the batch, including recorded ones re-announced for a key that
/// came again, so that whichever gateway waits for a key hears about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionBatch {
    pub sku: Sku,
    pub decisions: Vec<Decision>,
}
