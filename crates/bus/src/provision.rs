//! Creating the intents stream and the per-SKU consumers, idempotently.
//!
//! Options that matter are named here rather than left to defaults. Runs on
//! nats-server 2.9 (one `filter_subject` per consumer, no subject
//! transforms) and gives a consumer a list of filters only where the server
//! has them. Must not pull or publish: this module only shapes the stream
//! and its consumers.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use dropline_core::names::{
    consumer_name, line_lanes_filter, line_subject, Lane, INTENTS_STREAM, INTENTS_SUBJECTS,
};
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
    /// Most consumers the stream takes: one per live SKU, plus audits.
    /// Explicit because nats-server 2.15 refuses a stream's 1,001st consumer
    /// when none is set ("maximum consumers limit reached", although the
    /// stream and the account both say unlimited): a thousand open drops
    /// were all it took.
    pub max_consumers: i32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_age_s: 7 * 24 * 3600,
            duplicate_window_s: 120,
            max_bytes: 8 * 1024 * 1024 * 1024,
            max_consumers: 100_000,
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
        self.provide_stream(settings, true).await
    }

    /// Creates the intents stream if missing, and leaves an existing one as
    /// it is: a gateway's credentials may create the stream, never change
    /// it (a changed age or size limit could discard what is accepted).
    pub async fn ensure_stream_exists(&self, settings: &StreamSettings) -> Result<(), BusError> {
        self.provide_stream(settings, false).await
    }

    async fn provide_stream(
        &self,
        settings: &StreamSettings,
        bring_up_to_date: bool,
    ) -> Result<(), BusError> {
        let config = stream::Config {
            name: INTENTS_STREAM.into(),
            description: Some("dropline's lines: each SKU's entries, one subject per lane".into()),
            subjects: INTENTS_SUBJECTS.map(String::from).to_vec(),
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
            max_consumers: settings.max_consumers,
            duplicate_window: Duration::from_secs(settings.duplicate_window_s),
            // A gateway's message of intents (see `IntentMessage`); anything
            // larger is not dropline's.
            max_message_size: MESSAGE_BYTES_MAX as i32,
            allow_direct: true,
            deny_delete: true,
            ..Default::default()
        };
        match self.js.get_stream(INTENTS_STREAM).await {
            Ok(_) if !bring_up_to_date => {}
            Ok(mut existing) => {
                let current = existing.info().await?.config.clone();
                if differs(&current, &config) {
                    self.update_stream(config, &current).await?;
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

    /// Brings the stream's settings from `current` to `config`; where the
    /// server refuses to change the consumer limit (nats-server 2.9 does),
    /// keeps the limit it has and brings the rest up to date, if anything
    /// else differs.
    async fn update_stream(
        &self,
        mut config: stream::Config,
        current: &stream::Config,
    ) -> Result<(), BusError> {
        let Err(err) = self.js.update_stream(&config).await else {
            return Ok(());
        };
        if config.max_consumers == current.max_consumers {
            return Err(err.into());
        }
        // Not a fault: 2.9 does not refuse the 1,001st consumer this
        // limit is for.
        tracing::info!(
            %err,
            kept = current.max_consumers,
            wanted = config.max_consumers,
            "the server keeps the stream's consumer limit as it is"
        );
        config.max_consumers = current.max_consumers;
        if differs(current, &config) {
            self.js.update_stream(&config).await?;
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
        let (filter_subject, filter_subjects) = self.line_filters(sku, applied_seq).await?;
        let config = pull::Config {
            durable_name: Some(name),
            description: Some(format!("dropline processor for {sku}")),
            filter_subject,
            filter_subjects,
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
            // The consumer's state (delivered, acked) lives in memory only.
            // On disk the server rewrote and fsynced it at every ack: a
            // burst over 200 SKUs cost about 3,600 renames and as many
            // fsyncs more than its 1,900 message writes (`strace -c`).
            // Nothing is lost with it: the applied place in line is the
            // database's, and every claim makes the consumer afresh from
            // there. A server restart loses it; the owner's pull then
            // fails and the partition is claimed again, as after any
            // failure.
            memory_storage: true,
            // One replica, whatever the stream's: for the same reason, a
            // replicated consumer buys nothing, and on a 3-node cluster
            // every one is a raft group of its own. 1,000 drops claimed
            // at once there made 1,000 groups; their creation timed out
            // and every claim was retried over and over. A consumer lost
            // with its node is made again by the next claim.
            num_replicas: 1,
            ..Default::default()
        };
        Ok(stream.create_consumer(config).await?)
    }
}

impl Bus {
    /// The filter of a consumer of `sku`'s whole line: every lane, and the
    /// subject of the line before lanes (a line written before an upgrade,
    /// or by a gateway not yet upgraded, is still decided, in order with
    /// what came after). nats-server 2.9 knows one filter only (and silently
    /// ignores a list): there the lanes, and a claim is refused while the
    /// old subject holds entries not yet decided; the upgrade order on 2.9
    /// (gateways first, README) keeps new entries off the old subject.
    async fn line_filters(
        &self,
        sku: &Sku,
        applied_seq: u64,
    ) -> Result<(String, Vec<String>), BusError> {
        let version = self.server_version().ok_or("not connected to NATS")?;
        if version.has_filter_lists() {
            let filters = vec![line_lanes_filter(sku), line_subject(sku, Lane::Legacy)];
            return Ok((String::new(), filters));
        }
        let legacy_last = self.last_message_seq_on(sku, Lane::Legacy).await?;
        if legacy_last.is_some_and(|last| last > message_seq(applied_seq)) {
            return Err(format!(
                "{sku}'s line holds entries on {} not yet decided, which nats-server 2.9 cannot \
                 deliver in order with its lanes: decide them with the previous dropline \
                 (`dropctl drain {sku}`), then upgrade",
                line_subject(sku, Lane::Legacy)
            )
            .into());
        }
        Ok((line_lanes_filter(sku), Vec::new()))
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

/// Whether the stream's settings that dropline owns differ between
/// `current` and `wanted`.
fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    current.subjects != wanted.subjects
        || current.num_replicas != wanted.num_replicas
        || current.max_age != wanted.max_age
        || current.duplicate_window != wanted.duplicate_window
        || current.max_bytes != wanted.max_bytes
        || current.max_message_size != wanted.max_message_size
        || current.max_consumers != wanted.max_consumers
}
