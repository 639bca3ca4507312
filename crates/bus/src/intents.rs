//! Intents: publishing them (gateway) and pulling them in batches (processor).

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{Message, StreamMessage};
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, AckKind};
use dropline_core::names::{intent_subject, INTENTS_STREAM};
use dropline_core::wire::{parse_intent_message, IntentMessage, PulledIntent};
use dropline_core::Sku;
use futures::{FutureExt, StreamExt};

use crate::{Bus, BusError, ConsumerSettings};

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The broker did not take the intent (down, unreachable, timed out):
    /// nothing was accepted as far as the client can tell; retrying with the
    /// same key is safe.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// A message handed to the broker whose PubAck has not been read yet.
pub struct PendingAck {
    ack: jetstream::context::PublishAckFuture,
    /// Marked seen before the message was sent: a change is a connection
    /// lost since.
    connections_lost: tokio::sync::watch::Receiver<u64>,
}

impl PendingAck {
    /// Waits for the PubAck: the moment every intent of the message is
    /// accepted. Returns the message's stream sequence.
    ///
    /// Fails at once, instead of at the request timeout, when the connection
    /// is lost first: the PubAck cannot come any more, and the purchases
    /// waiting on it (and every one queued behind them for the SKU) should
    /// hear `503` and retry on the new connection. The message may still
    /// have been stored; a retry with the same key is then answered with
    /// that key's decision, as any repeat is.
    pub async fn accepted(mut self) -> Result<u64, PublishError> {
        let connection_lost = async {
            if self.connections_lost.changed().await.is_err() {
                // The client is gone for good: only the timeout can end this.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            ack = self.ack => ack
                .map(|ack| ack.sequence)
                .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e))),
            () = connection_lost => Err(PublishError::Unavailable(
                "the connection to NATS was lost before the PubAck".into(),
            )),
        }
    }
}

impl Bus {
    /// Hands a message of intents to the broker, without waiting for its
    /// PubAck, so that the next message can be sent while this one is
    /// stored. Messages sent one after the other on a connection are stored
    /// in that order.
    ///
    /// No `Nats-Msg-Id`: a message carries many keys, so the stream's
    /// duplicate window cannot stand for any one of them. A key that comes
    /// again is the processor's to answer with its recorded decision.
    pub async fn send_intents(
        &self,
        sku: &Sku,
        message: IntentMessage,
    ) -> Result<PendingAck, PublishError> {
        // Losses before this send are not this message's.
        let mut connections_lost = self.connections_lost.clone();
        connections_lost.mark_unchanged();
        if !self.is_connected() {
            return Err(PublishError::Unavailable("not connected to NATS".into()));
        }
        let publish =
            jetstream::message::PublishMessage::build().payload(message.into_body().into());
        let ack = self
            .js
            .send_publish(intent_subject(sku), publish)
            .await
            .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e)))?;
        Ok(PendingAck {
            ack,
            connections_lost,
        })
    }

    /// Starts pulling `sku`'s intents continuously; see [`IntentPuller`].
    pub async fn pull_intents(
        &self,
        sku: &Sku,
        applied_seq: u64,
        settings: &ConsumerSettings,
        batch_len_max: usize,
    ) -> Result<IntentPuller, BusError> {
        let consumer = self.fresh_consumer(sku, applied_seq, settings).await?;
        let messages = consumer
            .stream()
            // Twice the batch in flight: the next batch arrives while the
            // current one commits.
            .max_messages_per_batch(batch_len_max * 2)
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await?;
        Ok(IntentPuller {
            messages: Box::pin(messages),
            batch_len_max,
            next_delivery: None,
            ended: false,
        })
    }

    /// The stream sequence of the first message of `sku` at or after
    /// `message_seq`, if any. Lets the processor prove a batch follows the
    /// applied sequence with no message of its subject in between.
    pub async fn first_message_from(
        &self,
        sku: &Sku,
        message_seq: u64,
    ) -> Result<Option<u64>, BusError> {
        Ok(self
            .next_message_from(sku, message_seq)
            .await?
            .map(|m| m.sequence))
    }

    /// Reads the first message of `sku` at or after `message_seq` directly
    /// from the stream (to fill a gap the consumer skipped): its stream
    /// sequence and its intents.
    pub async fn read_message_from(
        &self,
        sku: &Sku,
        message_seq: u64,
    ) -> Result<Option<(u64, Vec<PulledIntent>)>, BusError> {
        Ok(self
            .next_message_from(sku, message_seq)
            .await?
            .map(|m| (m.sequence, parse_intent_message(m.sequence, &m.payload))))
    }

    async fn next_message_from(
        &self,
        sku: &Sku,
        seq: u64,
    ) -> Result<Option<StreamMessage>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let found = stream
            .raw_message_builder()
            .sequence(seq)
            .next_by_subject(intent_subject(sku))
            .send()
            .await;
        match found {
            Ok(message) => Ok(Some(message)),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

fn describe_publish_error(kind: PublishErrorKind, err: &dyn std::fmt::Display) -> String {
    format!("{kind:?}: {err}")
}

/// Whether a batch can be trusted to hold every message of the subject
/// from the first one it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Consumer delivery sequences run on without a hole from the previous
    /// batch: nothing was delivered elsewhere or lost in flight.
    Contiguous,
    /// The first batch of a pull: nothing to compare its first message with.
    FirstOfPull,
    /// Delivery sequences jumped: some delivery went elsewhere (another
    /// puller) or was lost; the batch may have holes.
    Broken,
}

