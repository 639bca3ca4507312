//! Hearing that the sharing of partitions changed (a new drop, a processor
//! joining or leaving, a partition handed back), told by Postgres on the
//! `dropline_sharing` channel (see the migration `sharing_changes`).
//!
//! Only says "look again": what changed is read by the look itself. Must
//! not be relied on alone: a notification sent while the listening
//! connection is down is lost, which [`SharingChanges::next`] reports as a
//! change.

use sqlx::postgres::PgListener;

use crate::{Store, StoreError};

/// The channel of the notifications (the migration `sharing_changes` and
/// a processor's first heartbeat send on it).
pub(crate) const SHARING_CHANNEL: &str = "dropline_sharing";

/// A listening connection of its own, reconnected when lost.
pub struct SharingChanges {
    listener: PgListener,
}

impl Store {
    /// Starts listening for changes of the sharing; takes one connection of
    /// the pool for as long as it lives.
    pub async fn sharing_changes(&self) -> Result<SharingChanges, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(SHARING_CHANNEL).await?;
        Ok(SharingChanges { listener })
    }
}

impl SharingChanges {
    /// Waits for the next change, or for the connection to be lost: it is
    /// then made again and listening (changes may have been missed
    /// meanwhile, so it counts as one). An error when it cannot be made
    /// again, or the pool is closed.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.listener.try_recv().await?;
        Ok(())
    }
}
