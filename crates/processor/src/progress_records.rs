//! Writing the partitions' progress records of an instance together.
//!
//! Each partition's owner records its line's progress about once a second
//! while it moves (`progress`). Over a drop of 200 sizes that was a
//! transaction of its own per size, as many as the batches' own shared
//! transactions. So owners hand their records here, and one task writes
//! what gathered in a short while in one statement. A record is advisory
//! (`dropctl status`, the live page, `lag_s`), and carries the moment its
//! owner looked: written a fraction of its one-second interval late, it
//! still says what it saw and when.
//!
//! Must not slow a batch: handing a record over never waits, and the write
//! never waits for a row lock (a record whose row is locked, or whose
//! write failed, is written again with the next). Must keep only each
//! SKU's latest record: a line that emptied must not be shown waiting by
//! an older one.

use std::collections::BTreeMap;
use std::time::Duration;

use dropline_core::Sku;
use dropline_store::{PartitionProgress, Store};
use tokio::sync::{mpsc, oneshot};

/// How long the writer gathers records after the first one arrives. Idle,
/// it waits on its queue and costs nothing.
const GATHER: Duration = Duration::from_millis(200);

/// Writes of one record before it is given up (its partition moved on, or
/// its row stayed locked): a second's worth.
const ATTEMPTS_MAX: u32 = 5;

enum Handed {
    Record(Sku, u64, PartitionProgress),
    /// Write what is pending now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Where partitions hand their progress records.
pub(crate) struct ProgressRecords {
    queue: mpsc::UnboundedSender<Handed>,
}

impl ProgressRecords {
    /// Starts the writer on `store`. It stops when this is dropped.
    pub(crate) fn start(store: Store) -> Self {
        let (queue, handed) = mpsc::unbounded_channel();
        tokio::spawn(write_records(store, handed));
        Self { queue }
    }

    /// Records `progress` of `sku`'s line, as seen by its owner at `epoch`
    /// (not if the partition has moved on by the time it is written).
    pub(crate) fn record(&self, sku: &Sku, epoch: u64, progress: PartitionProgress) {
        // The writer stops only with the instance, which records no more.
        let _ = self
            .queue
            .send(Handed::Record(sku.clone(), epoch, progress));
    }

    /// Writes what is pending now: the last records of partitions handed
    /// back at shutdown are not lost with the process.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Handed::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Each SKU's latest record not written yet, in SKU order, with the
/// writes it has been through.
type Pending = BTreeMap<Sku, (u64, PartitionProgress, u32)>;

async fn write_records(store: Store, mut handed: mpsc::UnboundedReceiver<Handed>) {
    let mut pending = Pending::new();
    loop {
        if pending.is_empty() {
            let Some(first) = handed.recv().await else {
                return;
            };
            if let Some(done) = take(&mut pending, first) {
                // Nothing pending before it: nothing to write.
                let _ = done.send(());
                continue;
            }
        }
        tokio::time::sleep(GATHER).await;
        let flushed: Vec<_> = std::iter::from_fn(|| handed.try_recv().ok())
            .filter_map(|next| take(&mut pending, next))
            .collect();
        write(&store, &mut pending).await;
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Keeps a record handed over (the SKU's latest); a flush is handed back,
/// to be answered once what is pending is written.
fn take(pending: &mut Pending, handed: Handed) -> Option<oneshot::Sender<()>> {
    match handed {
        Handed::Record(sku, epoch, progress) => {
            pending.insert(sku, (epoch, progress, 0));
            None
        }
        Handed::Flush(done) => Some(done),
    }
}

/// Writes `pending`, keeping what was not written for the next write
/// (unless it has had its attempts).
async fn write(store: &Store, pending: &mut Pending) {
    let records: Vec<(Sku, u64, PartitionProgress)> = pending
        .iter()
        .map(|(sku, (epoch, progress, _))| (sku.clone(), *epoch, *progress))
        .collect();
    match store.record_progress_of(&records).await {
        Ok(recorded) => {
            for sku in recorded {
                pending.remove(&sku);
            }
        }
        Err(err) => {
            tracing::warn!(%err, partitions = records.len(), "record the partitions' progress");
        }
    }
    pending.retain(|_, (.., attempts)| {
        *attempts += 1;
        *attempts < ATTEMPTS_MAX
    });
}