/// A batch as delivered, with what is needed to ack it.
pub struct IntentBatch {
    pub intents: Vec<PulledIntent>,
    pub continuity: Continuity,
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
        let Some(first) = self.messages.next().await else {
            self.ended = true;
            return Ok(false);
        };
        self.take(batch, first?)?;
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
        if self
            .next_delivery
            .is_some_and(|next| next != info.consumer_sequence)
        {
            batch.continuity = Continuity::Broken;
        }
        self.next_delivery = Some(info.consumer_sequence + 1);
        batch
            .intents
            .extend(parse_intent_message(info.stream_sequence, &message.payload));
        batch.messages.push(message);
        Ok(())
    }
}

impl Bus {
    /// Every intent of `sku` the stream still holds, in stream order (for
    /// audits; the processor's durable consumer is not touched). Read through
    /// a throwaway consumer; if that cannot be placed (a cluster missing a
    /// node can refuse), message by message from the stream instead.
    pub async fn read_all_intents(&self, sku: &Sku) -> Result<Vec<PulledIntent>, BusError> {
        match self.read_all_intents_by_consumer(sku).await {
            Ok(intents) => Ok(intents),
            Err(err) => {
                tracing::warn!(%sku, %err, "audit consumer failed; reading message by message");
                let mut intents = Vec::new();
                let mut from = 1;
                while let Some((message_seq, in_message)) =
                    self.read_message_from(sku, from).await?
                {
                    from = message_seq + 1;
                    intents.extend(in_message);
                }
                Ok(intents)
            }
        }
    }

    async fn read_all_intents_by_consumer(&self, sku: &Sku) -> Result<Vec<PulledIntent>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                description: Some(format!("dropline audit of {sku}")),
                filter_subject: intent_subject(sku),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create audit consumer: {e}"))?;
        let mut intents = Vec::new();
        loop {
            let mut fetched = consumer
                .fetch()
                .max_messages(1_000)
                .messages()
                .await
                .map_err(|e| format!("fetch for audit: {e}"))?;
            let before = intents.len();
            while let Some(message) = fetched.next().await {
                let message = message?;
                let seq = message.info()?.stream_sequence;
                intents.extend(parse_intent_message(seq, &message.payload));
            }
            if intents.len() == before {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        intents.sort_by_key(PulledIntent::seq);
        Ok(intents)
    }
}
