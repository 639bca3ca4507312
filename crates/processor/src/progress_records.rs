//! Writing the partitions' progress records of an instance together.
//!
//! Each partition's owner records its line's progress about once a second
//! while it moves (`progress`). Over a drop of 200 sizes that was a
//! transaction of its own per size, as many as the batches' own shared
//! transactions. So owners hand their records here, and one task writes
//! what gathered in a short while in one statement. A record is advisory
//! (operators read it, `dropctl drain` waits for an emptied line): a
//! fraction of its one-second interval late changes nothing they do.
//!
//! Must not slow a batch: handing a record over never waits, and a failed
//! write is only logged. Must keep only each SKU's latest record: a line
//! that emptied must not be shown waiting by an older record.

use std::collections::BTreeMap;
use std::time::Duration;

use dropline_core::Sku;
use dropline_store::{PartitionProgress, Store};
use tokio::sync::mpsc;

/// How long the writer gathers records after the first one arrives. Idle,
/// it waits on its queue and costs nothing.
const GATHER: Duration = Duration::from_millis(200);

type Record = (Sku, u64, PartitionProgress);

/// Where partitions hand their progress records.
pub(crate) struct ProgressRecords {
    queue: mpsc::UnboundedSender<Record>,
}

impl ProgressRecords {
    /// Starts the writer on `store`. It stops when this is dropped.
    pub(crate) fn start(store: Store) -> Self {
        let (queue, records) = mpsc::unbounded_channel();
        tokio::spawn(write_records(store, records));
        Self { queue }
    }

    /// Records `progress` of `sku`'s line, as seen by its owner at `epoch`
    /// (not if the partition has moved on by the time it is written).
    pub(crate) fn record(&self, sku: &Sku, epoch: u64, progress: PartitionProgress) {
        // The writer stops only with the instance, which records no more.
        let _ = self.queue.send((sku.clone(), epoch, progress));
    }
}

async fn write_records(store: Store, mut records: mpsc::UnboundedReceiver<Record>) {
    while let Some(first) = records.recv().await {
        tokio::time::sleep(GATHER).await;
        // By SKU, the latest record each: the order the shared commit
        // locks partition rows in, too.
        let mut latest = BTreeMap::new();
        for (sku, epoch, progress) in
            std::iter::once(first).chain(std::iter::from_fn(|| records.try_recv().ok()))
        {
            latest.insert(sku, (epoch, progress));
        }
        let batch: Vec<Record> = latest
            .into_iter()
            .map(|(sku, (epoch, progress))| (sku, epoch, progress))
            .collect();
        if let Err(err) = store.record_progress_of(&batch).await {
            tracing::warn!(%err, partitions = batch.len(), "record the partitions' progress");
        }
    }
}
