//! What a processor tells Prometheus: its batches and decisions, its leases,
//! the partitions it owns against the drops that need an owner, and, per
//! SKU it owns, the remaining stock, the intents waiting and their lag.
//!
//! Names and label values live here; their HELP text and units are
//! described with the recorder, in one place (dropline's `telemetry`).
//! Must not decide or wait on anything: recording is a few atomic writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dropline_core::{BatchPlan, Outcome, Sku};
use metrics::Gauge;

/// Every outcome, in the order of [`outcome_index`].
const OUTCOMES: [Outcome; 4] = [
    Outcome::Won,
    Outcome::SoldOut,
    Outcome::LimitReached,
    Outcome::Closed,
];

/// An outcome's place in [`OUTCOMES`]: a match, so that a new outcome does
/// not compile until it has its counter.
fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Won => 0,
        Outcome::SoldOut => 1,
        Outcome::LimitReached => 2,
        Outcome::Closed => 3,
    }
}

/// How a partition's ownership changed on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseChange {
    /// Claimed with a new epoch.
    Claimed,
    /// Fenced, or the lease taken: another instance owns it now.
    Lost,
    /// Released on shutdown, to a less loaded instance, or after a halt.
    HandedBack,
    /// The partition loop failed; the lease is left to run out or be
    /// claimed again.
    Failed,
}

impl LeaseChange {
    const ALL: [LeaseChange; 4] = [
        LeaseChange::Claimed,
        LeaseChange::Lost,
        LeaseChange::HandedBack,
        LeaseChange::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            LeaseChange::Claimed => "claimed",
            LeaseChange::Lost => "lost",
            LeaseChange::HandedBack => "handed_back",
            LeaseChange::Failed => "failed",
        }
    }
}

