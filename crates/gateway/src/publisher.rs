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
//! A lane also holds back what the units left cannot cover while its own
//! earlier purchases are undecided (`room.rs`): those it sends once the
//! line's answers free room, or hands back to the gate once the drop is
//! finally sold out, or sends anyway after `hold_max_ms`. Held, a purchase
//! keeps its place among this gateway's purchases of the SKU.
//!
//! A purchase is accepted when its message's PubAck is back, never earlier:
//! sharing a message with others must not weaken what acceptance promises.
//! Its place in line is the message's stream sequence and its slot. Must
//! not answer a purchase before that PubAck, nor retry one: a purchase
//! whose message got no PubAck hears `503` and its client retries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropline_bus::{Bus, IntentMessage, PublishError};
use dropline_core::wire::{intent_seq, IntentPayload, LineAfter};
use dropline_core::{Decision, IdempotencyKey, Sku};
use dropline_store::{Store, StoreError};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::admission::Admissions;
use crate::room::Room;
use crate::sell_out::SellOuts;
use crate::GatewayConfig;

/// How a purchase left its lane.
pub enum Sent {
    /// Accepted: its intent (handed over to the lane, so it is never
    /// copied) and its place in line.
    Placed(IntentPayload, u64),
    /// Held for want of room until the drop was finally sold out: the gate
    /// answers it, as it answers every purchase from then on; with the
    /// key's recorded decision when the line decided that key meanwhile (a
    /// retry, a double-click), which a repeat gets, `seq` and all.
    SoldOutMeanwhile(IntentPayload, Option<Decision>),
}

type Outcome = Result<Sent, PublishError>;

struct Queued {
    intent: IntentPayload,
    arrived: Instant,
    outcome: oneshot::Sender<Outcome>,
}

/// A SKU's lane as the publisher reaches it.
struct LaneHandle {
    queue: mpsc::UnboundedSender<Queued>,
    room: Arc<Room>,
}

pub struct Publisher {
    bus: Bus,
    store: Store,
    admissions: Arc<Admissions>,
    sell_outs: Arc<SellOuts>,
    in_flight_per_sku: usize,
    hold_max: Duration,
    /// A slot per message awaiting its PubAck, whatever its SKU.
    slots: Arc<Semaphore>,
    lanes: Mutex<HashMap<Sku, LaneHandle>>,
}

/// How a gateway's lanes publish: messages in flight per SKU and in all,
/// and the longest a purchase is held for want of room (zero: never).
pub struct PublishLimits {
    pub in_flight_per_sku: usize,
    pub in_flight_max: usize,
    pub hold_max: Duration,
}

impl PublishLimits {
    pub fn of(config: &GatewayConfig) -> Self {
        Self {
            in_flight_per_sku: config.publishes_in_flight_per_sku,
            in_flight_max: config.publishes_in_flight_max,
            hold_max: Duration::from_millis(config.hold_max_ms),
        }
    }
}

