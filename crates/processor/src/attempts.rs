//! What one attempt to own a partition means for the next: stop, or wait
//! how long, and whether to say that the partition moved to another
//! instance.
//!
//! Pure, so the rules are tested without a database or a broker. Must not
//! claim, work or log anything itself: `partition` does, and follows what
//! this module returns.

use std::time::Duration;

use crate::work::Exit;
use crate::ProcessorConfig;

/// How one attempt to own the partition ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Claimed and worked until the work ended this way.
    Worked(Exit),
    /// Claimed, then the partition loop failed (pull ended, store or bus
    /// errors it could not ride out).
    WorkFailed,
    /// Another instance holds a live lease.
    HeldElsewhere,
    /// The claim itself failed (the store did not answer).
    ClaimFailed,
}

/// What to do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Shutdown: the partition was handed back; stop trying.
    Stop,
    /// Try again after this pause.
    RetryAfter(Duration),
    /// The partition this instance lost is held by another now: say so, let
    /// it go, and look again after this pause.
    LetGoAndRetryAfter(Duration),
}

/// What an instance remembers between its attempts on one partition.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Failures in a row (claims or partition loops), for the backoff.
    failures: u32,
    /// The partition was lost (fenced, or its lease taken) and nobody has
    /// been seen holding it since: the first look that finds it held
    /// elsewhere says it moved, and only that one.
    just_lost: bool,
}

impl Attempts {
    pub fn after(&mut self, attempt: Attempt, config: &ProcessorConfig) -> Next {
        let half_lease = Duration::from_millis(config.lease_ms / 2);
        if matches!(attempt, Attempt::Worked(_) | Attempt::WorkFailed) {
            // Claimed again: whatever was lost before is ours once more.
            self.just_lost = false;
        }
        match attempt {
            Attempt::Worked(Exit::Stopped) => Next::Stop,
            // Leave the partition to the less loaded instance for a lease.
            Attempt::Worked(Exit::Yielded) => {
                Next::RetryAfter(Duration::from_millis(config.lease_ms))
            }
            // Loud, and not soon: only an upgrade of the processors helps.
            Attempt::Worked(Exit::Halted) => {
                self.failures = 0;
                Next::RetryAfter(Duration::from_millis(config.halted_retry_ms))
            }
            Attempt::Worked(Exit::Fenced) => {
                self.failures = 0;
                self.just_lost = true;
                Next::RetryAfter(half_lease)
            }
            Attempt::HeldElsewhere if std::mem::take(&mut self.just_lost) => {
                Next::LetGoAndRetryAfter(half_lease)
            }
            Attempt::HeldElsewhere => Next::RetryAfter(half_lease),
            Attempt::WorkFailed | Attempt::ClaimFailed => {
                self.failures += 1;
                Next::RetryAfter(config.retry_backoff(self.failures))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProcessorConfig {
        ProcessorConfig {
            lease_ms: 1_000,
            retry_backoff_max_ms: 400,
            ..ProcessorConfig::default()
        }
    }

    const HALF_LEASE: Duration = Duration::from_millis(500);

    /// What `after` answers to each attempt in turn, from a fresh start.
    fn answers(attempts: Vec<Attempt>) -> Vec<Next> {
        let config = config();
        let mut state = Attempts::default();
        attempts
            .into_iter()
            .map(|attempt| state.after(attempt, &config))
            .collect()
    }

    #[test]
    fn a_fenced_partition_found_held_elsewhere_is_said_to_have_moved_once() {
        assert_eq!(
            answers(vec![
                Attempt::Worked(Exit::Fenced),
                Attempt::HeldElsewhere,
                Attempt::HeldElsewhere,
            ]),
            vec![
                Next::RetryAfter(HALF_LEASE),
                Next::LetGoAndRetryAfter(HALF_LEASE),
                Next::RetryAfter(HALF_LEASE),
            ]
        );
    }

    #[test]
    fn a_partition_never_owned_found_held_elsewhere_is_left_quietly() {
        assert_eq!(
            answers(vec![Attempt::HeldElsewhere, Attempt::HeldElsewhere]),
            vec![Next::RetryAfter(HALF_LEASE), Next::RetryAfter(HALF_LEASE)]
        );
    }

    /// What `after` answers to the last of `attempts`.
    fn last_answer(attempts: Vec<Attempt>) -> Option<Next> {
        answers(attempts).pop()
    }

    #[test]
    fn a_partition_handed_back_or_reclaimed_since_the_loss_is_left_quietly() {
        use Attempt::*;
        let quiet = Some(Next::RetryAfter(HALF_LEASE));
        assert_eq!(
            last_answer(vec![Worked(Exit::Yielded), HeldElsewhere]),
            quiet
        );
        assert_eq!(
            last_answer(vec![Worked(Exit::Fenced), WorkFailed, HeldElsewhere]),
            quiet
        );
    }

    #[test]
    fn a_failed_claim_after_the_loss_does_not_swallow_the_warning() {
        use Attempt::*;
        assert_eq!(
            last_answer(vec![Worked(Exit::Fenced), ClaimFailed, HeldElsewhere]),
            Some(Next::LetGoAndRetryAfter(HALF_LEASE))
        );
    }

    #[test]
    fn failures_back_off_longer_up_to_the_limit_until_a_fence_resets_them() {
        let ms = Duration::from_millis;
        assert_eq!(
            answers(vec![
                Attempt::ClaimFailed,
                Attempt::WorkFailed,
                Attempt::ClaimFailed,
                Attempt::ClaimFailed,
                Attempt::Worked(Exit::Fenced),
                Attempt::ClaimFailed,
            ]),
            vec![
                Next::RetryAfter(ms(100)),
                Next::RetryAfter(ms(200)),
                Next::RetryAfter(ms(400)),
                Next::RetryAfter(ms(400)),
                Next::RetryAfter(HALF_LEASE),
                Next::RetryAfter(ms(100)),
            ]
        );
    }

    #[test]
    fn a_stop_ends_the_attempts_and_a_yield_waits_a_whole_lease() {
        assert_eq!(
            answers(vec![
                Attempt::Worked(Exit::Yielded),
                Attempt::Worked(Exit::Stopped)
            ]),
            vec![Next::RetryAfter(Duration::from_millis(1_000)), Next::Stop]
        );
    }
}
