//! Reading intents straight from the stream, outside any pull: the message
//! after a given sequence (to prove a batch complete or fill its gap) and
//! every intent of a SKU (for audits).
//!
//! Owns reads that leave the processor's consumer alone. Must not ack for,
//! replace or delete the processor's consumer, nor change the stream: an
//! audit or a gap check has to be safe while the SKU's owner is pulling.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use dropline_core::names::{line_subject, Lane, INTENTS_STREAM};
use dropline_core::wire::{parse_line_message, PulledEntry};
use dropline_core::Sku;
use futures::StreamExt;

use crate::{Bus, BusError};

/// Messages an audit fetches per request.
const AUDIT_FETCH_LEN_MAX: usize = 1_000;

/// How often an audit reads a SKU's line before it gives up, and the pause
/// between two reads.
const AUDIT_READ_ATTEMPTS: u32 = 3;
const AUDIT_READ_PAUSE: Duration = Duration::from_secs(2);

/// An audit consumer left behind (its reader died) is removed by the server
/// after this long.
const AUDIT_CONSUMER_INACTIVE_S: u64 = 60;

impl Bus {
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
    ) -> Result<Option<(u64, Vec<PulledEntry>)>, BusError> {
        Ok(self.next_message_from(sku, message_seq).await?.map(|m| {
            (
                m.sequence,
                parse_line_message(&m.subject, m.sequence, &m.payload),
            )
        }))
    }

    /// The stream sequence of the last message of `sku`'s line, if the
    /// stream holds any: a drain is done once the applied place in line is in
    /// it (and nothing newer comes).
    pub async fn last_message_seq(&self, sku: &Sku) -> Result<Option<u64>, BusError> {
        let mut last = None;
        for lane in Lane::ALL {
            last = last.max(self.last_message_seq_on(sku, lane).await?);
        }
        Ok(last)
    }

    /// The stream sequence of the last message on one lane of `sku`'s line.
    pub(crate) async fn last_message_seq_on(
        &self,
        sku: &Sku,
        lane: Lane,
    ) -> Result<Option<u64>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let found = stream
            .raw_message_builder()
            .last_by_subject(line_subject(sku, lane))
            .send()
            .await;
        match found {
            Ok(message) => Ok(Some(message.sequence)),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The first message of `sku`'s line at or after `seq`: the first of
    /// each lane's, asked lane by lane (nats-server 2.9 has no lookup by a
    /// wildcard subject that every later version answers alike).
    async fn next_message_from(
        &self,
        sku: &Sku,
        seq: u64,
    ) -> Result<Option<StreamMessage>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let mut first: Option<StreamMessage> = None;
        for lane in Lane::ALL {
            let found = stream
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(line_subject(sku, lane))
                .send()
                .await;
            match found {
                Ok(message) if first.as_ref().is_none_or(|f| message.sequence < f.sequence) => {
                    first = Some(message);
                }
                Ok(_) => {}
                Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(first)
    }

    /// Every intent of `sku` the stream still holds, in stream order (for
    /// audits; the processor's durable consumer is not touched). Read through
    /// a throwaway consumer; if that cannot be placed (a cluster missing a
    /// node can refuse), message by message from the stream instead.
    ///
    /// A cluster that just lost a node can time out requests while it
    /// elects new leaders, the more so on a busy machine: the whole read is
    /// tried again a few times before the audit gives up.
    pub async fn read_all_intents(&self, sku: &Sku) -> Result<Vec<PulledEntry>, BusError> {
        let mut attempt = 1;
        loop {
            match self.read_all_intents_once(sku).await {
                Err(err) if attempt < AUDIT_READ_ATTEMPTS => {
                    tracing::warn!(%sku, %err, attempt, "reading the line failed; trying again");
                    tokio::time::sleep(AUDIT_READ_PAUSE).await;
                    attempt += 1;
                }
                read => return read,
            }
        }
    }

    async fn read_all_intents_once(&self, sku: &Sku) -> Result<Vec<PulledEntry>, BusError> {
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

    /// Every entry of `sku`'s line through one throwaway consumer per lane
    /// (one filter each, which every server version honours), merged in
    /// line order.
    async fn read_all_intents_by_consumer(&self, sku: &Sku) -> Result<Vec<PulledEntry>, BusError> {
        let mut intents = Vec::new();
        for lane in Lane::ALL {
            intents.extend(self.read_lane_by_consumer(sku, lane).await?);
        }
        intents.sort_by_key(PulledEntry::seq);
        Ok(intents)
    }

    async fn read_lane_by_consumer(
        &self,
        sku: &Sku,
        lane: Lane,
    ) -> Result<Vec<PulledEntry>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                description: Some(format!("dropline audit of {sku}")),
                filter_subject: line_subject(sku, lane),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(AUDIT_CONSUMER_INACTIVE_S),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create audit consumer: {e}"))?;
        let mut intents = Vec::new();
        loop {
            let mut fetched = consumer
                .fetch()
                .max_messages(AUDIT_FETCH_LEN_MAX)
                .messages()
                .await
                .map_err(|e| format!("fetch for audit: {e}"))?;
            let before = intents.len();
            while let Some(message) = fetched.next().await {
                let message = message?;
                let seq = message.info()?.stream_sequence;
                intents.extend(parse_line_message(&message.subject, seq, &message.payload));
            }
            if intents.len() == before {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        Ok(intents)
    }
}
