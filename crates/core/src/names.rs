//! Names on the bus: streams, subjects, consumers and message ids.
//!
//! Kept in one place so that gateway, processor and operator tools can never
//! disagree about where an SKU's intents or decisions travel. Must not build
//! a subject from anything but a parsed [`Sku`], which is safe as a token.

use crate::domain::Sku;

/// The one stream holding every buy intent.
pub const INTENTS_STREAM: &str = "DROPLINE_INTENTS";

/// Subjects the intents stream captures: one token per SKU.
pub const INTENTS_SUBJECTS: &str = "dropline.intents.*";

/// Subjects decisions are broadcast on; a gateway subscribes once to all of them.
pub const DECISIONS_SUBJECTS: &str = "dropline.decisions.*";

/// Subjects of drop-level events (sell-out, back in stock, admission
/// changes); a gateway subscribes once to all of them.
pub const DROP_EVENTS_SUBJECTS: &str = "dropline.drops.*";

/// Where events about the drop `sku` as a whole are broadcast.
pub fn drop_events_subject(sku: &Sku) -> String {
    format!("dropline.drops.{sku}")
}

/// One subject per SKU: one subject = one partition = one SKU.
pub fn intent_subject(sku: &Sku) -> String {
    format!("dropline.intents.{sku}")
}

/// Where the processor publishes the decisions of one batch of `sku`.
pub fn decision_subject(sku: &Sku) -> String {
    format!("dropline.decisions.{sku}")
}

/// The durable pull consumer of one SKU's partition.
pub fn consumer_name(sku: &Sku) -> String {
    format!("intents_{sku}")
}

/// Recovers the SKU from an intent or decision subject.
pub fn sku_of_subject(subject: &str) -> Option<Sku> {
    let token = subject
        .strip_prefix("dropline.intents.")
        .or_else(|| subject.strip_prefix("dropline.decisions."))?;
    Sku::parse(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_the_sku() {
        let sku = Sku::parse("AJ1-chicago").unwrap();
        assert_eq!(sku_of_subject(&intent_subject(&sku)), Some(sku.clone()));
        assert_eq!(sku_of_subject(&decision_subject(&sku)), Some(sku));
        assert_eq!(sku_of_subject("dropline.intents.a.b"), None);
        assert_eq!(sku_of_subject("other.a"), None);
    }
}
