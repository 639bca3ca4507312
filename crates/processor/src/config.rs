//! Processor settings, each with its unit in its name, and the retry
//! backoff they bound. Must not read the environment: the binary resolves
//! settings and hands them over.

use std::time::Duration;

use dropline_bus::ConsumerSettings;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Names this instance in partition leases; unique per process.
    pub instance_id: String,
    /// Most intents of one partition decided and committed together.
    pub batch_len_max: usize,
    /// How long a claimed partition stays ours without renewal. Only decides
    /// who works; correctness rests on the epoch.
    pub lease_ms: u64,
    /// Shortest pause between two looks for partitions to claim. Looks
    /// happen when Postgres says the sharing changed (a new drop, a
    /// processor joining or leaving, a partition handed back) and every
    /// third of a lease.
    pub discovery_interval_ms: u64,
    /// Longest pause between retries of a failing batch.
    pub retry_backoff_max_ms: u64,
    /// How long a closed drop's partition is still worked after its close
    /// was decided: intents a late gateway admitted are decided `closed`.
    pub closed_linger_s: u64,
    /// How long a partition halted by an entry it does not know waits before
    /// it is tried again (by this or another, perhaps newer, instance).
    pub halted_retry_ms: u64,
    pub consumer: ConsumerSettings,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            instance_id: format!("processor-{}", uuid::Uuid::new_v4().simple()),
            batch_len_max: 5_000,
            lease_ms: 10_000,
            discovery_interval_ms: 250,
            retry_backoff_max_ms: 2_000,
            closed_linger_s: 600,
            halted_retry_ms: 30_000,
            consumer: ConsumerSettings::default(),
        }
    }
}

impl ProcessorConfig {
    /// How long to wait before retrying after `failures` failures in a row:
    /// doubling from 100 ms, at most `retry_backoff_max_ms`.
    pub(crate) fn retry_backoff(&self, failures: u32) -> Duration {
        let ms = 50u64.saturating_mul(1 << failures.min(10));
        Duration::from_millis(ms.min(self.retry_backoff_max_ms))
    }
}
