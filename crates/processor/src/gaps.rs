//! Proving a batch misses no intent of its subject.
//!
//! The consumer is a fast cursor, not the truth. Each owner pulls from a
//! consumer of its own epoch (see `Bus::pull_intents`), so no earlier puller
//! holds deliveries of it; what remains is a delivery lost in flight, which
//! acking a later message (AckPolicy::All) would ack too. Before a batch is
//! decided, it must start right after the applied sequence and have no
//! holes; when that cannot be shown from delivery sequences, the batch is
//! rebuilt from the stream itself. Must not decide or drop an intent beyond
//! what the applied sequence already covers.

use dropline_bus::{Bus, BusError, Continuity, PulledEntry};
use dropline_core::wire::message_seq;
use dropline_core::Sku;

/// Returns the intents to decide, in stream order, beyond `applied_seq`.
pub(crate) async fn complete_batch(
    bus: &Bus,
    sku: &Sku,
    applied_seq: u64,
    continuity: Continuity,
    mut delivered: Vec<PulledEntry>,
) -> Result<Vec<PulledEntry>, BusError> {
    delivered.retain(|i| i.seq() > applied_seq);
    delivered.sort_by_key(PulledEntry::seq);
    delivered.dedup_by_key(|i| i.seq());
    let Some(last_seq) = delivered.last().map(PulledEntry::seq) else {
        return Ok(delivered);
    };
    // Messages are applied whole, so the next one to decide is the first
    // message after the one holding the applied place in line.
    let next_message = message_seq(applied_seq) + 1;
    let head_is_next = || async {
        let next = bus.first_message_from(sku, next_message).await?;
        Ok::<_, BusError>(next == delivered.first().map(|i| message_seq(i.seq())))
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
    let last_message = message_seq(last_seq);
    let rebuilt = read_range(bus, sku, next_message, last_message).await?;
    // The batch's last message was delivered, so the stream holds it. A
    // read that does not reach it answered from an older state of the
    // stream than the consumer delivered from (seen with 1,000 SKUs on a
    // loaded 3-node cluster: such a batch was decided without its last
    // message, which the ack then skipped for good). A stream's state is a
    // prefix of its messages, so a read that reaches the last message holds
    // every one before it; one that does not must not be decided: the
    // partition fails and is claimed again, its consumer made afresh from
    // the applied place in line.
    let reached = rebuilt.last().map(|entry| message_seq(entry.seq()));
    if reached != Some(last_message) {
        return Err(format!(
            "the stream read of {sku}'s line stopped at message {reached:?} before message \
             {last_message}, which was delivered: a stale read; not deciding the batch"
        )
        .into());
    }
    Ok(rebuilt)
}

/// Every intent of `sku` in the messages with a stream sequence in
/// `first..=last`, read from the stream.
async fn read_range(
    bus: &Bus,
    sku: &Sku,
    first: u64,
    last: u64,
) -> Result<Vec<PulledEntry>, BusError> {
    let mut intents = Vec::new();
    let mut from = first;
    while from <= last {
        match bus.read_message_from(sku, from).await? {
            Some((seq, in_message)) if seq <= last => {
                from = seq + 1;
                intents.extend(in_message);
            }
            _ => break,
        }
    }
    Ok(intents)
}
