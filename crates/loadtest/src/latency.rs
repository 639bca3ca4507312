//! Latency distributions: an HdrHistogram of milliseconds (3 significant
//! digits, 1 µs to 10 min), shared by the load-test report and the
//! comparison tables so both compute percentiles the same way.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded, in microseconds; longer values are clamped.
const LATENCY_US_MAX: u64 = 600_000_000;

pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("constant bounds within HdrHistogram's limits"),
        }
    }

    pub fn from_durations(durations: impl IntoIterator<Item = Duration>) -> Self {
        let mut latencies = Self::new();
        for d in durations {
            latencies.record(d);
        }
        latencies
    }

    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.histogram.saturating_record(us);
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The latency at `quantile` (0.0..=1.0) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1e3
    }

    pub fn max_ms(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.histogram.max() as f64 / 1e3
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let latencies = Latencies::from_durations((1..=100).map(Duration::from_millis));
        assert_eq!(latencies.len(), 100);
        assert!((latencies.quantile_ms(0.5) - 50.0).abs() < 0.1);
        assert!((latencies.quantile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((latencies.max_ms() - 100.0).abs() < 0.1);
        assert_eq!(Latencies::new().quantile_ms(0.5), 0.0);
    }
}
