//! What one attempt to own a partition means for the next: let it go, or
//! claim it again after how long.
//!
//! The supervisor claims free partitions and starts a task for each; a
//! task keeps its partition only through failures it may ride out. Once
//! the work ends any other way (stopped, handed to a less loaded instance,
//! fenced, halted), the task ends too, and whichever instance has room
//! claims the partition on its next look.
//!
//! Pure, so the rules are tested without a database or a broker. Must not
//! claim, work or log anything itself: `partition` does, and follows what
//! this module returns.

use std::time::Duration;

use crate::ProcessorConfig;

/// How one attempt to own the partition ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Claimed and worked until the work ended: stopped, handed to a less
    /// loaded instance, fenced or halted.
    Worked,
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
    /// Let the partition go: the work ended for good here, or another
    /// instance holds it.
    LetGo,
    /// Claim it again after this pause.
    RetryAfter(Duration),
}

/// What a task remembers between its attempts on one partition.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Failures in a row (claims or partition loops), for the backoff.
    failures: u32,
}

impl Attempts {
    pub fn after(&mut self, attempt: Attempt, config: &ProcessorConfig) -> Next {
        match attempt {
            Attempt::Worked | Attempt::HeldElsewhere => Next::LetGo,
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
    fn failures_back_off_longer_up_to_the_limit() {
        let ms = Duration::from_millis;
        assert_eq!(
            answers(vec![
                Attempt::ClaimFailed,
                Attempt::WorkFailed,
                Attempt::ClaimFailed,
                Attempt::ClaimFailed,
            ]),
            vec![
                Next::RetryAfter(ms(100)),
                Next::RetryAfter(ms(200)),
                Next::RetryAfter(ms(400)),
                Next::RetryAfter(ms(400)),
            ]
        );
    }

    #[test]
    fn work_that_ended_or_a_partition_held_elsewhere_is_let_go() {
        assert_eq!(answers(vec![Attempt::Worked]), vec![Next::LetGo]);
        assert_eq!(
            answers(vec![Attempt::WorkFailed, Attempt::HeldElsewhere]),
            vec![Next::RetryAfter(Duration::from_millis(100)), Next::LetGo],
            "lost while backing off: someone else has it now"
        );
    }
}
