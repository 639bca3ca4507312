//! Publishing purchases: those that arrive together for one SKU travel to
//! the broker as one message.
//!
//! In a drop, tens of thousands of purchases of one SKU arrive within a
//! second. One message each means one store, one PubAck and one delivery per
//! purchase, which cost the broker and the gateway more CPU than everything
//! else on the hot path. So each SKU has a lane: a task that sends every
//! purchase queued since its last send as one message, while up to
//! `publishes_in_flight_per_sku` earlier messages await their PubAck. There
//! is no timer: a lone purchase is sent at once, and a message grows only
//! while the broker is busy with the previous ones (group commit).
//!
//! A purchase is accepted when its message's PubAck is back, never earlier:
//! sharing a message with others must not weaken what acceptance promises.
//! Its place in line is the message's stream sequence and its slot. Must
//! not answer a purchase before that PubAck, nor retry one: a purchase
//! whose message got no PubAck hears `503` and its client retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dropline_bus::{Bus, IntentMessage, PublishError};
use dropline_core::wire::{intent_seq, IntentPayload};
use dropline_core::Sku;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

/// What a purchase gets back once accepted: its intent (handed over to the
/// lane, so it is never copied) and its place in line.
type Placed = Result<(IntentPayload, u64), PublishError>;

struct Queued {
    intent: IntentPayload,
    placed: oneshot::Sender<Placed>,
}

pub struct Publisher {
    bus: Bus,
    in_flight_per_sku: usize,
    lanes: Mutex<HashMap<Sku, mpsc::UnboundedSender<Queued>>>,
}

impl Publisher {
    pub fn new(bus: Bus, in_flight_per_sku: usize) -> Arc<Self> {
        Arc::new(Self {
            bus,
            in_flight_per_sku: in_flight_per_sku.max(1),
            lanes: Mutex::default(),
        })
    }

    /// Publishes `intent` of `sku` with whatever else is queued for it, and
    /// waits for the PubAck. Returns the intent and its place in line.
    pub async fn publish(&self, sku: &Sku, intent: IntentPayload) -> Placed {
        let (placed, answer) = oneshot::channel();
        self.enqueue(sku, Queued { intent, placed });
        // Only a lane task that panicked with the purchase in hand drops it.
        answer.await.unwrap_or_else(|_| {
            Err(PublishError::Unavailable(format!(
                "publisher lane of {sku} stopped"
            )))
        })
    }

    /// Hands `queued` to its SKU's lane, under the lock (no sender copied
    /// per purchase); starts the lane on the SKU's first purchase, or again
    /// if its task died.
    fn enqueue(&self, sku: &Sku, mut queued: Queued) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get(sku) {
            match lane.send(queued) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => queued = back,
            }
        }
        let (sender, queue) = mpsc::unbounded_channel();
        // The receiver is alive until the lane task ends: this send succeeds.
        let _ = sender.send(queued);
        tokio::spawn(run_lane(
            self.bus.clone(),
            sku.clone(),
            queue,
            self.in_flight_per_sku,
        ));
        lanes.insert(sku.clone(), sender);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sku, mpsc::UnboundedSender<Queued>>> {
        // Every change is a single insert or remove: a panic while holding
        // the lock cannot leave the map inconsistent.
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One SKU's lane: sends what is queued as one message whenever fewer than
/// `in_flight_max` messages await their PubAck, and answers each purchase
/// when its message's PubAck is back. Ends when the publisher is dropped;
/// until then an idle lane is one parked task per SKU this gateway has sold.
async fn run_lane(
    bus: Bus,
    sku: Sku,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    in_flight_max: usize,
) {
    let mut awaiting_ack = FuturesUnordered::new();
    loop {
        if awaiting_ack.len() >= in_flight_max {
            awaiting_ack.next().await;
            continue;
        }
        tokio::select! {
            Some(()) = awaiting_ack.next(), if !awaiting_ack.is_empty() => {}
            first = queue.recv() => {
                let Some(first) = first else { break };
                let (message, aboard) = gather(first, &mut queue);
                metrics::histogram!("dropline_gateway_intents_per_message")
                    .record(aboard.len() as f64);
                match bus.send_intents(&sku, message).await {
                    Ok(pending) => awaiting_ack.push(async move {
                        let accepted = pending.accepted().await;
                        if let Err(err) = &accepted {
                            tracing::warn!(purchases = aboard.len(), %err, "no PubAck for intents");
                        }
                        answer(aboard, |slot| accepted.clone().map(|seq| intent_seq(seq, slot)));
                    }),
                    Err(err) => {
                        tracing::warn!(%sku, purchases = aboard.len(), %err, "send intents");
                        answer(aboard, |_| Err(err.clone()));
                    }
                }
            }
        }
    }
    while awaiting_ack.next().await.is_some() {}
}

/// `first` and every purchase already queued after it, up to a full
/// message; each purchase's slot is its index.
fn gather(
    first: Queued,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
) -> (IntentMessage, Vec<Queued>) {
    let mut message = IntentMessage::default();
    let mut aboard = vec![first];
    message.push(&aboard[0].intent);
    while !message.is_full() {
        let Ok(next) = queue.try_recv() else { break };
        message.push(&next.intent);
        aboard.push(next);
    }
    (message, aboard)
}

fn answer(aboard: Vec<Queued>, outcome_of: impl Fn(usize) -> Result<u64, PublishError>) {
    for (slot, queued) in aboard.into_iter().enumerate() {
        let placed = outcome_of(slot).map(|seq| (queued.intent, seq));
        // A purchase whose client went away no longer listens; nothing to do.
        let _ = queued.placed.send(placed);
    }
}
