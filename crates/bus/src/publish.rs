//! Publishing intents (the gateway's side): hand a message of intents to
//! the broker, then learn from its PubAck, or from a lost connection, whether
//! it was accepted.
//!
//! Owns the moment of acceptance: an intent is accepted when its message's
//! PubAck is back, never earlier. Must not encode intents (that is
//! `dropline_core::wire`) nor retry on its own: a purchase that hears
//! `Unavailable` is retried by its client with the same key.

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use dropline_core::names::{line_subject, Lane};
use dropline_core::wire::{control_message, intent_seq, ControlPayload, IntentMessage};
use dropline_core::Sku;

use crate::Bus;

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
            .send_publish(line_subject(sku, Lane::Purchases), publish)
            .await
            .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e)))?;
        Ok(PendingAck {
            ack,
            connections_lost,
        })
    }
}

impl Bus {
    /// Puts an operator's action in `sku`'s line and waits for its PubAck;
    /// returns its place in line. After `Unavailable`, sending the same
    /// payload again (the same operation id) is safe: the line applies an
    /// operation id once.
    pub async fn send_control(
        &self,
        sku: &Sku,
        control: &ControlPayload,
    ) -> Result<u64, PublishError> {
        if !self.is_connected() {
            return Err(PublishError::Unavailable("not connected to NATS".into()));
        }
        let publish =
            jetstream::message::PublishMessage::build().payload(control_message(control).into());
        let ack = self
            .js
            .send_publish(line_subject(sku, Lane::Control), publish)
            .await
            .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e)))?;
        let message_seq = ack
            .await
            .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e)))?
            .sequence;
        Ok(intent_seq(message_seq, 0))
    }
}

fn describe_publish_error(kind: PublishErrorKind, err: &dyn std::fmt::Display) -> String {
    format!("{kind:?}: {err}")
}
