//! The intent wire format against anything a stream could hold: no input
//! makes the parser panic, every entry it returns sits at its own place in
//! line, and what the gateway writes reads back as written.

use dropline_core::wire::{
    intent_seq, parse_intent_message, IntentMessage, IntentPayload, PulledEntry,
};
use dropline_core::{IdempotencyKey, Quantity, UserId};
use proptest::prelude::*;

/// JSON-ish bytes: brackets, braces, quotes and the field names the
/// parser looks for, so that inputs reach past the first byte.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "\"",
        "\"k\"",
        "\"u\"",
        "\"q\"",
        "\"t\"",
        "\"v\"",
        "\"op\"",
        "\"by\"",
        "\"n\"",
        "\"close\"",
        "\"restock\"",
        "1",
        "-3",
        "0",
        "1e99",
        "null",
        "true",
        "\"\\u0000\"",
        "\"é\"",
        " ",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|parts| parts.concat().into_bytes())
}

fn assert_in_line(message_seq: u64, pulled: &[PulledEntry]) {
    for (slot, entry) in pulled.iter().enumerate() {
        assert_eq!(entry.seq(), intent_seq(message_seq, slot), "{pulled:?}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), seq in 1u64..1_000_000) {
        let pulled = parse_intent_message(seq, &bytes);
        assert_in_line(seq, &pulled);
    }

    #[test]
    fn json_shaped_input_never_panics(bytes in jsonish(), seq in 1u64..1_000_000) {
        let pulled = parse_intent_message(seq, &bytes);
        assert_in_line(seq, &pulled);
    }

    #[test]
    fn what_the_gateway_writes_reads_back(
        purchases in prop::collection::vec(("[ -~]{1,40}", "[ -~]{1,40}", 1i64..=100), 1..20),
        seq in 1u64..1_000_000,
    ) {
        let mut message = IntentMessage::default();
        let mut sent = Vec::new();
        for (key, user, quantity) in purchases {
            let (Ok(key), Ok(user_id), Ok(quantity)) =
                (IdempotencyKey::parse(key), UserId::parse(user), Quantity::parse(quantity))
            else {
                continue;
            };
            let payload = IntentPayload { key, user_id, quantity };
            message.push(&payload);
            sent.push(payload);
        }
        prop_assume!(!sent.is_empty());
        let pulled = parse_intent_message(seq, &message.into_body());
        prop_assert_eq!(pulled.len(), sent.len());
        for (slot, (entry, payload)) in pulled.iter().zip(&sent).enumerate() {
            let PulledEntry::Purchase(intent) = entry else {
                panic!("slot {slot} read back as {entry:?}");
            };
            prop_assert_eq!(intent.seq, intent_seq(seq, slot));
            prop_assert_eq!(&intent.key, &payload.key);
            prop_assert_eq!(&intent.user_id, &payload.user_id);
            prop_assert_eq!(intent.quantity, payload.quantity);
        }
    }
}
