//! The codec of a message in a SKU's line: writing one (a
//! gateway's purchases as a JSON array, [`IntentMessage`]; an operator's
//! action, [`control_message`]) and reading one back, each entry at its
//! place in line ([`parse_intent_message`]).
//!
//! Must stay symmetric and pure: what the writers write,
//! [`parse_intent_message`] reads, and nothing here sends, receives or
//! decides. A message that is not dropline's becomes one
//! [`PulledEntry::Malformed`] entry, never an error: a stray publish on the
//! subject must not stop its SKU's line. An entry of a kind this build does
//! not know is [`PulledEntry::Unknown`]: a newer dropline wrote it, and it
//! must stop the line rather than be skipped.

use super::{
    intent_seq, ControlPayload, IntentPayload, CLOSE_KIND, CONTROL_VERSION, INTENTS_PER_MESSAGE,
    MESSAGE_BYTES_SOFT_MAX, RESTOCK_KIND,
};
use crate::ledger::{Control, Entry, Intent};
use crate::names::Lane;

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

/// One entry of a message read off the stream, at its place in line.
#[derive(Debug, Clone)]
pub enum PulledEntry {
    Purchase(Intent),
    Control(Control),
    /// An entry of a kind (or a version of a kind) this build does not
    /// know: written by a newer dropline. Its partition must stop here
    /// rather than decide past it.
    Unknown {
        seq: u64,
        kind: String,
        version: u32,
    },
    /// Not something dropline wrote (a stray publish on the subject): it is
    /// skipped, never decided.
    Malformed {
        seq: u64,
        reason: String,
    },
}

impl PulledEntry {
    pub fn seq(&self) -> u64 {
        match self {
            PulledEntry::Purchase(intent) => intent.seq,
            PulledEntry::Control(control) => control.seq,
            PulledEntry::Unknown { seq, .. } | PulledEntry::Malformed { seq, .. } => *seq,
        }
    }

    /// The entry to decide, if it is one this build knows.
    pub fn entry(&self) -> Option<Entry> {
        match self {
            PulledEntry::Purchase(intent) => Some(Entry::Purchase(intent.clone())),
            PulledEntry::Control(control) => Some(Entry::Control(control.clone())),
            PulledEntry::Unknown { .. } | PulledEntry::Malformed { .. } => None,
        }
    }
}

/// The one message an operator's action travels in.
pub fn control_message(control: &ControlPayload) -> Vec<u8> {
    let mut body = b"[".to_vec();
    serde_json::to_writer(&mut body, control)
        .expect("a control entry of parsed domain values always serializes");
    body.push(b']');
    body
}

/// The entries of the message at `message_seq`, each at its place in line:
/// an array of entries (a gateway's purchases, an operator's action) or a
/// single purchase. A message that is neither is one `Malformed` entry at
/// slot 0.
pub fn parse_intent_message(message_seq: u64, payload: &[u8]) -> Vec<PulledEntry> {
    let at = |slot| intent_seq(message_seq, slot);
    // Nearly every message is a gateway's purchases: read those directly,
    // and only look entry by entry at a message that has something else.
    if let Ok(purchases) = parse_purchases(payload) {
        return purchases
            .into_iter()
            .enumerate()
            .map(|(slot, p)| {
                PulledEntry::Purchase(Intent {
                    seq: at(slot),
                    key: p.key,
                    user_id: p.user_id,
                    quantity: p.quantity,
                })
            })
            .collect();
    }
    match serde_json::from_slice::<Vec<serde_json::Value>>(payload) {
        Ok(values) if (1..=INTENTS_PER_MESSAGE).contains(&values.len()) => values
            .into_iter()
            .enumerate()
            .map(|(slot, value)| parse_entry(at(slot), value))
            .collect(),
        Ok(values) => vec![malformed(
            at(0),
            format!(
                "{} entries in one message (1 to {INTENTS_PER_MESSAGE} allowed)",
                values.len()
            ),
        )],
        Err(err) => vec![malformed(at(0), err.to_string())],
    }
}

