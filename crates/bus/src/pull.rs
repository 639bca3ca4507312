//! Pulling one SKU's intents continuously (the processor's side), as
//! batches of whatever has arrived, with what is needed to ack them and to
//! tell whether a batch may have holes.
//!
//! Owns the pull over the SKU's fresh consumer of each claim and the
//! delivery-continuity check. Must not decide whether a batch is complete
//! (the processor proves that against the stream, see `read`) nor decode
//! intents itself (that is `dropline_core::wire`).

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::message::Message;
use async_nats::jetstream::AckKind;
use dropline_core::wire::{parse_line_message, PulledEntry};
use dropline_core::Sku;
use futures::{FutureExt, StreamExt};

use crate::{Bus, BusError, ConsumerSettings};

impl Bus {
    /// Starts pulling `sku`'s intents continuously, from a fresh consumer
    /// starting after `applied_seq`; see [`IntentPuller`].
    pub async fn pull_intents(
        &self,
        sku: &Sku,
        applied_seq: u64,
        settings: &ConsumerSettings,
        batch_len_max: usize,
    ) -> Result<IntentPuller, BusError> {
        let consumer = self.fresh_consumer(sku, applied_seq, settings).await?;
        let pull = consumer
            .stream()
            // Twice the batch in flight: the next batch arrives while the
            // current one commits.
            .max_messages_per_batch(batch_len_max * 2);
        // An idle owner's only traffic: a pull request per expiry, and in a
        // cluster a heartbeat per interval; deliveries wait for neither, and
        // the client renews its pull at once after a reconnect. The
        // heartbeat is there for a pull whose consumer leader died with a
        // cluster node, noticed after two missed ones (10 s to recover);
        // with 5 s heartbeats and a 30 s expiry, 1,000 idle drops cost the
        // nats-server 2% of a core. A single server has no other node to
        // lose: its death is the connection's, and a lost connection starts
        // the pull again (see `PullInterrupted`). So there no
        // heartbeat, and an expiry of two minutes, which only bounds how
        // long a pull request the server lost would go unnoticed: 1,000
        // idle drops cost it 0.9% of a core with a 30 s expiry
        // (`bench --only idle`).
        let pull = if self.in_cluster() {
            pull.expires(Duration::from_secs(30))
                .heartbeat(Duration::from_secs(5))
        } else {
            pull.expires(Duration::from_secs(120))
        };
        let messages = pull.messages().await?;
        // Losses before this pull began are not its concern.
        let mut connections_lost = self.connections_lost.clone();
        connections_lost.mark_unchanged();
        Ok(IntentPuller {
            messages: Box::pin(messages),
            connections_lost,
            batch_len_max,
            next_delivery: None,
            ended: false,
        })
    }
}

/// A pull that must be started again (a fresh consumer, from the same
/// place in line) rather than waited on:
/// - a pull request found no responder before the pull delivered
///   anything: in a cluster, a consumer just made is not known to every
///   node at once, or its node is gone;
/// - the connection to the server was lost since the pull began: the
///   consumer, which lives in memory, may be gone with a restarted server
///   (async-nats would report that only after about 5 s of retries).
///
/// What the pull delivered and was not committed is delivered again by
/// the fresh consumer; what was committed is past its place in line.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pull must start again: {0}")]
pub struct PullInterrupted(&'static str);

impl PullInterrupted {
    /// Whether `err` is this.
    pub fn is(err: &BusError) -> bool {
        err.downcast_ref::<Self>().is_some()
    }
}

/// Whether a batch can be trusted to hold every message of the subject
/// from the first one it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Consumer delivery sequences run on without a hole from the previous
    /// batch: nothing was delivered elsewhere or lost in flight.
    Contiguous,
    /// The first batch of a pull, whose first message is not the consumer's
    /// first delivery (an earlier one went astray): nothing to compare it
    /// with but the stream.
    FirstOfPull,
    /// Delivery sequences jumped: some delivery went elsewhere (another
    /// puller) or was lost; the batch may have holes.
    Broken,
}

/// A batch as delivered, with what is needed to ack it.
pub struct IntentBatch {
    pub intents: Vec<PulledEntry>,
    pub continuity: Continuity,
    /// When the batch's first message was stored (Unix milliseconds): the
    /// age of the oldest intent in hand.
    pub first_stored_unix_ms: Option<i64>,
    /// Messages of the subject the server had not delivered yet, as of the
    /// batch's last delivery.
    pub undelivered_messages: u64,
    /// The delivered messages, kept to ack the batch (AckPolicy::All: acking
    /// the last acks all) or to signal progress on a slow batch.
    messages: Vec<Message>,
}

impl IntentBatch {
    /// Acks every message of the batch with one ack.
    pub async fn ack(&self) -> Result<(), BusError> {
        if let Some(last) = self.messages.last() {
            last.ack().await?;
        }
        Ok(())
    }

