//! What the owner tells operators about its line, through the store: how
//! many intents wait, how long the oldest has waited, and how fast it
//! decides. Written at most once per interval while the line moves, and
//! once more when it falls quiet, so an idle partition writes nothing.
//!
//! Must not slow a batch: recording happens after the batch is acked, and a
//! failed write is only logged.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dropline_store::PartitionProgress;

/// The window decisions per second are counted over, and the least time
/// between two records.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Counts decisions between records and says when one is due.
#[derive(Debug)]
pub(crate) struct ProgressMeter {
    decided_in_window: u64,
    window_started: Instant,
    /// What was last recorded had intents waiting.
    recorded_waiting: bool,
}

impl ProgressMeter {
    pub fn new(now: Instant) -> Self {
        Self {
            decided_in_window: 0,
            window_started: now,
            // A new owner records once, whatever the last owner left there.
            recorded_waiting: true,
        }
    }

    pub fn decided(&mut self, count: usize) {
        self.decided_in_window += count as u64;
    }

    /// The progress to record now, if a record is due: the window is over
    /// while intents wait or decisions were made, or the line just emptied.
    pub fn due(
        &mut self,
        now: Instant,
        waiting_intents: u64,
        oldest_waiting_unix_ms: Option<i64>,
    ) -> Option<PartitionProgress> {
        let window = now.duration_since(self.window_started);
        let moving = waiting_intents > 0 || self.decided_in_window > 0;
        let emptied = waiting_intents == 0 && self.recorded_waiting;
        if !(emptied || (moving && window >= PROGRESS_INTERVAL)) {
            return None;
        }
        let progress = PartitionProgress {
            waiting_intents,
            oldest_waiting_at: oldest_waiting_unix_ms
                .filter(|_| waiting_intents > 0)
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            decisions_per_s: self.decided_in_window as f64 / window.as_secs_f64().max(1e-3),
            seen_at: Utc::now(),
        };
        self.decided_in_window = 0;
        self.window_started = now;
        self.recorded_waiting = waiting_intents > 0;
        Some(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_line_is_recorded_once_per_interval_and_once_when_it_empties() {
        let start = Instant::now();
        let mut meter = ProgressMeter::new(start);
        // The first look records (a new owner), then nothing for an interval.
        assert!(meter.due(start, 0, None).is_some());
        meter.decided(500);
        assert!(meter
            .due(start + Duration::from_millis(300), 40, Some(1))
            .is_none());
        meter.decided(500);
        let progress = meter
            .due(
                start + Duration::from_millis(1_000),
                40,
                Some(1_700_000_000_000),
            )
            .expect("a record after an interval");
        assert_eq!(progress.waiting_intents, 40);
        assert!((progress.decisions_per_s - 1_000.0).abs() < 1.0);
        assert!(progress.oldest_waiting_at.is_some());
        // Emptied: recorded at once, with no lag; then idle writes nothing.
        let empty = meter
            .due(start + Duration::from_millis(1_100), 0, None)
            .expect("a record when the line empties");
        assert_eq!((empty.waiting_intents, empty.oldest_waiting_at), (0, None));
        assert!(meter
            .due(start + Duration::from_secs(60), 0, None)
            .is_none());
    }
}
