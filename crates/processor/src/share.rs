//! Spreading partitions over instances: each takes at most its fair share
//! and hands back what exceeds it. Only who does the work depends on this;
//! must not be relied on for correctness, which the fencing epoch provides.
//!
//! Partitions learn that they are in excess when it happens, not by each
//! looking on a timer: with 1,000 idle partitions, a check per partition
//! every few seconds was 300 wakeups a second for nothing (`bench --only
//! idle`).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub(crate) struct Share {
    /// Partitions this instance may own: live SKUs / live instances, rounded up.
    fair: AtomicUsize,
    /// Partitions this instance owns now.
    owned: AtomicUsize,
    /// Bumped whenever the instance owns more than its share, to wake the
    /// partitions so that as many as are in excess hand theirs back.
    excess: watch::Sender<u64>,
}

impl Share {
    pub fn new() -> Self {
        Self {
            // Until the first heartbeat says otherwise, take what is free.
            fair: AtomicUsize::new(usize::MAX),
            owned: AtomicUsize::new(0),
            excess: watch::Sender::new(0),
        }
    }

    /// Sets the fair share and, while this instance owns more than it,
    /// wakes the partitions (again at each call until enough have yielded).
    pub fn set_fair(&self, live_skus: usize, live_instances: usize) {
        let instances = live_instances.max(1);
        let fair = live_skus.div_ceil(instances).max(1);
        self.fair.store(fair, Ordering::Relaxed);
        if self.owned.load(Ordering::Acquire) > fair {
            self.excess.send_modify(|generation| *generation += 1);
        }
    }

    /// Changes whenever partitions should check [`Self::should_yield`].
    pub fn excess_signal(&self) -> watch::Receiver<u64> {
        self.excess.subscribe()
    }

    /// Partitions this instance may still claim: its fair share less what
    /// it owns.
    pub fn free_slots(&self) -> usize {
        let fair = self.fair.load(Ordering::Relaxed);
        fair.saturating_sub(self.owned.load(Ordering::Acquire))
    }

    /// Counts `claimed` partitions as owned. Only the supervisor claims
    /// several at once, so nothing else adds between its [`Self::free_slots`]
    /// and this; what tasks give back meanwhile only leaves more room.
    pub fn took(&self, claimed: usize) {
        self.owned.fetch_add(claimed, Ordering::AcqRel);
    }

    /// Reserves a slot before claiming; `false` when at the fair share.
    pub fn try_take(&self) -> bool {
        let fair = self.fair.load(Ordering::Relaxed);
        self.owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < fair).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back (claim failed, partition released or lost).
    pub fn give_back(&self) {
        let _ = self
            .owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// True, and the slot given back, when this instance owns more than its
    /// share: the caller then hands its partition back. Only as many callers
    /// as there are partitions in excess get `true`.
    pub fn should_yield(&self) -> bool {
        let fair = self.fair.load(Ordering::Relaxed);
        self.owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > fair).then(|| n - 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Share;

    #[test]
    fn an_instance_takes_its_fair_share_and_yields_the_excess() {
        let share = Share::new();
        share.set_fair(3, 1);
        assert!(share.try_take() && share.try_take() && share.try_take());
        assert!(!share.try_take(), "three SKUs, one instance: three at most");
        assert_eq!(share.free_slots(), 0);
        let mut excess = share.excess_signal();
        share.set_fair(3, 2);
        assert!(
            excess.has_changed().expect("the share lives"),
            "the partitions are woken"
        );
        excess.mark_unchanged();
        assert!(
            share.should_yield(),
            "a second instance joined: one to hand back"
        );
        assert!(!share.should_yield(), "only the excess is handed back");
        share.set_fair(3, 2);
        assert!(
            !excess.has_changed().expect("the share lives"),
            "at the share, nobody is woken"
        );
        share.give_back();
        assert!(share.try_take());
    }

    #[test]
    fn the_supervisor_claims_what_the_share_leaves_free() {
        let share = Share::new();
        share.set_fair(10, 2);
        assert_eq!(share.free_slots(), 5);
        share.took(3);
        assert_eq!(share.free_slots(), 2);
        share.give_back();
        assert_eq!(
            share.free_slots(),
            3,
            "a partition handed back frees its slot"
        );
        share.set_fair(10, 5);
        assert_eq!(share.free_slots(), 0, "over the share: nothing to claim");
    }
}
