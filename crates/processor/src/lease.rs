//! Keeps the leases of every partition an instance holds alive, all in one
//! statement per renewal, and tells each partition when its lease is lost.
//!
//! One statement per instance instead of one per partition: with a
//! thousand open drops the per-partition renewals were a steady stream of
//! `UPDATE`s doing nothing but saying "still here".
//!
//! Must not decide who works a partition beyond that: the lease only keeps
//! instances from getting in each other's way; correctness rests on the
//! fencing epoch every commit checks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropline_core::Sku;
use dropline_store::Store;
use tokio::sync::watch;

/// The leases an instance holds, by partition.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<Sku, Held>>,
}

#[derive(Debug)]
struct Held {
    epoch: u64,
    /// Turns `true` when the partition has moved to another epoch.
    lost: watch::Sender<bool>,
}

/// A partition's place among the leases renewed; leaving it (dropping
/// this) stops its renewal.
pub(crate) struct LeaseHeld {
    leases: Arc<Leases>,
    sku: Sku,
    epoch: u64,
}

impl Drop for LeaseHeld {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        // A later claim of the same partition may have taken its place.
        if held.get(&self.sku).is_some_and(|h| h.epoch == self.epoch) {
            held.remove(&self.sku);
        }
    }
}

impl Leases {
    /// Renews `sku`'s lease at `epoch` from now on, until the returned
    /// guard is dropped. The receiver turns `true` when the lease is lost.
    pub fn hold(self: &Arc<Self>, sku: &Sku, epoch: u64) -> (watch::Receiver<bool>, LeaseHeld) {
        let (lost, lost_rx) = watch::channel(false);
        self.lock().insert(sku.clone(), Held { epoch, lost });
        let guard = LeaseHeld {
            leases: self.clone(),
            sku: sku.clone(),
            epoch,
        };
        (lost_rx, guard)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sku, Held>> {
        // A panic while holding the map leaves nothing half done in it.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What to renew now: every partition held, at its epoch.
    fn snapshot(&self) -> Vec<(Sku, u64)> {
        self.lock()
            .iter()
            .map(|(sku, held)| (sku.clone(), held.epoch))
            .collect()
    }

    /// Tells the partitions in `asked` that `renewed` leaves out that their
    /// lease is lost, and forgets them.
    fn settle(&self, asked: &[(Sku, u64)], renewed: &[Sku]) {
        // A set: an instance may hold a thousand partitions.
        let renewed: HashSet<&Sku> = renewed.iter().collect();
        let mut held = self.lock();
        for (sku, epoch) in asked {
            if renewed.contains(sku) {
                continue;
            }
            if held.get(sku).is_some_and(|h| h.epoch == *epoch) {
                tracing::warn!(%sku, epoch, "lease lost: the partition moved on");
                if let Some(lost) = held.remove(sku) {
                    let _ = lost.lost.send(true);
                }
            }
        }
    }
}

/// Renews every lease `leases` holds every third of `lease_ms`, in one
/// statement, until the task is aborted.
pub(crate) fn renew_all(
    leases: Arc<Leases>,
    store: Store,
    owner: String,
    lease_ms: u64,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_millis((lease_ms / 3).max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let asked = leases.snapshot();
            if asked.is_empty() {
                continue;
            }
            match store.renew_partitions(&owner, &asked, lease_ms).await {
                Ok(renewed) => leases.settle(&asked, &renewed),
                // A failed renewal is not a lost lease; the epoch check in
                // every commit is what keeps a late owner out.
                Err(err) => tracing::warn!(%err, partitions = asked.len(), "renew leases"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(name: &str) -> Sku {
        Sku::parse(name.to_string()).expect("a SKU")
    }

    #[test]
    fn a_lease_left_out_of_a_renewal_is_lost_and_only_that_one() {
        let leases = Arc::new(Leases::default());
        let (a_lost, _a) = leases.hold(&sku("a"), 3);
        let (b_lost, _b) = leases.hold(&sku("b"), 7);
        let asked = leases.snapshot();
        assert_eq!(asked.len(), 2);
        leases.settle(&asked, &[sku("a")]);
        assert!(!*a_lost.borrow(), "a was renewed");
        assert!(*b_lost.borrow(), "b was not: it moved on");
        assert_eq!(
            leases.snapshot(),
            vec![(sku("a"), 3)],
            "b is no longer renewed"
        );
    }

    #[test]
    fn leaving_a_partition_stops_its_renewal_but_not_a_newer_claim_of_it() {
        let leases = Arc::new(Leases::default());
        let (_, old) = leases.hold(&sku("a"), 1);
        let (new_lost, _new) = leases.hold(&sku("a"), 2);
        drop(old);
        assert_eq!(leases.snapshot(), vec![(sku("a"), 2)]);
        // A renewal asked before the new claim does not fail the new one.
        leases.settle(&[(sku("a"), 1)], &[]);
        assert!(!*new_lost.borrow());
        assert_eq!(leases.snapshot(), vec![(sku("a"), 2)]);
    }
}
