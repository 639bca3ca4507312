//! Gathering the next batch: pulling it while the current one commits, and
//! after a lull lingering briefly for the rest of a wave of buyers.
//!
//! Owns when a batch is taken, never what is in it: must not drop, reorder
//! or decide a delivery (the batch is proven complete and decided after
//! this), and must lose nothing when a pull is cancelled, which is why only
//! the puller's cancel-safe calls are awaited here.

use std::time::Duration;

use dropline_bus::{BusError, IntentBatch, IntentPuller};

/// A batch pulled ahead while the previous one committed: none yet, the
/// batch, the end of the pull, or the error that stopped it.
pub(crate) type Prefetched = Option<Result<Option<IntentBatch>, BusError>>;

/// After a lull the processor waits up to this fraction of its last commit
/// for more intents before committing the few at hand.
const LINGER_DIVISOR: u32 = 4;
/// ... but never longer than this.
const LINGER_MAX: Duration = Duration::from_millis(50);

/// How the last commit went: what decides whether a new batch lingers for
/// the rest of its wave, and for how long.
#[derive(Debug)]
pub(crate) struct Pace {
    last_commit: Duration,
    last_batch_len: usize,
}

impl Pace {
    /// Before the first commit, `first_guess` (how long loading the ledger
    /// took) is the best guess of how long the database takes.
    pub fn new(first_guess: Duration) -> Self {
        Self {
            last_commit: first_guess,
            last_batch_len: 0,
        }
    }

    pub fn committed(&mut self, took: Duration, batch_len: usize) {
        self.last_commit = took;
        self.last_batch_len = batch_len;
    }

    /// A lull: nothing was waiting, or only a few stragglers of a wave (a
    /// batch under half the last one), whose rest is on its way.
    pub fn is_lull(&self, was_idle: bool, batch_len: usize) -> bool {
        was_idle || batch_len < self.last_batch_len / 2
    }

    /// How long a batch gathered in a lull waits for more (see [`linger`]).
    pub fn linger(&self) -> Duration {
        (self.last_commit / LINGER_DIVISOR).min(LINGER_MAX)
    }
}

/// The batch pulled ahead, if any, else the next one from the consumer;
/// and whether the processor was idle, waiting for it.
pub(crate) async fn take_or_pull(
    puller: &mut IntentPuller,
    prefetched: &mut Prefetched,
) -> (Result<Option<IntentBatch>, BusError>, bool) {
    match prefetched.take() {
        Some(batch) => (batch, false),
        None => (puller.next_batch().await, true),
    }
}

/// Lets `batch` grow for up to `linger` (see [`Pace::linger`]).
///
/// Why: when buyers arrive in waves (each answered wave sends the next), the
/// first few of a wave wake an idle processor, which would commit them alone
/// and make the rest wait a whole commit. With a slow database that halves
/// throughput (batches of 17 and 783 instead of 800, measured with 200 ms
/// commits). The same split persists when a few stragglers of a wave are
/// pulled during the previous commit: the two halves stay out of phase,
/// wave after wave, unless the stragglers wait for the rest. A wave takes
/// tens of milliseconds to arrive on two busy cores, in spurts (its answers
/// go out in messages of 500): a tenth of a 200 ms commit caught all of it
/// in some runs and split it in others; a quarter caught it in every run
/// (measured with `compare --workloads slow-db`). The cost is at most a
/// quarter of a commit in latency; with a fast database, a fraction of a
/// millisecond.
pub(crate) async fn linger(
    puller: &mut IntentPuller,
    batch: &mut IntentBatch,
    linger: Duration,
) -> Result<(), BusError> {
    let deadline = tokio::time::Instant::now() + linger;
    while puller.can_top_up(batch) {
        match tokio::time::timeout_at(deadline, puller.top_up(batch)).await {
            Ok(result) => result?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Runs `work` to its end while pulling the next batch into `prefetched`,
/// and topping it up as deliveries arrive: under a slow commit the next batch
/// holds everything that arrived meanwhile, not just the first few. A pull
/// still waiting when `work` ends is dropped, which loses nothing:
/// `next_batch` and `top_up` are cancel-safe.
pub(crate) async fn while_pulling<T>(
    work: impl std::future::Future<Output = T>,
    puller: &mut IntentPuller,
    prefetched: &mut Prefetched,
) -> T {
    tokio::pin!(work);
    loop {
        let wants_more = match prefetched {
            None => true,
            Some(Ok(Some(batch))) => puller.can_top_up(batch),
            Some(_) => false,
        };
        tokio::select! {
            biased;
            done = &mut work => return done,
            _ = pull_ahead(puller, prefetched), if wants_more => {}
        }
    }
}

/// Pulls the next batch into `prefetched`, or adds to the one there.
async fn pull_ahead(puller: &mut IntentPuller, prefetched: &mut Prefetched) {
    match prefetched {
        Some(Ok(Some(batch))) => {
            if let Err(err) = puller.top_up(batch).await {
                *prefetched = Some(Err(err));
            }
        }
        _ => *prefetched = Some(puller.next_batch().await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_after_idling_or_under_half_the_last_one_lingers_for_a_quarter_commit_at_most_50_ms()
    {
        let mut pace = Pace::new(Duration::from_millis(40));
        assert!(pace.is_lull(true, 0));
        assert_eq!(pace.linger(), Duration::from_millis(10));
        pace.committed(Duration::from_millis(400), 800);
        assert!(pace.is_lull(false, 399));
        assert!(!pace.is_lull(false, 400));
        assert_eq!(pace.linger(), LINGER_MAX);
    }
}