/// Creates every counter of the processor at zero and both ownership
/// gauges, so that a scrape shows them before the first event: Prometheus's
/// `increase()` misses the first count of a series born with it (the
/// alert on halts would miss the first halt).
pub(crate) fn register() {
    for outcome in OUTCOMES {
        metrics::counter!("dropline_processor_decisions_total", "outcome" => outcome.as_str())
            .increment(0);
    }
    for change in LeaseChange::ALL {
        metrics::counter!("dropline_processor_lease_changes_total", "change" => change.label())
            .increment(0);
    }
    for name in [
        "dropline_processor_repeats_total",
        "dropline_processor_batches_total",
        "dropline_processor_halts_total",
        "dropline_processor_commit_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("dropline_processor_partitions_owned").increment(0.0);
    metrics::gauge!("dropline_processor_live_drops").increment(0.0);
}

/// A batch is committed: its decisions by outcome, its length (entries of
/// the line) and how long completing, deciding and committing it took.
pub(crate) fn batch_committed(plan: &BatchPlan, entries: usize, commit_time: Duration) {
    let mut by_outcome = [0u64; OUTCOMES.len()];
    for decision in &plan.decided {
        by_outcome[outcome_index(decision.outcome)] += 1;
    }
    for (outcome, count) in OUTCOMES.iter().zip(by_outcome) {
        if count > 0 {
            metrics::counter!("dropline_processor_decisions_total", "outcome" => outcome.as_str())
                .increment(count);
        }
    }
    metrics::counter!("dropline_processor_repeats_total").increment(plan.repeated.len() as u64);
    metrics::counter!("dropline_processor_batches_total").increment(1);
    metrics::histogram!("dropline_processor_batch_entries").record(entries as f64);
    metrics::histogram!("dropline_processor_commit_duration_seconds")
        .record(commit_time.as_secs_f64());
}

/// A claimed partition is ready to decide: its ledger loaded and its
/// consumer made, `took` after its lease was granted.
pub(crate) fn partition_ready(took: Duration) {
    metrics::histogram!("dropline_processor_claim_duration_seconds").record(took.as_secs_f64());
}

pub(crate) fn halted() {
    metrics::counter!("dropline_processor_halts_total").increment(1);
}

/// A batch's commit failed and will be retried.
pub(crate) fn commit_failed() {
    metrics::counter!("dropline_processor_commit_failures_total").increment(1);
}

pub(crate) fn lease_changed(change: LeaseChange) {
    metrics::counter!("dropline_processor_lease_changes_total", "change" => change.label())
        .increment(1);
}

/// Drops that need an owner now (open, or closed within the linger).
pub(crate) fn live_drops(count: usize) {
    metrics::gauge!("dropline_processor_live_drops").set(count as f64);
}

/// One partition counted as owned by this instance for as long as this
/// lives: counted on every path out of the work, early returns included.
pub(crate) struct Owned(());

impl Owned {
    pub fn claimed() -> Self {
        lease_changed(LeaseChange::Claimed);
        metrics::gauge!("dropline_processor_partitions_owned").increment(1.0);
        Self(())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        metrics::gauge!("dropline_processor_partitions_owned").decrement(1.0);
    }
}

/// The gauges of one SKU, set by its owner while it works the partition.
/// Dropped when the work ends, which releases the SKU's series: another
/// instance (or this one, later) reports it from then on.
pub(crate) struct SkuGauges {
    remaining: Gauge,
    waiting: Gauge,
    lag: Gauge,
}

impl SkuGauges {
    pub fn new(sku: &Sku) -> Self {
        let label = sku.as_str().to_string();
        Self {
            remaining: metrics::gauge!("dropline_processor_remaining_units", "sku" => label.clone()),
            waiting: metrics::gauge!("dropline_processor_waiting_intents", "sku" => label.clone()),
            lag: metrics::gauge!("dropline_processor_lag_seconds", "sku" => label),
        }
    }

    pub fn remaining(&self, units: u32) {
        self.remaining.set(f64::from(units));
    }

    /// What waits after a commit, and when the oldest of it was stored.
    pub fn progress(&self, waiting_intents: u64, oldest_stored_unix_ms: Option<i64>) {
        self.waiting.set(waiting_intents as f64);
        // Not known at this look: the last lag stands.
        if let Some(lag) = lag(waiting_intents, oldest_stored_unix_ms, SystemTime::now()) {
            self.lag.set(lag.as_secs_f64());
        }
    }
}

/// How long the oldest waiting intent has waited at `now`: nothing when
/// nothing waits; unknown when only the server holds what waits (not
/// delivered yet, so its age is not known here).
fn lag(
    waiting_intents: u64,
    oldest_stored_unix_ms: Option<i64>,
    now: SystemTime,
) -> Option<Duration> {
    if waiting_intents == 0 {
        return Some(Duration::ZERO);
    }
    let stored = UNIX_EPOCH + Duration::from_millis(u64::try_from(oldest_stored_unix_ms?).ok()?);
    // A clock behind the server's gives no lag, not a negative one.
    Some(now.duration_since(stored).unwrap_or_default())
}

impl Drop for SkuGauges {
    /// NaN is how a series is released: the `metrics` facade cannot remove
    /// one, and the exposition leaves NaN samples out (the gateway's
    /// `probes`, which renders every role's metrics).
    fn drop(&mut self) {
        for gauge in [&self.remaining, &self.waiting, &self.lag] {
            gauge.set(f64::NAN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_place_among_the_counters() {
        for (index, outcome) in OUTCOMES.into_iter().enumerate() {
            assert_eq!(outcome_index(outcome), index, "{outcome:?}");
        }
    }

    #[test]
    fn the_lag_is_the_oldest_waiting_intents_age_and_zero_when_none_waits() {
        let stored_ms = 1_700_000_000_000_i64;
        let now = UNIX_EPOCH + Duration::from_millis(stored_ms as u64 + 2_500);
        assert_eq!(lag(0, None, now), Some(Duration::ZERO));
        assert_eq!(
            lag(7, Some(stored_ms), now),
            Some(Duration::from_millis(2_500))
        );
        assert_eq!(lag(7, None, now), None, "only the server holds them");
        let later = Some(stored_ms + 60_000);
        assert_eq!(lag(7, later, now), Some(Duration::ZERO), "a clock behind");
    }
}
