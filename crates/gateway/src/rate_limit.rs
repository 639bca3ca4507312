//! A rate limit per client: a token bucket per key (a buyer, for the
//! per-user limit on purchases; a client address, for the per-address
//! limit on the API), refilled at `per_s` up to `burst`; a request beyond
//! it gets `429` with `Retry-After` and changes nothing. Per gateway (each
//! keeps its own buckets), so behind N gateways a client gets up to N times
//! the rate: it bounds what one client's script costs a gateway, not a
//! global quota.
//!
//! Must stay off the hot path's locks: buckets are sharded by the key's
//! hash, and idle ones are swept out, so memory follows the clients active
//! in the last minute, not every client ever seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// A bucket untouched this long is full again and can go.
const IDLE: Duration = Duration::from_secs(60);

pub struct RateLimit {
    per_s: f64,
    burst: f64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `None` when the limit is off (`per_s` 0).
    pub fn new(per_s: f64, burst: u32) -> Option<Self> {
        (per_s > 0.0).then(|| Self {
            per_s,
            burst: f64::from(burst.max(1)),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        })
    }

    /// Takes a token for `key` at `now`; `Err(seconds)` to wait when none
    /// is left.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        // A known client is looked up by reference: the key is copied only
        // for its first request, not for every one.
        if let Some(bucket) = buckets.get_mut(key) {
            return self.spend(bucket, now);
        }
        let full = Bucket {
            tokens: self.burst,
            at: now,
        };
        self.spend(buckets.entry(key.to_string()).or_insert(full), now)
    }

    /// Refills `bucket` for the time since it was last used, then takes a
    /// token from it or says how long until one is back.
    fn spend(&self, bucket: &mut Bucket, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_s).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - bucket.tokens) / self.per_s;
            Err((wait_s.ceil() as u64).max(1))
        }
    }

    /// Drops the buckets idle for [`IDLE`] (full again by then).
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at) < IDLE);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Sweeps idle buckets every [`IDLE`] while the gateway runs.
pub(crate) async fn sweep_forever(rate: std::sync::Arc<RateLimit>) {
    let mut tick = tokio::time::interval(IDLE);
    loop {
        tick.tick().await;
        rate.sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buyer_gets_the_burst_then_the_rate() {
        let rate = RateLimit::new(2.0, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rate.take("ana", t0), Ok(()));
        }
        assert_eq!(rate.take("ana", t0), Err(1), "the burst is spent");
        assert_eq!(rate.take("bob", t0), Ok(()), "another buyer has their own");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            rate.take("ana", later),
            Ok(()),
            "one token back after 0.5 s at 2/s"
        );
        assert_eq!(rate.take("ana", later), Err(1));
    }

    #[test]
    fn idle_buckets_are_swept_and_the_limit_can_be_off() {
        let rate = RateLimit::new(1.0, 1).unwrap();
        let t0 = Instant::now();
        for user in ["a", "b", "c"] {
            rate.take(user, t0).unwrap();
        }
        rate.sweep(t0 + Duration::from_secs(30));
        assert_eq!(rate.len(), 3);
        rate.sweep(t0 + IDLE + Duration::from_secs(1));
        assert_eq!(rate.len(), 0);
        assert!(RateLimit::new(0.0, 10).is_none());
    }
}
