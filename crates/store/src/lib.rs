//! Postgres: the single source of truth for what has been applied.
//!
//! Owns the schema (`migrations/`), the one-statement batch apply with its
//! fencing check (one SKU's, or several SKUs' in one shared commit),
//! partition leases, and the read models the gateway and the operator
//! tools show. Must not decide anything: decisions come from
//! `dropline-core` and are only recorded here.

mod admission;
mod apply;
mod batch_connection;
mod connect;
mod drops;
mod error;
mod operations;
mod partitions;
mod progress;
mod purchases;
mod shared_apply;
mod sharing_changes;

pub use admission::{Admission, AdmissionChange, AdmissionView};
pub use apply::AppliedBatch;
pub use batch_connection::BatchConnection;
pub use connect::{PoolOptions, Store, DEFAULT_DATABASE_URL};
pub use drops::{DropRow, DropStatusRow, NewDrop};
pub use error::StoreError;
pub use operations::OperationRow;
pub use partitions::{PartitionClaim, Sharing};
pub use progress::PartitionProgress;
pub use purchases::{DecisionSpan, OutcomeCounts, Winner};
pub use shared_apply::PartitionBatch;
pub use sharing_changes::SharingChanges;
