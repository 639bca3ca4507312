//! Proving a batch misses no intent of its subject.
//!
//! The consumer is a fast cursor, not the truth. Each owner pulls from a
//! consumer of its own epoch (see `Bus::pull_intents`), so no earlier puller
//! holds deliveries of it; what remains is a delivery lost in flight, which
//! acking a later message (AckPolicy::All) would ack too. Before a batch is decided, it must start right after
//! the applied sequence and have no holes; when that cannot be shown from
//! delivery sequences, the batch is rebuilt from the stream itself.

use dropline_bus::{Bus, BusError, Continuity, PulledIntent};
use dropline_core::Sku;

/// Returns the intents to decide, in stream order, beyond `applied_seq`.
pub(crate) async fn complete_batch(
    bus: &Bus,
    sku: &Sku,
    applied_seq: u64,
    continuity: Continuity,
    mut delivered: Vec<PulledIntent>,
) -> Result<Vec<PulledIntent>, BusError> {
    delivered.retain(|i| i.seq() > applied_seq);
    delivered.sort_by_key(PulledIntent::seq);
    delivered.dedup_by_key(|i| i.seq());
    let Some(last_seq) = delivered.last().map(PulledIntent::seq) else {
        return Ok(delivered);
    };
    let head_is_next = || async {
        let next = bus.first_seq_from(sku, applied_seq + 1).await?;
        Ok::<_, BusError>(next == delivered.first().map(PulledIntent::seq))
    };
    let trustworthy = match continuity {
        Continuity::Contiguous => true,
        Continuity::FirstOfPull => head_is_next().await?,
        Continuity::Broken => false,
    };
    if trustworthy {
        return Ok(delivered);
    }
    tracing::warn!(%sku, applied_seq, last_seq, ?continuity, "rebuilding batch from the stream");
    read_range(bus, sku, applied_seq + 1, last_seq).await
}

/// Every intent of `sku` with a sequence in `first..=last`, read from the stream.
async fn read_range(
    bus: &Bus,
    sku: &Sku,
    first: u64,
    last: u64,
) -> Result<Vec<PulledIntent>, BusError> {
    let mut intents = Vec::new();
    let mut from = first;
    while from <= last {
        match bus.read_intent_from(sku, from).await? {
            Some(intent) if intent.seq() <= last => {
                from = intent.seq() + 1;
                intents.push(intent);
            }
            _ => break,
        }
    }
    Ok(intents)
}
