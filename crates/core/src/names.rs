//! Names on the bus: streams, subjects, consumers and message ids.
//!
//! Kept in one place so that gateway, processor and operator tools can never
//! disagree about where an SKU's intents or decisions travel. Must not build
//! a subject from anything but a parsed [`Sku`], which is safe as a token.

use crate::domain::Sku;

/// The one stream holding every buy intent.
pub const INTENTS_STREAM: &str = "DROPLINE_INTENTS";

/// Subjects the intents stream captures: a SKU's line is
/// `dropline.line.<sku>.<lane>`, one lane per kind of writer (see [`Lane`]);
/// `dropline.intents.<sku>` is the one subject of a line before lanes,
/// still read so that entries written before an upgrade are decided.
pub const INTENTS_SUBJECTS: [&str; 2] = ["dropline.line.*.*", "dropline.intents.*"];

/// Who may write an entry into a SKU's line, told by the subject it came
/// on: NATS permissions decide who may publish on which lane (a gateway
/// only on [`Lane::Purchases`]), and the processor decides only the kinds
/// of entry a lane may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Buyers' purchases, published by gateways.
    Purchases,
    /// Operators' and processors' entries: close, restock.
    Control,
    /// The line's one subject before lanes: written by any role then.
    Legacy,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Purchases, Lane::Control, Lane::Legacy];

    /// The lane of a subject of the intents stream.
    pub fn of_subject(subject: &str) -> Option<Lane> {
        if subject.starts_with("dropline.intents.") {
            return Some(Lane::Legacy);
        }
        match subject.rsplit_once('.')?.1 {
            "buy" => Some(Lane::Purchases),
            "ctl" => Some(Lane::Control),
            _ => None,
        }
    }
}

/// Subjects decisions are broadcast on; a gateway subscribes once to all of them.
pub const DECISIONS_SUBJECTS: &str = "dropline.decisions.*";

/// Subjects of drop-level events (sell-out, back in stock, admission
/// changes); a gateway subscribes once to all of them.
pub const DROP_EVENTS_SUBJECTS: &str = "dropline.drops.*";

/// Where events about the drop `sku` as a whole are broadcast.
pub fn drop_events_subject(sku: &Sku) -> String {
    format!("dropline.drops.{sku}")
}

/// Where entries of `lane` join `sku`'s line; one line = one partition =
/// one SKU, whatever its lanes.
pub fn line_subject(sku: &Sku, lane: Lane) -> String {
    match lane {
        Lane::Purchases => format!("dropline.line.{sku}.buy"),
        Lane::Control => format!("dropline.line.{sku}.ctl"),
        Lane::Legacy => format!("dropline.intents.{sku}"),
    }
}

/// Every lane of `sku`'s line but the legacy one, as one consumer filter.
pub fn line_lanes_filter(sku: &Sku) -> String {
    format!("dropline.line.{sku}.*")
}

/// Where the processor publishes the decisions of one batch of `sku`.
pub fn decision_subject(sku: &Sku) -> String {
    format!("dropline.decisions.{sku}")
}

/// The durable pull consumer of one SKU's partition.
pub fn consumer_name(sku: &Sku) -> String {
    format!("intents_{sku}")
}

/// Recovers the SKU from a line or decision subject.
pub fn sku_of_subject(subject: &str) -> Option<Sku> {
    let token = match subject.strip_prefix("dropline.line.") {
        Some(rest) => rest.rsplit_once('.')?.0,
        None => subject
            .strip_prefix("dropline.intents.")
            .or_else(|| subject.strip_prefix("dropline.decisions."))?,
    };
    Sku::parse(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_the_sku() {
        let sku = Sku::parse("AJ1-chicago").unwrap();
        for lane in Lane::ALL {
            let subject = line_subject(&sku, lane);
            assert_eq!(sku_of_subject(&subject), Some(sku.clone()));
            assert_eq!(Lane::of_subject(&subject), Some(lane));
        }
        assert_eq!(sku_of_subject(&decision_subject(&sku)), Some(sku));
        assert_eq!(sku_of_subject("dropline.intents.a.b"), None);
        assert_eq!(sku_of_subject("dropline.line.a.b.buy"), None);
        assert_eq!(sku_of_subject("other.a"), None);
        assert_eq!(Lane::of_subject("dropline.line.a.other"), None);
    }
}