/// The entries of the message at `message_seq` that came on `subject`:
/// what its lane may not carry is refused, as a `Malformed` entry (logged
/// and skipped, never decided). A gateway may publish only on the purchases
/// lane, so whatever else it writes there, even an entry of a kind this
/// build does not know, cannot close, restock or stop a line.
pub fn parse_line_message(subject: &str, message_seq: u64, payload: &[u8]) -> Vec<PulledEntry> {
    let Some(lane) = Lane::of_subject(subject) else {
        let reason = format!("{subject:?} is not a lane of a line");
        return vec![malformed(intent_seq(message_seq, 0), reason)];
    };
    let mut entries = parse_intent_message(message_seq, payload);
    for entry in &mut entries {
        if let Some(reason) = refused_on(lane, entry) {
            *entry = malformed(entry.seq(), reason.to_string());
        }
    }
    entries
}

/// Why `lane` may not carry `entry`, if it may not.
fn refused_on(lane: Lane, entry: &PulledEntry) -> Option<&'static str> {
    match (lane, entry) {
        (Lane::Legacy, _)
        | (_, PulledEntry::Malformed { .. })
        | (Lane::Purchases, PulledEntry::Purchase(_))
        | (Lane::Control, PulledEntry::Control(_) | PulledEntry::Unknown { .. }) => None,
        (Lane::Purchases, _) => {
            Some("refused: only purchases come on the purchases lane (operators' entries go on the control lane)")
        }
        (Lane::Control, PulledEntry::Purchase(_)) => {
            Some("refused: a purchase on the control lane (purchases come only from gateways)")
        }
    }
}

fn malformed(seq: u64, reason: String) -> PulledEntry {
    PulledEntry::Malformed { seq, reason }
}

/// One entry of a message that is not all purchases.
fn parse_entry(seq: u64, value: serde_json::Value) -> PulledEntry {
    let Some(kind) = value.get("t").map(|t| t.as_str().unwrap_or("").to_string()) else {
        return match serde_json::from_value::<IntentPayload>(value) {
            Ok(p) => PulledEntry::Purchase(Intent {
                seq,
                key: p.key,
                user_id: p.user_id,
                quantity: p.quantity,
            }),
            Err(err) => malformed(seq, err.to_string()),
        };
    };
    let version = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let known =
        matches!(kind.as_str(), CLOSE_KIND | RESTOCK_KIND) && version == u64::from(CONTROL_VERSION);
    if !known {
        return PulledEntry::Unknown {
            seq,
            kind,
            version: u32::try_from(version).unwrap_or(u32::MAX),
        };
    }
    match serde_json::from_value::<ControlPayload>(value) {
        Ok(payload) => match payload.action() {
            Ok(action) => PulledEntry::Control(Control {
                seq,
                op: payload.op,
                by: payload.by,
                action,
            }),
            Err(reason) => malformed(seq, reason),
        },
        Err(err) => malformed(seq, err.to_string()),
    }
}

