//! The processor: exactly one loop per live SKU decides its line (purchases,
//! closes, restocks).
//!
//! Owns partition ownership (claim with a new fencing epoch, renew, hand
//! back), the batch loop (pull → decide in memory → one transaction → ack →
//! announce) and recovery (reload the ledger from Postgres whenever a commit
//! failed or its outcome is unknown). Must not hold decision logic (that is
//! `dropline-core`) nor SQL (that is `dropline-store`).

mod announce;
mod attempts;
mod commit;
mod config;
mod context;
mod gaps;
mod gather;
mod lease;
mod line;
mod meters;
mod partition;
mod progress;
mod progress_records;
mod share;
mod shared_commit;
mod supervisor;
mod work;

pub use config::ProcessorConfig;
pub use supervisor::run;
