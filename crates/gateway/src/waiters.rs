//! Requests waiting for a decision, and the one subscription that feeds them.
//!
//! A request registers BEFORE it publishes, so a decision that comes back
//! fast cannot slip past it. Registrations are removed when the request
//! stops waiting, answered or not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dropline_bus::DecisionFeed;
use dropline_core::{Decision, IdempotencyKey, Sku};
use tokio::sync::oneshot;

type WaitKey = (Sku, IdempotencyKey);
/// Each waiting request: its registration id and where to send the decision.
type Pending = HashMap<WaitKey, Vec<(u64, oneshot::Sender<Decision>)>>;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<Pending>,
    next_id: AtomicU64,
}

/// A registration; dropping it unregisters.
pub struct Ticket {
    waiters: Arc<Waiters>,
    key: WaitKey,
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
        let wait_key = (sku.clone(), key.clone());
        self.lock()
            .entry(wait_key.clone())
            .or_default()
            .push((id, sender));
        Ticket {
            waiters: self.clone(),
            key: wait_key,
            id,
            receiver: Some(receiver),
        }
    }

    /// Hands a decision to every request waiting for its key.
    pub fn deliver(&self, sku: &Sku, decision: &Decision) {
        let waiting = self.lock().remove(&(sku.clone(), decision.key.clone()));
        for (_, sender) in waiting.into_iter().flatten() {
            let _ = sender.send(decision.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
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
        if let Some(list) = pending.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                pending.remove(&self.key);
            }
        }
    }
}

/// Feeds decisions from the gateway's one subscription to waiting requests.
pub fn spawn_feed(mut feed: DecisionFeed, waiters: Arc<Waiters>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(batch) = feed.next().await {
            for decision in &batch.decisions {
                waiters.deliver(&batch.sku, decision);
            }
        }
        tracing::warn!("decision subscription ended; waiting requests fall back to the store");
    })
}
