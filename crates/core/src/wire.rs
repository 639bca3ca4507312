//! What travels on the bus, shared by the gateway (writer of intents, reader
//! of decisions) and the processor (the other way round): the message types,
//! their limits, the arithmetic of places in line, and (in `intent_codec`)
//! how a message of intents is written and read.
//!
//! Must not touch the bus itself: bytes in, values out, so the format can be
//! tested without a broker and every reader of the stream decodes it alike.

mod intent_codec;

pub use intent_codec::{parse_intent_message, IntentMessage, PulledIntent};

use serde::{Deserialize, Serialize};

use crate::domain::{IdempotencyKey, Quantity, Sku, UserId};
use crate::ledger::Decision;

/// One intent in a message on `dropline.intents.<sku>`. The SKU is the
/// subject's last token and the place in line comes from the stream sequence
/// (see [`intent_seq`]), so neither is repeated here.
///
/// A message is either one intent (a JSON object) or several (a JSON array):
/// a gateway publishes the purchases that arrive together as one message, so
/// the broker stores, acks and delivers once for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentPayload {
    #[serde(rename = "k")]
    pub key: IdempotencyKey,
    #[serde(rename = "u")]
    pub user_id: UserId,
    #[serde(rename = "q")]
    pub quantity: Quantity,
}

/// Most intents one message carries; a message's slots are `0..` this.
pub const INTENTS_PER_MESSAGE: usize = 1_000;

/// A message stops taking intents past this size: with the longest keys
/// and user ids (under 1 KiB an intent, escapes included) it stays well below
/// [`MESSAGE_BYTES_MAX`].
pub const MESSAGE_BYTES_SOFT_MAX: usize = 512 * 1024;

/// The largest intent message the stream takes: NATS's default payload limit.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// Places in line reserved per stream message: room for
/// [`INTENTS_PER_MESSAGE`], a power of two so the arithmetic stays obvious.
pub const SLOTS_PER_MESSAGE: u64 = 1_024;

/// An intent's place in line, its `seq`: the sequence of the stream message
/// that carries it, then its slot in that message. Unique per SKU and
/// increasing in stream order; a message of one intent is at slot 0.
pub fn intent_seq(message_seq: u64, slot: usize) -> u64 {
    debug_assert!(slot < INTENTS_PER_MESSAGE, "slot {slot} beyond a message");
    message_seq * SLOTS_PER_MESSAGE + slot as u64
}

/// The stream sequence of the message carrying the intent at `seq`.
pub fn message_seq(seq: u64) -> u64 {
    seq / SLOTS_PER_MESSAGE
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_in_line_follow_messages_then_slots() {
        assert_eq!(message_seq(intent_seq(7, 0)), 7);
        assert_eq!(message_seq(intent_seq(7, INTENTS_PER_MESSAGE - 1)), 7);
        assert!(intent_seq(7, INTENTS_PER_MESSAGE - 1) < intent_seq(8, 0));
        assert!(intent_seq(7, 0) < intent_seq(7, 1));
        // Nothing applied yet is before the first message's first slot.
        assert_eq!(message_seq(0), 0);
        assert!(0 < intent_seq(1, 0));
    }
}
