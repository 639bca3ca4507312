//! The numbers the charts draw, derived from the burst's results and
//! bucketed so that the page stays small for any number of buyers.

use std::time::Duration;

use crate::burst::BurstResults;

/// Most histogram buckets wanted per latency chart; a "nice" bucket width
/// gives at most one more, well under 200 bars per series.
const HISTOGRAM_BUCKETS_TARGET: usize = 100;
/// Samples of the cumulative series over the time axis.
pub(super) const TIMELINE_POINTS: usize = 200;

/// Buyers per latency bucket: bucket `i` holds `[i·width, (i+1)·width)` ms.
#[derive(Debug, PartialEq)]
pub(super) struct Histogram {
    pub(super) width_ms: f64,
    pub(super) counts: Vec<u64>,
}

impl Histogram {
    #[cfg(test)]
    pub(super) fn non_empty(&self) -> usize {
        self.counts.iter().filter(|n| **n > 0).count()
    }

    pub(super) fn count_max(&self) -> u64 {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    pub(super) fn span_ms(&self) -> f64 {
        self.width_ms * self.counts.len() as f64
    }
}

/// A round bucket width (1, 2 or 5 × 10ⁿ ms) giving at most
/// `HISTOGRAM_BUCKETS_TARGET + 1` buckets up to `max_ms`.
pub(super) fn bucket_width_ms(max_ms: f64) -> f64 {
    nice_step(max_ms, HISTOGRAM_BUCKETS_TARGET)
}

pub(super) fn histogram(latencies_ms: &[f64], width_ms: f64, max_ms: f64) -> Histogram {
    let len = bucket_index(max_ms, width_ms) + 1;
    let mut counts = vec![0; len];
    for latency in latencies_ms {
        // Clamped: a value at exactly `max_ms` may round past the last bucket.
        let i = bucket_index(*latency, width_ms).min(len - 1);
        counts[i] += 1;
    }
    Histogram { width_ms, counts }
}

fn bucket_index(latency_ms: f64, width_ms: f64) -> usize {
    (latency_ms.max(0.0) / width_ms).floor() as usize
}

/// Cumulative counts sampled at `TIMELINE_POINTS` instants from the burst
/// to the last decision.
#[derive(Debug)]
pub(super) struct Timeline {
    pub(super) times_ms: Vec<f64>,
    /// Buyers with a definitive answer by then.
    pub(super) decided: Vec<u64>,
    /// Stock minus the units won by then; below zero only if oversold.
    pub(super) remaining: Vec<i64>,
}

/// Each win is one unit: buyers send no quantity, so the gateway applies
/// its default of 1. A win without an answer time cannot be placed on the
/// axis and is left out.
pub(super) fn timeline(results: &BurstResults, stock: u32) -> Timeline {
    let decided = sorted_ms(results.buyers.iter().filter_map(|b| b.decided_after));
    let won = sorted_ms(
        results
            .buyers
            .iter()
            .filter(|b| b.outcome.as_deref() == Some("won"))
            .filter_map(|b| b.decided_after),
    );
    // The wall time normally is the last decision; the max guards against
    // results where it is not, so the last sample counts every decision.
    let end_ms = decided.last().copied().unwrap_or(0.0).max(ms(results.wall));
    let times_ms: Vec<f64> = (0..TIMELINE_POINTS)
        .map(|i| end_ms * i as f64 / (TIMELINE_POINTS - 1) as f64)
        .collect();
    Timeline {
        decided: times_ms.iter().map(|t| count_up_to(&decided, *t)).collect(),
        remaining: times_ms
            .iter()
            .map(|t| i64::from(stock) - count_up_to(&won, *t) as i64)
            .collect(),
        times_ms,
    }
}

fn sorted_ms(durations: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut values: Vec<f64> = durations.map(ms).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// How many of the sorted values are at or before `t`.
fn count_up_to(sorted: &[f64], t: f64) -> u64 {
    sorted.partition_point(|v| *v <= t) as u64
}

pub(super) fn decided_count(results: &BurstResults) -> usize {
    results
        .buyers
        .iter()
        .filter(|b| b.decided_after.is_some())
        .count()
}

pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// 1, 2 or 5 × 10ⁿ: the smallest such step that covers `span` in at most
/// `steps_max` steps.
pub(super) fn nice_step(span: f64, steps_max: usize) -> f64 {
    if span.is_nan() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / steps_max.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}
