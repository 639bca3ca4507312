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
//! A drop of 200 sizes spreads the same crowd over 200 lanes, each with a
//! purchase or two waiting at a time: one message each would cost the
//! broker 20 times what one hot SKU's crowd costs. So the lanes also share
//! `publishes_in_flight_max` slots: a lane waits for a free one, and what
//! arrives for it meanwhile travels in the same message.
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
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

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
    /// A slot per message awaiting its PubAck, whatever its SKU.
    slots: Arc<Semaphore>,
    lanes: Mutex<HashMap<Sku, mpsc::UnboundedSender<Queued>>>,
}

impl Publisher {
    pub fn new(bus: Bus, in_flight_per_sku: usize, in_flight_max: usize) -> Arc<Self> {
        Arc::new(Self {
            bus,
            in_flight_per_sku: in_flight_per_sku.max(1),
            slots: Arc::new(Semaphore::new(in_flight_max.max(1))),
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
            Lane {
                bus: self.bus.clone(),
                sku: sku.clone(),
                in_flight_per_sku: self.in_flight_per_sku,
                slots: self.slots.clone(),
            },
            queue,
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

/// What a lane task needs: where and for which SKU it publishes, and how
/// many messages it and all lanes together may have awaiting PubAcks.
struct Lane {
    bus: Bus,
    sku: Sku,
    in_flight_per_sku: usize,
    slots: Arc<Semaphore>,
}

/// A message awaiting its PubAck, settled by being driven to the end.
type AwaitingAck = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One SKU's lane: sends what is queued as one message whenever fewer than
/// `in_flight_per_sku` of its messages await their PubAck and a slot is free,
/// and answers each purchase when its message's PubAck is back. Ends when
/// the publisher is dropped; until then an idle lane is one parked task per
/// SKU this gateway has sold.
async fn run_lane(lane: Lane, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut awaiting_ack = FuturesUnordered::<AwaitingAck>::new();
    loop {
        if awaiting_ack.len() >= lane.in_flight_per_sku {
            awaiting_ack.next().await;
            continue;
        }
        tokio::select! {
            Some(()) = awaiting_ack.next(), if !awaiting_ack.is_empty() => {}
            first = queue.recv() => {
                let Some(first) = first else { break };
                let slot = free_slot(&lane.slots, &mut awaiting_ack).await;
                // Gathered only now: what arrived while the lane waited rides along.
                let (message, aboard) = gather(first, &mut queue);
                let sent = send(&lane, message, aboard, slot).await;
                awaiting_ack.push(Box::pin(sent));
            }
        }
    }
    while awaiting_ack.next().await.is_some() {}
}

/// Waits for a free slot, settling this lane's PubAcks meanwhile (they give
/// slots back). `None` only if the slots were closed, which nothing does.
async fn free_slot(
    slots: &Arc<Semaphore>,
    awaiting_ack: &mut FuturesUnordered<AwaitingAck>,
) -> Option<OwnedSemaphorePermit> {
    // Made once, so the lane keeps its place in the slots' queue.
    let acquire = slots.clone().acquire_owned();
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            slot = &mut acquire => return slot.ok(),
            Some(()) = awaiting_ack.next(), if !awaiting_ack.is_empty() => {}
        }
    }
}

/// Sends `message`; the returned future awaits its PubAck, answers the
/// purchases aboard and then frees `slot`.
async fn send(
    lane: &Lane,
    message: IntentMessage,
    aboard: Vec<Queued>,
    slot: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    metrics::histogram!("dropline_gateway_intents_per_message").record(aboard.len() as f64);
    let sent = lane.bus.send_intents(&lane.sku, message).await;
    let sku = lane.sku.clone();
    async move {
        let accepted = match sent {
            Ok(pending) => pending.accepted().await,
            Err(err) => Err(err),
        };
        drop(slot);
        if let Err(err) = &accepted {
            tracing::warn!(%sku, purchases = aboard.len(), %err, "no PubAck for intents");
        }
        answer(aboard, |slot| {
            accepted.clone().map(|seq| intent_seq(seq, slot))
        });
    }
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
