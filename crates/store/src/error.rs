//! The store's errors, split where callers must branch.

/// SQLSTATE raised by `dropline_apply_batch` when the caller's epoch is stale.
pub(crate) const SQLSTATE_FENCED: &str = "DL409";
/// SQLSTATE raised when the caller's ledger was built from another applied sequence.
pub(crate) const SQLSTATE_STALE_LEDGER: &str = "DL412";
/// SQLSTATE raised when the partition row does not exist.
pub(crate) const SQLSTATE_NO_PARTITION: &str = "DL404";
/// Postgres' unique violation, and the constraint that makes a key's
/// decision one and only one.
const SQLSTATE_UNIQUE_VIOLATION: &str = "23505";
const ONE_DECISION_PER_KEY: &str = "purchases_one_decision_per_key";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another processor took the partition over (a newer epoch): this one
    /// must stop working on it. Nothing was written.
    #[error("fenced: the partition has moved to a newer epoch")]
    Fenced,
    /// The store's applied sequence differs from the caller's ledger: reload
    /// the ledger. Nothing was written.
    #[error("stale ledger: the store's applied sequence moved")]
    StaleLedger,
    /// A key of the batch was decided before, by a decision the caller's
    /// ledger does not remember: learn the recorded decisions of the
    /// batch's keys and decide again. Nothing was written.
    #[error("a key of the batch is decided already")]
    KeyDecidedBefore,
    #[error("drop {0} already exists")]
    DropExists(String),
    #[error("no drop {0}")]
    UnknownDrop(String),
    /// An operator asked for a state change the drop cannot make.
    #[error("{0}")]
    InvalidTransition(String),
    /// A stored value no longer parses as a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Postgres could not be reached (or not in time): the error is where,
    /// not what.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    }

    /// The store was closed (the process is shutting down) before the
    /// outcome was known: as unknown as after a lost connection.
    pub fn closed() -> Self {
        StoreError::Database(sqlx::Error::PoolClosed)
    }

    /// Classifies a database error by the SQLSTATEs `dropline_apply_batch` raises.
    pub(crate) fn from_db(err: sqlx::Error) -> Self {
        if let Some(db) = err.as_database_error() {
            match db.code().as_deref() {
                Some(SQLSTATE_FENCED) => return StoreError::Fenced,
                Some(SQLSTATE_STALE_LEDGER) | Some(SQLSTATE_NO_PARTITION) => {
                    return StoreError::StaleLedger
                }
                Some(SQLSTATE_UNIQUE_VIOLATION)
                    if db.constraint() == Some(ONE_DECISION_PER_KEY) =>
                {
                    return StoreError::KeyDecidedBefore
                }
                _ => {}
            }
        }
        StoreError::Database(err)
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
