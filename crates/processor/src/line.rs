//! What of a completed batch is decided: its entries in line order, up to
//! an entry this build does not know, which stops the partition there.
//!
//! Pure, so the rule is tested without a broker. Must not skip an unknown
//! entry, nor decide anything of its message or after it: messages are
//! applied whole (the consumer restarts after the applied message), so
//! deciding part of that message would skip the rest of it for good.

use dropline_bus::PulledEntry;
use dropline_core::wire::message_seq;
use dropline_core::Entry;

/// The entries to decide, and the unknown entry the partition stops at.
#[derive(Debug)]
pub(crate) struct Line {
    pub entries: Vec<Entry>,
    pub halt: Option<Halt>,
}

/// Why a partition stops deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Halt {
    pub seq: u64,
    pub kind: String,
    pub version: u32,
}

impl Halt {
    pub fn reason(&self) -> String {
        format!(
            "entry at place {} is of kind {:?} version {}, which this processor does not know: \
             upgrade the processors; nothing at or after it is decided until then",
            self.seq, self.kind, self.version
        )
    }
}

/// Sorts a completed batch (in line order) into entries to decide. A
/// message that is not dropline's is logged and left undecided (only a
/// stray publisher can put one on the subject).
pub(crate) fn line_of(pulled: Vec<PulledEntry>) -> Line {
    let halt = pulled.iter().find_map(|p| match p {
        PulledEntry::Unknown { seq, kind, version } => Some(Halt {
            seq: *seq,
            kind: kind.clone(),
            version: *version,
        }),
        _ => None,
    });
    let stop_at_message = halt.as_ref().map(|h| message_seq(h.seq));
    let entries = pulled
        .into_iter()
        .filter(|p| stop_at_message.is_none_or(|stop| message_seq(p.seq()) < stop))
        .filter_map(|p| match p {
            PulledEntry::Malformed { seq, reason } => {
                tracing::error!(seq, reason, "skip a message that is not dropline's");
                None
            }
            known => known.entry(),
        })
        .collect();
    Line { entries, halt }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dropline_core::wire::intent_seq;
    use dropline_core::{IdempotencyKey, Intent, Quantity, UserId};

    fn purchase(message: u64, slot: usize) -> PulledEntry {
        PulledEntry::Purchase(Intent {
            seq: intent_seq(message, slot),
            key: IdempotencyKey::parse(format!("k{message}-{slot}")).expect("key"),
            user_id: UserId::parse("u").expect("user"),
            quantity: Quantity::ONE,
        })
    }

    fn unknown(message: u64, slot: usize) -> PulledEntry {
        PulledEntry::Unknown {
            seq: intent_seq(message, slot),
            kind: "refund".into(),
            version: 1,
        }
    }

    #[test]
    fn an_unknown_entry_stops_the_line_before_its_whole_message() {
        let line = line_of(vec![
            purchase(1, 0),
            purchase(2, 0),
            purchase(3, 0),
            unknown(3, 1),
            purchase(3, 2),
            purchase(4, 0),
        ]);
        let seqs: Vec<u64> = line.entries.iter().map(Entry::seq).collect();
        assert_eq!(seqs, [intent_seq(1, 0), intent_seq(2, 0)]);
        let halt = line.halt.expect("a halt");
        assert_eq!((halt.seq, halt.kind.as_str()), (intent_seq(3, 1), "refund"));
    }

    #[test]
    fn a_stray_message_is_left_out_and_the_rest_decided() {
        let stray = PulledEntry::Malformed {
            seq: intent_seq(2, 0),
            reason: "not JSON".into(),
        };
        let line = line_of(vec![purchase(1, 0), stray, purchase(3, 0)]);
        assert_eq!(line.entries.len(), 2);
        assert!(line.halt.is_none());
    }
}