impl Publisher {
    /// `admissions` tells a new lane what is left; `sell_outs`, when what it
    /// holds is answered by the gate.
    pub fn new(
        bus: Bus,
        store: Store,
        admissions: Arc<Admissions>,
        sell_outs: Arc<SellOuts>,
        limits: PublishLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            bus,
            store,
            admissions,
            sell_outs,
            in_flight_per_sku: limits.in_flight_per_sku.max(1),
            hold_max: limits.hold_max,
            slots: Arc::new(Semaphore::new(limits.in_flight_max.max(1))),
            lanes: Mutex::default(),
        })
    }

    /// Publishes `intent` of `sku` with whatever else is queued for it, and
    /// waits for the PubAck, unless the lane hands it back to the gate.
    pub async fn publish(&self, sku: &Sku, intent: IntentPayload) -> Outcome {
        let (outcome, answer) = oneshot::channel();
        self.enqueue(
            sku,
            Queued {
                intent,
                arrived: Instant::now(),
                outcome,
            },
        );
        // Only a lane task that panicked with the purchase in hand drops it.
        answer.await.unwrap_or_else(|_| {
            Err(PublishError::Unavailable(format!(
                "publisher lane of {sku} stopped"
            )))
        })
    }

    /// A decision batch of `sku` left its line at `line`.
    pub fn line_moved(&self, sku: &Sku, line: LineAfter) {
        if let Some(room) = self.room(sku) {
            room.line_moved(line);
        }
    }

    /// Units of `sku` came back: its room is unknown until the next batch.
    pub fn restocked(&self, sku: &Sku) {
        if let Some(room) = self.room(sku) {
            room.forget_line();
        }
    }

    /// `sku` is finally sold out: its lane hands what it holds to the gate.
    pub fn sold_out(&self, sku: &Sku) {
        if let Some(room) = self.room(sku) {
            room.nudge();
        }
    }

    fn room(&self, sku: &Sku) -> Option<Arc<Room>> {
        self.lock().get(sku).map(|lane| lane.room.clone())
    }

    /// Hands `queued` to its SKU's lane, under the lock (no sender copied
    /// per purchase); starts the lane on the SKU's first purchase, or again
    /// if its task died.
    fn enqueue(&self, sku: &Sku, mut queued: Queued) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get(sku) {
            match lane.queue.send(queued) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => queued = back,
            }
        }
        let (sender, queue) = mpsc::unbounded_channel();
        // The receiver is alive until the lane task ends: this send succeeds.
        let _ = sender.send(queued);
        let room = Arc::new(Room::default());
        // A drop shown sold out may be back in stock (the view is a moment
        // old): no seed then, rather than hold a restock's first buyers.
        if let Some(remaining) = self.admissions.remaining(sku).filter(|left| *left > 0) {
            room.seed(remaining);
        }
        tokio::spawn(run_lane(
            Lane {
                bus: self.bus.clone(),
                store: self.store.clone(),
                sku: sku.clone(),
                sell_outs: self.sell_outs.clone(),
                room: room.clone(),
                in_flight_per_sku: self.in_flight_per_sku,
                hold_max: self.hold_max,
                slots: self.slots.clone(),
            },
            queue,
        ));
        lanes.insert(
            sku.clone(),
            LaneHandle {
                queue: sender,
                room,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sku, LaneHandle>> {
        // Every change is a single insert or remove: a panic while holding
        // the lock cannot leave the map inconsistent.
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a lane task needs: where and for which SKU it publishes, what the
/// gate knows of the drop, the room in its line, and how many messages it
/// and all lanes together may have awaiting PubAcks.
struct Lane {
    bus: Bus,
    store: Store,
    sku: Sku,
    sell_outs: Arc<SellOuts>,
    room: Arc<Room>,
    in_flight_per_sku: usize,
    hold_max: Duration,
    slots: Arc<Semaphore>,
}

impl Lane {
    /// Units that may go now; `None`: no limit (holding is off, the line
    /// has not said, the oldest held purchase waited `hold_max`, or the
    /// lane may not hold: the gateway is closing, or the store could not
    /// say which held keys it has). A hold that expired tells the room.
    fn room_for(&self, held: &VecDeque<Queued>, may_hold: bool) -> Option<u64> {
        let waited_too_long = held
            .front()
            .is_some_and(|oldest| oldest.arrived.elapsed() >= self.hold_max);
        if waited_too_long {
            self.room.hold_expired();
        }
        if !may_hold || waited_too_long || self.hold_max.is_zero() {
            return None;
        }
        self.room.free_units()
    }
}

/// A message awaiting its PubAck, settled by being driven to the end.
type AwaitingAck = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One SKU's lane: sends what is held as one message whenever fewer than
/// `in_flight_per_sku` of its messages await their PubAck, a slot is free
/// and the room allows, and answers each purchase when its message's PubAck
/// is back. Ends when the publisher is dropped; until then an idle lane is
/// one parked task per SKU this gateway has sold.
async fn run_lane(lane: Lane, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut awaiting_ack = FuturesUnordered::<AwaitingAck>::new();
    let mut held = VecDeque::new();
    let mut open = true;
    // The store did not say which held keys it has: the line answers them.
    let mut unlooked = false;
    while open || !held.is_empty() {
        if !held.is_empty() && !unlooked && lane.sell_outs.is_sold_out(&lane.sku) {
            take_arrivals(&mut queue, &mut held);
            if let Err(err) = hand_back(&lane, &mut held, &mut awaiting_ack).await {
                tracing::warn!(sku = %lane.sku, %err, "read the held keys' decisions; the line answers them");
                unlooked = true;
            }
            continue;
        }
        let room = lane.room_for(&held, open && !unlooked);
        if !held.is_empty() && awaiting_ack.len() < lane.in_flight_per_sku && room != Some(0) {
            let slot = free_slot(&lane.slots, &mut awaiting_ack).await;
            // Taken only now: what arrived while the lane waited rides along,
            // as far as the room allows now (other gateways' purchases
            // may have taken units meanwhile).
            take_arrivals(&mut queue, &mut held);
            let room = lane.room_for(&held, open && !unlooked);
            if room == Some(0) {
                continue;
            }
            unlooked = false;
            let (message, aboard) = gather(&mut held, room);
            let sent = send(&lane, message, aboard, slot).await;
            awaiting_ack.push(Box::pin(sent));
            continue;
        }
        let held_since = held.front().map(|oldest| oldest.arrived);
        let shut = room == Some(0) && held_since.is_some();
        // With purchases held, those arriving wait in the queue and are
        // taken when the lane sends or hands back: a purchase of a hot SKU
        // does not wake the lane once each.
        tokio::select! {
            Some(()) = awaiting_ack.next(), if !awaiting_ack.is_empty() => {}
            next = queue.recv(), if open && held.is_empty() => match next {
                Some(next) => held.push_back(next),
                None => open = false,
            },
            () = lane.room.changed(), if shut => {}
            () = tokio::time::sleep_until(held_since.unwrap_or_else(Instant::now) + lane.hold_max), if shut => {}
        }
    }
    while awaiting_ack.next().await.is_some() {}
}

/// Moves what waits in the lane's queue behind what it holds.
fn take_arrivals(queue: &mut mpsc::UnboundedReceiver<Queued>, held: &mut VecDeque<Queued>) {
    while let Ok(next) = queue.try_recv() {
        held.push_back(next);
    }
}

/// Hands every held purchase back to the gate, which answers it now, each
/// with its key's recorded decision if the line has one: one store read for
/// them all, this lane's PubAcks settled meanwhile. On `Err` they stay held.
///
/// No read when the sell-out carried every decision the line recorded
/// until then: the gate answers each key from it (a drop of 200 sizes
/// paid a read per size here). A key whose other copy was still in line
/// at the sell-out is decided `sold_out` after it, as a read a moment
/// earlier would have missed too: it gets the gate's `sold_out`, as any
/// purchase arriving after the sell-out does.
async fn hand_back(
    lane: &Lane,
    held: &mut VecDeque<Queued>,
    awaiting_ack: &mut FuturesUnordered<AwaitingAck>,
) -> Result<(), StoreError> {
    if lane.sell_outs.knows_every_decision(&lane.sku) {
        for queued in held.drain(..) {
            let _ = queued
                .outcome
                .send(Ok(Sent::SoldOutMeanwhile(queued.intent, None)));
        }
        return Ok(());
    }
    let keys: Vec<&str> = held
        .iter()
        .map(|queued| queued.intent.key.as_str())
        .collect();
    let read = lane.store.purchases_of_keys(&lane.sku, &keys);
    let recorded: HashMap<IdempotencyKey, Decision> = while_settling(awaiting_ack, read)
        .await?
        .into_iter()
        .map(|decision| (decision.key.clone(), decision))
        .collect();
    for queued in held.drain(..) {
        let decision = recorded.get(&queued.intent.key).cloned();
        let _ = queued
            .outcome
            .send(Ok(Sent::SoldOutMeanwhile(queued.intent, decision)));
    }
    Ok(())
}

/// Awaits `work`, settling this lane's PubAcks meanwhile (each answers its
/// purchases and gives its slot back).
async fn while_settling<T>(
    awaiting_ack: &mut FuturesUnordered<AwaitingAck>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            Some(()) = awaiting_ack.next(), if !awaiting_ack.is_empty() => {}
        }
    }
}

/// Waits for a free slot, settling this lane's PubAcks meanwhile (they give
/// slots back). `None` only if the slots were closed, which nothing does.
async fn free_slot(
    slots: &Arc<Semaphore>,
    awaiting_ack: &mut FuturesUnordered<AwaitingAck>,
) -> Option<OwnedSemaphorePermit> {
    while_settling(awaiting_ack, slots.clone().acquire_owned())
        .await
        .ok()
}

/// Sends `message`; the returned future awaits its PubAck, answers the
/// purchases aboard, places them in the room and then frees `slot`.
async fn send(
    lane: &Lane,
    message: IntentMessage,
    aboard: Vec<Queued>,
    slot: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    metrics::histogram!("dropline_gateway_intents_per_message").record(aboard.len() as f64);
    let units = aboard
        .iter()
        .map(|q| u64::from(q.intent.quantity.get()))
        .sum();
    let in_room = lane.room.sending(units);
    let sent = lane.bus.send_intents(&lane.sku, message).await;
    let (sku, room) = (lane.sku.clone(), lane.room.clone());
    async move {
        let accepted = match sent {
            Ok(pending) => pending.accepted().await,
            Err(err) => Err(err),
        };
        drop(slot);
        match &accepted {
            Ok(seq) => room.placed(in_room, intent_seq(*seq, aboard.len() - 1)),
            Err(err) => {
                room.not_sent(in_room);
                tracing::warn!(%sku, purchases = aboard.len(), %err, "no PubAck for intents");
            }
        }
        answer(aboard, |slot| {
            accepted.clone().map(|seq| intent_seq(seq, slot))
        });
    }
}

/// The oldest held purchase and those after it, up to a full message or,
/// when `room` is given, until their units fill it; each purchase's slot is
/// its index.
fn gather(held: &mut VecDeque<Queued>, room: Option<u64>) -> (IntentMessage, Vec<Queued>) {
    let mut message = IntentMessage::default();
    let mut aboard: Vec<Queued> = Vec::new();
    let mut units = 0u64;
    while !message.is_full() && room.is_none_or(|room| units < room || aboard.is_empty()) {
        let Some(next) = held.pop_front() else { break };
        units += u64::from(next.intent.quantity.get());
        message.push(&next.intent);
        aboard.push(next);
    }
    (message, aboard)
}

fn answer(aboard: Vec<Queued>, outcome_of: impl Fn(usize) -> Result<u64, PublishError>) {
    for (slot, queued) in aboard.into_iter().enumerate() {
        let outcome = outcome_of(slot).map(|seq| Sent::Placed(queued.intent, seq));
        // A purchase whose client went away no longer listens; nothing to do.
        let _ = queued.outcome.send(outcome);
    }
}
