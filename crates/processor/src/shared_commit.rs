//! Commits the batches that several partitions have ready at the same
//! moment in one transaction (a group commit).
//!
//! A drop of 200 sizes gives each size a batch of two or three decisions;
//! one transaction each cost Postgres a commit and five statements per SKU,
//! and was most of what such a drop cost it. Partitions hand their decided
//! batches here; a few committers take whatever has queued while they were
//! busy and apply it together. Nothing waits to be grouped: a batch that
//! finds a committer free goes alone, at once, by the one-SKU statement,
//! so one hot SKU commits exactly as before.
//!
//! Fencing holds per batch: the store skips (and reports) a batch whose
//! epoch or applied place in line is stale and applies the others. When
//! the shared transaction fails as a whole, every batch of it is applied
//! again on its own, so each partition gets its own answer (a key decided
//! before, a lost connection) and handles it as it always has.
//!
//! Must not decide, retry, ack or announce: the partition that handed the
//! batch over does all of that with the answer it gets back.

use std::sync::Arc;

use dropline_core::{BatchPlan, Sku};
use dropline_store::{AppliedBatch, BatchConnection, PartitionBatch, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most decisions one shared transaction takes: a few full batches, so a
/// group never holds its partitions' answers much longer than one hot
/// SKU's commit would.
const DECISIONS_PER_COMMIT_MAX: usize = 20_000;

/// Where partitions hand their batches to be committed.
pub(crate) struct SharedCommits {
    queue: mpsc::UnboundedSender<Handed>,
}

/// A batch handed over, and where its answer goes.
struct Handed {
    sku: Sku,
    epoch: u64,
    plan: Arc<BatchPlan>,
    answer: oneshot::Sender<Result<AppliedBatch, StoreError>>,
}

impl SharedCommits {
    /// Starts `committers` committers on `store` (each holds one
    /// transaction at a time). They stop when this is dropped.
    pub(crate) fn start(store: Store, committers: usize) -> Self {
        let (queue, handed) = mpsc::unbounded_channel();
        let handed = Arc::new(Mutex::new(handed));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_groups(store.clone(), handed.clone()));
        }
        Self { queue }
    }

    /// Commits `plan`, decided by `sku`'s owner at `epoch`, alone or with
    /// other partitions' batches; the answer is this batch's own.
    pub(crate) async fn apply(
        &self,
        sku: &Sku,
        epoch: u64,
        plan: Arc<BatchPlan>,
    ) -> Result<AppliedBatch, StoreError> {
        let (answer, answered) = oneshot::channel();
        let handed = Handed {
            sku: sku.clone(),
            epoch,
            plan,
            answer,
        };
        if self.queue.send(handed).is_err() {
            return Err(stopped());
        }
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The committers have stopped (the processor is shutting down): the
/// outcome is as unknown as a lost connection's, and handled the same way.
fn stopped() -> StoreError {
    StoreError::closed()
}

/// One committer: takes the first batch waiting and everything queued
/// behind it, up to the limit, and commits them on a connection of its
/// own (where Postgres keeps the batch functions' plans); until the queue
/// closes.
async fn commit_groups(store: Store, handed: Arc<Mutex<mpsc::UnboundedReceiver<Handed>>>) {
    let mut connection = store.batch_connection();
    loop {
        let group = {
            let mut handed = handed.lock().await;
            let Some(first) = handed.recv().await else {
                return;
            };
            let mut decisions = first.plan.decided.len();
            let mut group = vec![first];
            while decisions < DECISIONS_PER_COMMIT_MAX {
                let Ok(next) = handed.try_recv() else { break };
                decisions += next.plan.decided.len();
                group.push(next);
            }
            group
        };
        commit_group(&mut connection, group).await;
    }
}

async fn commit_group(store: &mut BatchConnection, group: Vec<Handed>) {
    if group.len() > 1 {
        let batches: Vec<PartitionBatch<'_>> = group
            .iter()
            .map(|handed| PartitionBatch {
                sku: &handed.sku,
                epoch: handed.epoch,
                plan: &handed.plan,
            })
            .collect();
        match store.apply_batches(&batches).await {
            Ok(outcomes) => {
                for (handed, outcome) in group.into_iter().zip(outcomes) {
                    handed.answer_with(outcome);
                }
                return;
            }
            Err(err) => {
                tracing::debug!(%err, batches = group.len(), "shared commit failed; committing its batches one by one");
            }
        }
    }
    for handed in group {
        let applied = store
            .apply_batch(&handed.sku, handed.epoch, &handed.plan)
            .await;
        handed.answer_with(applied);
    }
}

impl Handed {
    fn answer_with(self, outcome: Result<AppliedBatch, StoreError>) {
        // Let go of the plan first: the partition takes it back uncopied.
        drop(self.plan);
        // A partition that stopped waiting has nobody to tell.
        let _ = self.answer.send(outcome);
    }
}