    /// Tells the server the batch is still being worked on, so it is not
    /// redelivered while a slow commit runs.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        for message in &self.messages {
            message.ack_with(AckKind::Progress).await?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }
}

/// Delivered messages, one at a time.
type Deliveries =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Message, pull::MessagesError>> + Send>>;

/// A continuous pull of one SKU's intents, handed out as batches of whatever
/// has arrived, up to the batch limit.
pub struct IntentPuller {
    messages: Deliveries,
    batch_len_max: usize,
    /// The consumer delivery sequence the next message should carry.
    next_delivery: Option<u64>,
    /// Changes when the connection to the server is lost.
    connections_lost: tokio::sync::watch::Receiver<u64>,
    /// The deliveries ended (the pull failed or was closed).
    ended: bool,
}

impl IntentPuller {
    /// The next batch, in delivery order. `Ok(None)` when the pull ended.
    ///
    /// Cancel-safe: the only await is for the first message (a stream's
    /// `next`); the rest of the batch is taken without waiting, so dropping
    /// the future part-way never drops a delivered message.
    pub async fn next_batch(&mut self) -> Result<Option<IntentBatch>, BusError> {
        let mut batch = IntentBatch {
            intents: Vec::new(),
            continuity: match self.next_delivery {
                None => Continuity::FirstOfPull,
                Some(_) => Continuity::Contiguous,
            },
            first_stored_unix_ms: None,
            undelivered_messages: 0,
            messages: Vec::new(),
        };
        Ok(self.receive_into(&mut batch).await?.then_some(batch))
    }

    /// Whether `batch` has room for more and the pull can still bring some.
    pub fn can_top_up(&self, batch: &IntentBatch) -> bool {
        !self.ended && batch.intents.len() < self.batch_len_max
    }

    /// Waits for more deliveries and adds them to `batch` (the next ones
    /// after it), up to the batch limit: a batch pulled ahead keeps growing
    /// while the previous one commits. Cancel-safe, like [`Self::next_batch`].
    pub async fn top_up(&mut self, batch: &mut IntentBatch) -> Result<(), BusError> {
        self.receive_into(batch).await.map(|_| ())
    }

    /// Waits for one delivery, then takes every one already delivered, until
    /// `batch` holds the batch limit of intents (a message is never split).
    /// `Ok(false)` when the pull ended.
    async fn receive_into(&mut self, batch: &mut IntentBatch) -> Result<bool, BusError> {
        let next = tokio::select! {
            // Deliveries already in hand first.
            biased;
            next = self.messages.next() => next,
            Ok(()) = self.connections_lost.changed() => {
                return Err(Box::new(PullInterrupted("the connection to NATS was lost")));
            }
        };
        let first = match next {
            Some(Ok(first)) => first,
            Some(Err(err))
                if err.kind() == MessagesErrorKind::NoResponders
                    && self.next_delivery.is_none() =>
            {
                return Err(Box::new(PullInterrupted(
                    "no responder before any delivery",
                )));
            }
            Some(Err(err)) => return Err(err.into()),
            None => {
                self.ended = true;
                return Ok(false);
            }
        };
        self.take(batch, first)?;
        // Take everything already delivered, up to the limit. Unconstrained:
        // tokio's cooperative budget would otherwise cut every batch at ~128
        // messages, however many are waiting.
        tokio::task::unconstrained(async {
            while batch.intents.len() < self.batch_len_max {
                match self.messages.next().now_or_never() {
                    Some(Some(message)) => self.take(batch, message?)?,
                    _ => break,
                }
            }
            Ok::<_, BusError>(())
        })
        .await?;
        Ok(true)
    }

    /// Adds one delivered message and its intents to `batch`.
    fn take(&mut self, batch: &mut IntentBatch, message: Message) -> Result<(), BusError> {
        let info = message.info()?;
        // Every delivery, redeliveries included, takes the consumer's next
        // delivery sequence: a jump means a delivery we never saw.
        match self.next_delivery {
            Some(next) if next != info.consumer_sequence => batch.continuity = Continuity::Broken,
            // The consumer's very first delivery: the consumer was made for
            // this pull (see `fresh_consumer`), from the message after the
            // applied one, so this is the subject's first message from
            // there, as a stream read would show at the cost of a request.
            None if info.consumer_sequence == 1 => batch.continuity = Continuity::Contiguous,
            _ => {}
        }
        self.next_delivery = Some(info.consumer_sequence + 1);
        if batch.first_stored_unix_ms.is_none() {
            let nanos = info.published.unix_timestamp_nanos();
            batch.first_stored_unix_ms = i64::try_from(nanos / 1_000_000).ok();
        }
        batch.undelivered_messages = info.pending;
        batch.intents.extend(parse_line_message(
            &message.subject,
            info.stream_sequence,
            &message.payload,
        ));
        batch.messages.push(message);
        Ok(())
    }
}
