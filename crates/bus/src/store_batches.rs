//! Storing the messages of intents that are ready at the same moment as one
//! atomic batch (nats-server 2.12 and later, on a stream that allows it).
//!
//! A server syncing before every PubAck (`sync_interval: always`) writes
//! and fsyncs each stored message on its own. A drop of 200 sizes sends
//! each size's purchases in their own messages, a few purchases each: in
//! `just load-test --skus 200 --stock 10 --buyers 20000`, 518 fsyncs where
//! one SKU of 2,000 needed 30 (`strace -c` of the server), and the burst
//! took 1.25× as long as against a server that does not sync. An atomic
//! batch of 32 messages costs the server about 4 fsyncs instead of 32
//! (measured on nats-server 2.15.1: 640 messages in batches of 32, 82
//! fsyncs). Each message keeps its SKU's own subject and gets its own
//! stream sequence: a batch is stored in one piece, in the order it was
//! sent, so the commit's PubAck (the sequence of the batch's last message)
//! gives every message its place in line.
//!
//! Group commit, no timer: while `BATCHES_IN_FLIGHT` batches await their
//! PubAck, what lanes hand over waits and goes in the next batch; a
//! message that finds the way clear goes at once, alone, as a plain
//! publish. All or nothing, as a single message is: if the batch is not
//! stored, every purchase of it hears `503` and its client retries.
//!
//! Must not decide what a message holds (the gateway's lanes do), nor
//! retry.

use std::sync::Arc;

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::publish::{describe_publish_error, PublishError};

/// Batches awaiting their PubAck at once: one being stored while the next
/// one gathers and travels.
const BATCHES_IN_FLIGHT: usize = 2;

/// Most messages in one batch: nats-server's default limit
/// (`jetstream.limits.batch.max_msgs`).
const BATCH_LEN_MAX: usize = 1_000;

/// The stream sequence a message was stored at, or why it was not.
pub(crate) type Stored = Result<u64, PublishError>;

/// Where the gateway's messages of intents go to be stored together.
#[derive(Debug)]
pub(crate) struct StoreBatches {
    queue: mpsc::UnboundedSender<Queued>,
}

#[derive(Debug)]
struct Queued {
    subject: String,
    body: Bytes,
    stored: oneshot::Sender<Stored>,
}

impl StoreBatches {
    /// Starts the batching task on `client`; it ends when this is dropped.
    pub(crate) fn start(client: async_nats::Client, js: jetstream::Context) -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(client, js, queued));
        Self { queue }
    }

    /// Queues one message; the answer is its stream sequence once stored.
    pub(crate) fn send(&self, subject: String, body: Bytes) -> oneshot::Receiver<Stored> {
        let (stored, answer) = oneshot::channel();
        // A closed queue drops `stored`: the receiver then reads as failed.
        let _ = self.queue.send(Queued {
            subject,
            body,
            stored,
        });
        answer
    }
}

impl crate::Bus {
    /// From now on, stores this instance's messages of intents in atomic
    /// batches, if the server and the stream take them; whether it does.
    /// Once on, it stays on for the life of the connection.
    pub async fn store_in_batches(&self) -> Result<bool, crate::BusError> {
        if !self.stream_allows_atomic_batches().await? {
            return Ok(false);
        }
        self.store_batches
            .get_or_init(|| StoreBatches::start(self.client.clone(), self.js.clone()));
        Ok(true)
    }
}

/// Takes whatever is queued once a batch may go, sends it, and hands its
/// PubAck to a task of its own, so the next batch gathers meanwhile.
async fn send_batches(
    client: async_nats::Client,
    js: jetstream::Context,
    mut queued: mpsc::UnboundedReceiver<Queued>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = queued.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while the batches in flight were stored.
        let mut batch = vec![first];
        while batch.len() < BATCH_LEN_MAX {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match send_batch(&client, &js, &mut batch).await {
            Ok(ack) => {
                tokio::spawn(async move {
                    let stored = ack.await.map(|ack| ack.sequence).map_err(|e| {
                        PublishError::Unavailable(describe_publish_error(e.kind(), &e))
                    });
                    answer(batch, stored);
                    drop(permit);
                });
            }
            Err(err) => answer(batch, Err(err)),
        }
    }
}

/// Sends `batch` (its bodies are taken): alone as a plain publish, or as an
/// atomic batch whose last message commits it. The future is the PubAck of
/// the batch's last message.
async fn send_batch(
    client: &async_nats::Client,
    js: &jetstream::Context,
    batch: &mut [Queued],
) -> Result<PublishAckFuture, PublishError> {
    let unavailable = |err: &dyn std::fmt::Display| PublishError::Unavailable(err.to_string());
    let Some((last, earlier)) = batch.split_last_mut() else {
        return Err(PublishError::Unavailable("an empty batch".into()));
    };
    let mut commit =
        jetstream::message::PublishMessage::build().payload(std::mem::take(&mut last.body));
    if !earlier.is_empty() {
        // Unique per batch: the server stages messages by this id.
        let inbox = client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        for (index, queued) in earlier.iter_mut().enumerate() {
            client
                .publish_with_headers(
                    queued.subject.clone(),
                    batch_headers(&id, index + 1),
                    std::mem::take(&mut queued.body),
                )
                .await
                .map_err(|e| unavailable(&e))?;
        }
        let mut headers = batch_headers(&id, earlier.len() + 1);
        headers.insert("Nats-Batch-Commit", "1");
        commit = commit.headers(headers);
    }
    js.send_publish(last.subject.clone(), commit)
        .await
        .map_err(|e| PublishError::Unavailable(describe_publish_error(e.kind(), &e)))
}

fn batch_headers(id: &str, sequence: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Batch-Id", id);
    headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
    headers
}

/// Tells every message of `batch` its stream sequence, from the last one's.
fn answer(batch: Vec<Queued>, last_stored: Stored) {
    let count = batch.len() as u64;
    for (index, queued) in (0_u64..).zip(batch) {
        let stored = last_stored
            .clone()
            .map(|last| sequence_in_batch(last, count, index));
        // A purchase that stopped waiting has nobody to tell.
        let _ = queued.stored.send(stored);
    }
}

/// The stream sequence of the `index`th (from 0) of `count` messages
/// stored in one piece, the last at `last`.
fn sequence_in_batch(last: u64, count: u64, index: u64) -> u64 {
    last + 1 + index - count
}

#[cfg(test)]
mod tests {
    use super::sequence_in_batch;

    #[test]
    fn a_batch_stored_in_one_piece_numbers_its_messages_in_order_up_to_the_last() {
        assert_eq!(sequence_in_batch(32, 32, 0), 1);
        assert_eq!(sequence_in_batch(32, 32, 31), 32);
        assert_eq!(sequence_in_batch(100, 3, 1), 99);
        assert_eq!(sequence_in_batch(7, 1, 0), 7);
    }
}
