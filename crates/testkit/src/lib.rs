//! The rig every test and tool stands on: one place that decides how a
//! private `nats-server` or Postgres is started (which binary, which
//! configuration), how dropline's own processes are found, started and
//! signalled, how throwaway databases are made and dropped (and filled
//! with a long history), how a database is made slow (the delaying proxy),
//! how buyers' tokens are minted, and how a page is looked at in a real
//! browser (headless Chromium, its screenshots judged by pixels).
//!
//! Used by the end-to-end tests (`tests/`), `loadtest` and `compare` alike;
//! nothing else writes these things. Must not hold product logic, and must
//! not be a dependency of a product crate: it exists so that the product can
//! be started, hurt and observed from outside.

pub mod binaries;
pub mod browser;
pub mod ceiling;
pub mod cpu;
pub mod databases;
pub mod history;
pub mod nats;
pub mod pixels;
pub mod ports;
pub mod postgres;
pub mod processes;
pub mod proxy;
pub mod stack;
pub mod syscalls;
pub mod tokens;

pub use binaries::binary;
pub use databases::{create_database, database_name, drop_database};
pub use nats::{PrivateCluster, PrivateNats};
pub use ports::free_port;
pub use postgres::PrivatePostgres;
pub use processes::{DroplineProcess, Role, Signal};
pub use proxy::{Delay, DelayProxy};
pub use stack::Stack;
pub use tokens::BuyerTokens;

/// A short random token for names that must not collide between runs.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
