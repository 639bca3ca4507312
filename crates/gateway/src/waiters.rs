//! Requests waiting for a decision, and the one subscription that feeds them.
//!
//! A request registers BEFORE it publishes, so a decision that comes back
//! fast cannot slip past it. Registrations are removed when the request
//! stops waiting, answered or not. Must not be relied on for an answer: a
//! missed decision only delays, since a waiter falls back to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dropline_bus::DecisionFeed;
use dropline_core::{Decision, IdempotencyKey, Sku};
use tokio::sync::oneshot;

use crate::publisher::Publisher;

/// Each waiting request: its registration id and where to send the decision.
type Waiting = Vec<(u64, oneshot::Sender<Decision>)>;
/// By SKU, then key: a decision is looked up by reference, without copying
/// its SKU and key (50,000 lookups in a burst).
type Pending = HashMap<Sku, HashMap<IdempotencyKey, Waiting>>;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<Pending>,
    next_id: AtomicU64,
}

/// A registration; dropping it unregisters.
pub struct Ticket {
    waiters: Arc<Waiters>,
    sku: Sku,
    key: IdempotencyKey,
    id: u64,
    receiver: Option<oneshot::Receiver<Decision>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every change is a single insert or remove), so poisoning is moot.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(self: &Arc<Self>, sku: &Sku, key: &IdempotencyKey) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        let mut pending = self.lock();
        let by_key = match pending.get_mut(sku) {
            Some(by_key) => by_key,
            None => pending.entry(sku.clone()).or_default(),
        };
        by_key.entry(key.clone()).or_default().push((id, sender));
        Ticket {
            waiters: self.clone(),
            sku: sku.clone(),
            key: key.clone(),
            id,
            receiver: Some(receiver),
        }
    }

    /// Hands a decision to every request waiting for its key.
    pub fn deliver(&self, sku: &Sku, decision: Decision) {
        let waiting = self
            .lock()
            .get_mut(sku)
            .and_then(|by_key| by_key.remove(&decision.key));
        let Some(mut waiting) = waiting else { return };
        // Usually one request waits: it gets the decision itself, any
        // other (a double-click) a copy.
        let last = waiting.pop();
        for (_, sender) in waiting {
            let _ = sender.send(decision.clone());
        }
        if let Some((_, sender)) = last {
            let _ = sender.send(decision);
        }
    }

    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .flat_map(HashMap::values)
            .map(Vec::len)
            .sum()
    }
}

impl Ticket {
    /// Waits up to `timeout` for the decision.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> Option<Decision> {
        let receiver = self.receiver.as_mut()?;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(decision)) => Some(decision),
            _ => None,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pending = self.waiters.lock();
        let Some(by_key) = pending.get_mut(&self.sku) else {
            return;
        };
        if let Some(list) = by_key.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                by_key.remove(&self.key);
            }
        }
        // The SKU's map stays, empty: the next burst on it reuses it.
    }
}

/// Feeds decisions from the gateway's one subscription to waiting requests,
/// and where each batch left its line to the publisher's lanes.
pub fn spawn_feed(
    mut feed: DecisionFeed,
    waiters: Arc<Waiters>,
    publisher: Arc<Publisher>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(batch) = feed.next().await {
            if let Some(line) = batch.line {
                publisher.line_moved(&batch.sku, line);
            }
            for decision in batch.decisions {
                waiters.deliver(&batch.sku, decision);
            }
        }
        tracing::warn!("decision subscription ended; waiting requests fall back to the store");
    })
}
