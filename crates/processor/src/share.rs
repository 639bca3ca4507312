//! Spreading partitions over instances: each takes at most its fair share
//! and hands back what exceeds it. Only who does the work depends on this;
//! must not be relied on for correctness, which the fencing epoch provides.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct Share {
    /// Partitions this instance may own: live SKUs / live instances, rounded up.
    fair: AtomicUsize,
    /// Partitions this instance owns now.
    owned: AtomicUsize,
}

impl Share {
    pub fn new() -> Self {
        Self {
            // Until the first heartbeat says otherwise, take what is free.
            fair: AtomicUsize::new(usize::MAX),
            owned: AtomicUsize::new(0),
        }
    }

    pub fn set_fair(&self, live_skus: usize, live_instances: u64) {
        let instances = (live_instances as usize).max(1);
        self.fair
            .store(live_skus.div_ceil(instances).max(1), Ordering::Relaxed);
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
        share.set_fair(3, 2);
        assert!(
            share.should_yield(),
            "a second instance joined: one to hand back"
        );
        assert!(!share.should_yield(), "only the excess is handed back");
        share.give_back();
        assert!(share.try_take());
    }
}