/// The purchases of a message that holds nothing else, in slot order.
fn parse_purchases(payload: &[u8]) -> Result<Vec<IntentPayload>, String> {
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
    use crate::ledger::Action;
    use crate::{IdempotencyKey, OperationId, OperatorId, Quantity, Stock, UserId};

    fn payload(i: usize) -> IntentPayload {
        IntentPayload {
            key: IdempotencyKey::parse(format!("key-{i}")).unwrap(),
            user_id: UserId::parse(format!("user-{i}")).unwrap(),
            quantity: Quantity::parse(1).unwrap(),
        }
    }

    fn decided(pulled: &[PulledEntry]) -> Vec<(u64, String)> {
        pulled
            .iter()
            .map(|p| match p {
                PulledEntry::Purchase(i) => (i.seq, i.key.as_str().to_string()),
                PulledEntry::Control(c) => (c.seq, format!("{}: {}", c.action.kind(), c.op)),
                PulledEntry::Unknown { seq, kind, version } => {
                    (*seq, format!("unknown {kind} v{version}"))
                }
                PulledEntry::Malformed { seq, reason } => (*seq, format!("malformed: {reason}")),
            })
            .collect()
    }

    fn close_entry() -> Vec<u8> {
        let op = OperationId::parse("op-1").unwrap();
        let by = OperatorId::parse("ops").unwrap();
        control_message(&ControlPayload::new(&op, &by, Action::Close))
    }

    #[test]
    fn each_lane_carries_only_its_own_kinds() {
        let mut purchases = IntentMessage::default();
        purchases.push(&payload(1));
        let purchases = purchases.into_body();
        let unknown = br#"[{"t":"refund","v":1}]"#;
        let on = |lane, body: &[u8]| {
            let subject = crate::names::line_subject(&crate::Sku::parse("s").unwrap(), lane);
            decided(&parse_line_message(&subject, 7, body))
        };
        let refused = |text: &Vec<(u64, String)>| text[0].1.starts_with("malformed: refused");
        assert_eq!(on(Lane::Purchases, &purchases)[0].1, "key-1");
        assert!(refused(&on(Lane::Purchases, &close_entry())));
        assert!(refused(&on(Lane::Purchases, unknown)));
        assert!(refused(&on(Lane::Control, &purchases)));
        assert_eq!(on(Lane::Control, &close_entry())[0].1, "close: op-1");
        assert_eq!(on(Lane::Control, unknown)[0].1, "unknown refund v1");
        assert_eq!(on(Lane::Legacy, &close_entry())[0].1, "close: op-1");
        assert_eq!(on(Lane::Legacy, &purchases)[0].1, "key-1");
        let stray = parse_line_message("dropline.line.s.other", 7, &purchases);
        assert!(matches!(stray[..], [PulledEntry::Malformed { .. }]));
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
                matches!(pulled.as_slice(), [PulledEntry::Malformed { seq, .. }] if *seq == intent_seq(3, 0)),
                "{}: {pulled:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn control(action: Action) -> ControlPayload {
        ControlPayload::new(
            &OperationId::parse("op-1").unwrap(),
            &OperatorId::parse("ops@example").unwrap(),
            action,
        )
    }

    #[test]
    fn an_operator_action_comes_back_at_its_place_in_line() {
        let pulled = parse_intent_message(5, &control_message(&control(Action::Close)));
        assert_eq!(
            decided(&pulled),
            vec![(intent_seq(5, 0), "close: op-1".to_string())]
        );
        let units = Stock::parse(7).unwrap();
        let pulled = parse_intent_message(6, &control_message(&control(Action::Restock(units))));
        assert!(matches!(
            pulled.as_slice(),
            [PulledEntry::Control(Control { action: Action::Restock(n), .. })] if *n == units
        ));
    }

    #[test]
    fn purchases_and_actions_share_a_message_in_their_slots() {
        let body = format!(
            "[{},{}]",
            serde_json::to_string(&payload(1)).unwrap(),
            String::from_utf8(control_message(&control(Action::Close)))
                .unwrap()
                .trim_matches(['[', ']'])
        );
        let pulled = parse_intent_message(2, body.as_bytes());
        assert_eq!(
            decided(&pulled),
            vec![
                (intent_seq(2, 0), "key-1".to_string()),
                (intent_seq(2, 1), "close: op-1".to_string())
            ]
        );
    }

    #[test]
    fn an_entry_of_an_unknown_kind_or_version_is_unknown_not_skipped() {
        for body in [
            &br#"[{"t":"refund","v":1,"op":"x","by":"y"}]"#[..],
            br#"[{"t":"close","v":2,"op":"x","by":"y"}]"#,
            br#"[{"t":"payment","v":1,"amount":"a string where a count would be"}]"#,
        ] {
            let pulled = parse_intent_message(8, body);
            assert!(
                matches!(pulled.as_slice(), [PulledEntry::Unknown { seq, .. }] if *seq == intent_seq(8, 0)),
                "{}: {pulled:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_known_kind_with_bad_fields_is_malformed() {
        let pulled =
            parse_intent_message(9, br#"[{"t":"restock","v":1,"op":"x","by":"y","n":-3}]"#);
        assert!(
            matches!(pulled.as_slice(), [PulledEntry::Malformed { .. }]),
            "{pulled:?}"
        );
        let pulled = parse_intent_message(9, br#"[{"t":"restock","v":1,"op":"x","by":"y"}]"#);
        assert!(
            matches!(pulled.as_slice(), [PulledEntry::Malformed { .. }]),
            "{pulled:?}"
        );
    }
}
