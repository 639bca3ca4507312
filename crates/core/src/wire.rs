//! What travels on the bus, shared by the gateway (writer of intents, reader
//! of decisions) and the processor (the other way round): the message types,
//! their limits, the arithmetic of places in line, and (in `intent_codec`)
//! how a message of intents is written and read.
//!
//! Must not touch the bus itself: bytes in, values out, so the format can be
//! tested without a broker and every reader of the stream decodes it alike.

mod intent_codec;

pub use intent_codec::{
    control_message, parse_intent_message, parse_line_message, IntentMessage, PulledEntry,
};

use serde::{Deserialize, Serialize};

use crate::domain::{IdempotencyKey, OperationId, OperatorId, Quantity, Sku, Stock, UserId};
use crate::ledger::{Action, Decision};

/// One intent in a message on a SKU's purchases lane (see [`crate::names::Lane`]). The SKU is the
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

/// The kinds of operator entries, as written in their `t` field; a purchase
/// has none.
pub const CLOSE_KIND: &str = "close";
pub const RESTOCK_KIND: &str = "restock";

/// The version of the operator entries this build writes and reads. A
/// reader that meets a higher one stops the line (see [`PulledEntry::Unknown`]).
pub const CONTROL_VERSION: u8 = 1;

/// An operator's action in a message on a SKU's control lane: a close
/// or a restock, with the operation id that makes a retry count once and
/// who issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPayload {
    #[serde(rename = "t")]
    kind: String,
    #[serde(rename = "v")]
    version: u8,
    pub op: OperationId,
    pub by: OperatorId,
    /// Units a restock adds.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    units: Option<Stock>,
}

impl ControlPayload {
    pub fn new(op: &OperationId, by: &OperatorId, action: Action) -> Self {
        Self {
            kind: action.kind().to_string(),
            version: CONTROL_VERSION,
            op: op.clone(),
            by: by.clone(),
            units: match action {
                Action::Close => None,
                Action::Restock(units) => Some(units),
            },
        }
    }

    /// The action it carries, or why it carries none.
    pub fn action(&self) -> Result<Action, String> {
        match (self.kind.as_str(), self.units) {
            (CLOSE_KIND, None) => Ok(Action::Close),
            (RESTOCK_KIND, Some(units)) if units.get() > 0 => Ok(Action::Restock(units)),
            (kind, units) => Err(format!("a {kind} entry with units {units:?}")),
        }
    }
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
    /// Where the line stood once the batch committed; absent from
    /// re-announced decisions, and from processors older than the field.
    #[serde(default)]
    pub line: Option<LineAfter>,
}

/// The same message, as written: borrowed, so a batch is announced without
/// copying its decisions.
#[derive(Debug, Serialize)]
pub struct DecisionBatchRef<'a> {
    pub sku: &'a Sku,
    pub decisions: &'a [Decision],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<LineAfter>,
}

/// A SKU's line after a committed batch: every place up to `applied_seq`
/// is decided, and `remaining` units are left to sell. A gateway holds back
/// purchases the units cannot cover while its earlier ones are undecided
/// (see the gateway's `room`); a hint, never what a decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAfter {
    pub applied_seq: u64,
    pub remaining: u32,
}

/// A message on `dropline.drops.<sku>`: what happened to a drop as a
/// whole, for every gateway. At most once, like decisions: a gateway that
/// misses one learns the same from the store at its next refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DropEvent {
    /// The drop is finally sold out: every later purchase is `sold_out`,
    /// whoever sends it, until a restock. Part `part` (from 1) of `parts`
    /// carries some of the drop's recorded answers that are not `sold_out`,
    /// which a repeated key must still get; with `every_decision`, its
    /// `sold_out` answers too: a key among none of the parts was never
    /// decided (as of the sell-out), and a gateway needs no store read to
    /// know it. Absent (a processor before it): false.
    SoldOut {
        sku: Sku,
        part: u32,
        parts: u32,
        answers: Vec<Decision>,
        #[serde(default)]
        every_decision: bool,
    },
    /// Units came back (a restock): purchases go to the line again.
    InStock { sku: Sku },
    /// An operator changed the drop's admission: read it now rather than at
    /// the next refresh.
    AdmissionChanged { sku: Sku },
}

impl DropEvent {
    pub fn sku(&self) -> &Sku {
        match self {
            DropEvent::SoldOut { sku, .. }
            | DropEvent::InStock { sku }
            | DropEvent::AdmissionChanged { sku } => sku,
        }
    }

    /// The sell-out of `sku` with its `answers` (every decision of the drop,
    /// or those other than `sold_out`), in as many messages as the decision
    /// limit per message needs (one, when there are none).
    pub fn sold_out(sku: &Sku, answers: &[Decision], every_decision: bool) -> Vec<DropEvent> {
        let chunks: Vec<&[Decision]> = if answers.is_empty() {
            vec![&[]]
        } else {
            answers.chunks(DECISIONS_PER_MESSAGE).collect()
        };
        let parts = chunks.len() as u32;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| DropEvent::SoldOut {
                sku: sku.clone(),
                part: i as u32 + 1,
                parts,
                answers: chunk.to_vec(),
                every_decision,
            })
            .collect()
    }
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
