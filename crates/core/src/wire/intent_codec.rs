//! The codec of a message on `dropline.intents.<sku>`: writing one (a
//! gateway's purchases as a JSON array, [`IntentMessage`]) and reading one
//! back, each intent at its place in line ([`parse_intent_message`]).
//!
//! Must stay symmetric and pure: what [`IntentMessage`] writes,
//! [`parse_intent_message`] reads, and neither sends, receives nor decides.
//! A message that is not dropline's becomes one [`PulledIntent::Malformed`]
//! entry, never an error: a stray publish on the subject must not stop its
//! SKU's line.

use super::{intent_seq, IntentPayload, INTENTS_PER_MESSAGE, MESSAGE_BYTES_SOFT_MAX};
use crate::ledger::Intent;

/// The body of one intent message being assembled: a JSON array, written
/// as intents are added, so a full message is never serialized twice.
#[derive(Debug)]
pub struct IntentMessage {
    body: Vec<u8>,
    len: usize,
}

impl Default for IntentMessage {
    fn default() -> Self {
        Self {
            body: vec![b'['],
            len: 0,
        }
    }
}

impl IntentMessage {
    /// Adds `intent` at the next slot and returns that slot.
    ///
    /// # Panics
    /// If the message is full: callers check [`Self::is_full`] first.
    pub fn push(&mut self, intent: &IntentPayload) -> usize {
        assert!(!self.is_full(), "intent message is full");
        if self.len > 0 {
            self.body.push(b',');
        }
        serde_json::to_writer(&mut self.body, intent)
            .expect("an intent of parsed domain values always serializes");
        self.len += 1;
        self.len - 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for another intent.
    pub fn is_full(&self) -> bool {
        self.len >= INTENTS_PER_MESSAGE || self.body.len() >= MESSAGE_BYTES_SOFT_MAX
    }

    /// Closes the array: the message's payload, as it goes on the stream.
    pub fn into_body(mut self) -> Vec<u8> {
        self.body.push(b']');
        self.body
    }
}

/// One entry of a message read off the stream.
#[derive(Debug, Clone)]
pub enum PulledIntent {
    Intent(Intent),
    /// Not an intent dropline wrote (a stray publish on the subject): it is
    /// skipped, never decided.
    Malformed {
        seq: u64,
        reason: String,
    },
}

impl PulledIntent {
    pub fn seq(&self) -> u64 {
        match self {
            PulledIntent::Intent(i) => i.seq,
            PulledIntent::Malformed { seq, .. } => *seq,
        }
    }
}

/// The intents of the message at `message_seq`, each at its place in line:
/// an array of intents (a gateway's batch) or a single one. A message that is
/// neither is one `Malformed` entry at slot 0.
pub fn parse_intent_message(message_seq: u64, payload: &[u8]) -> Vec<PulledIntent> {
    match parse_payloads(payload) {
        Ok(intents) => intents
            .into_iter()
            .enumerate()
            .map(|(slot, p)| {
                PulledIntent::Intent(Intent {
                    seq: intent_seq(message_seq, slot),
                    key: p.key,
                    user_id: p.user_id,
                    quantity: p.quantity,
                })
            })
            .collect(),
        Err(reason) => vec![PulledIntent::Malformed {
            seq: intent_seq(message_seq, 0),
            reason,
        }],
    }
}

/// The payloads of a message in slot order, or why it is not a message of
/// intents.
fn parse_payloads(payload: &[u8]) -> Result<Vec<IntentPayload>, String> {
    let is_array = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[');
    if !is_array {
        return serde_json::from_slice::<IntentPayload>(payload)
            .map(|intent| vec![intent])
            .map_err(|err| err.to_string());
    }
    let intents =
        serde_json::from_slice::<Vec<IntentPayload>>(payload).map_err(|err| err.to_string())?;
    if (1..=INTENTS_PER_MESSAGE).contains(&intents.len()) {
        Ok(intents)
    } else {
        Err(format!(
            "{} intents in one message (1 to {INTENTS_PER_MESSAGE} allowed)",
            intents.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdempotencyKey, Quantity, UserId};

    fn payload(i: usize) -> IntentPayload {
        IntentPayload {
            key: IdempotencyKey::parse(format!("key-{i}")).unwrap(),
            user_id: UserId::parse(format!("user-{i}")).unwrap(),
            quantity: Quantity::parse(1).unwrap(),
        }
    }

    fn decided(pulled: &[PulledIntent]) -> Vec<(u64, String)> {
        pulled
            .iter()
            .map(|p| match p {
                PulledIntent::Intent(i) => (i.seq, i.key.as_str().to_string()),
                PulledIntent::Malformed { seq, reason } => (*seq, format!("malformed: {reason}")),
            })
            .collect()
    }

    #[test]
    fn a_message_of_intents_comes_back_in_its_slots() {
        let mut message = IntentMessage::default();
        for i in 0..3 {
            assert_eq!(message.push(&payload(i)), i);
        }
        let pulled = parse_intent_message(9, &message.into_body());
        assert_eq!(
            decided(&pulled),
            vec![
                (intent_seq(9, 0), "key-0".to_string()),
                (intent_seq(9, 1), "key-1".to_string()),
                (intent_seq(9, 2), "key-2".to_string()),
            ]
        );
    }

    #[test]
    fn a_single_intent_message_is_at_slot_zero() {
        let body = serde_json::to_vec(&payload(5)).unwrap();
        assert_eq!(
            decided(&parse_intent_message(4, &body)),
            vec![(intent_seq(4, 0), "key-5".to_string())]
        );
    }

    #[test]
    fn a_message_fills_up_at_its_intent_limit() {
        let mut message = IntentMessage::default();
        while !message.is_full() {
            message.push(&payload(message.len()));
        }
        assert_eq!(message.len(), INTENTS_PER_MESSAGE);
        assert_eq!(
            parse_intent_message(1, &message.into_body()).len(),
            INTENTS_PER_MESSAGE
        );
    }

    #[test]
    fn what_is_not_a_message_of_intents_is_one_malformed_entry() {
        for body in [
            &b"[]"[..],
            b"{\"k\":\"a\"}",
            b"[{\"k\":\"a\",\"u\":\"b\",\"q\":0}]",
            b"oops",
        ] {
            let pulled = parse_intent_message(3, body);
            assert!(
                matches!(pulled.as_slice(), [PulledIntent::Malformed { seq, .. }] if *seq == intent_seq(3, 0)),
                "{}: {pulled:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
