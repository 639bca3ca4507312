//! Creating the intents stream and the per-SKU consumers, idempotently.
//!
//! Options that matter are named here rather than left to defaults. Written
//! for nats-server 2.9: one `filter_subject` per consumer, no subject
//! transforms. Must not pull or publish: this module only shapes the stream
//! and its consumers.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use dropline_core::names::{consumer_name, intent_subject, INTENTS_STREAM, INTENTS_SUBJECTS};
use dropline_core::wire::{message_seq, MESSAGE_BYTES_MAX};
use dropline_core::Sku;

use crate::{Bus, BusError};

#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 1 on a single node; 3 in a cluster (see deploy/).
    pub replicas: usize,
    /// How long intents are kept after being decided, for audits and replays.
    pub max_age_s: u64,
    /// The server's duplicate window, for messages that carry a
    /// `Nats-Msg-Id`. dropline's carry none: a gateway's message holds many
    /// keys, and a key that comes again is answered by the processor with its
    /// recorded decision. Kept explicit so a stream's settings are all here.
    pub duplicate_window_s: u64,
    pub max_bytes: i64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_age_s: 7 * 24 * 3600,
            duplicate_window_s: 120,
            max_bytes: 8 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Unacked messages are redelivered after this long.
    pub ack_wait_ms: u64,
    /// Most messages delivered and not yet acked.
    pub ack_pending_max: i64,
    /// A consumer nobody pulled from for this long is removed by the server;
    /// the processor recreates it from the applied sequence.
    pub inactive_threshold_s: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            ack_wait_ms: 30_000,
            ack_pending_max: 20_000,
            inactive_threshold_s: 24 * 3600,
        }
    }
}

impl Bus {
    /// Creates the intents stream, or brings its settings up to date.
    pub async fn ensure_stream(&self, settings: &StreamSettings) -> Result<(), BusError> {
        let config = stream::Config {
            name: INTENTS_STREAM.into(),
            description: Some("dropline buy intents, one subject per SKU".into()),
            subjects: vec![INTENTS_SUBJECTS.into()],
            storage: StorageType::File,
            num_replicas: settings.replicas,
            // Limits, not WorkQueue: decided intents stay for audits
            // (`dropctl verify`) until they age out.
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: Duration::from_secs(settings.max_age_s),
            max_bytes: settings.max_bytes,
            max_messages: -1,
            max_messages_per_subject: -1,
            duplicate_window: Duration::from_secs(settings.duplicate_window_s),
            // A gateway's message of intents (see `IntentMessage`); anything
            // larger is not dropline's.
            max_message_size: MESSAGE_BYTES_MAX as i32,
            allow_direct: true,
            deny_delete: true,
            ..Default::default()
        };
        match self.js.get_stream(INTENTS_STREAM).await {
            Ok(mut existing) => {
                let current = existing.info().await?.config.clone();
                if current.num_replicas != config.num_replicas
                    || current.max_age != config.max_age
                    || current.duplicate_window != config.duplicate_window
                    || current.max_bytes != config.max_bytes
                    || current.max_message_size != config.max_message_size
                {
                    self.js.update_stream(&config).await?;
                }
            }
            Err(_) => {
                // Two instances starting together may both try; creating an
                // identical stream twice is accepted by the server.
                self.js.get_or_create_stream(config).await?;
            }
        }
        Ok(())
    }

    /// A fresh durable pull consumer for one SKU, starting right after the
    /// message holding `applied_seq` (a place in line): the consumer is a
    /// cursor for speed, the store's applied sequence is the truth.
    ///
    /// Fresh, not reused: an earlier owner (dead, or frozen and about to wake
    /// up) may still hold deliveries of the old consumer, pending until
    /// `ack_wait`. The old consumer would meanwhile hand this owner the
    /// messages after them, leaving a hole that in-order new deliveries
    /// cannot reveal. Replacing the consumer at each claim takes every
    /// earlier puller out of the picture: from then on, every message after
    /// the applied sequence goes to this owner.
    pub(crate) async fn fresh_consumer(
        &self,
        sku: &Sku,
        applied_seq: u64,
        settings: &ConsumerSettings,
    ) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        let name = consumer_name(sku);
        if let Err(err) = stream.delete_consumer(&name).await {
            // Missing is the usual case for a new drop; anything else means
            // the old consumer may live on, and must not be silently reused.
            let missing = matches!(
                err.kind(),
                ConsumerErrorKind::JetStream(ref e) if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND
            );
            if !missing {
                return Err(err.into());
            }
        }
        let config = pull::Config {
            durable_name: Some(name),
            description: Some(format!("dropline processor for {sku}")),
            filter_subject: intent_subject(sku),
            // A message is applied whole: the next one after the message
            // of the applied place in line.
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: message_seq(applied_seq) + 1,
            },
            // Acking a batch's last message acks the whole batch.
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_millis(settings.ack_wait_ms),
            max_deliver: -1,
            max_ack_pending: settings.ack_pending_max,
            replay_policy: ReplayPolicy::Instant,
            inactive_threshold: Duration::from_secs(settings.inactive_threshold_s),
            ..Default::default()
        };
        Ok(stream.create_consumer(config).await?)
    }
}

impl Bus {
    /// Messages of `sku` waiting to be decided: not yet delivered plus
    /// delivered and not yet acked. A message carries one or more intents
    /// (a gateway's batch), so this is a lower bound on the intents waiting;
    /// zero means nothing waits. `None` before the SKU's consumer exists.
    pub async fn queue_depth(&self, sku: &Sku) -> Result<Option<u64>, BusError> {
        let stream = self.js.get_stream_no_info(INTENTS_STREAM).await?;
        match stream.consumer_info(consumer_name(sku)).await {
            Ok(info) => Ok(Some(info.num_pending + info.num_ack_pending as u64)),
            Err(err) if err.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}
