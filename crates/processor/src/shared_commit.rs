//! Commits the batches that several partitions have ready at the same
//! moment in one transaction (a group commit).
//!
//! A drop of 200 sizes gives each size a batch of two or three decisions;
//! one transaction each cost Postgres a commit and five statements per SKU,
//! and was most of what such a drop cost it. Partitions hand their decided
//! batches here, and an instance has one batch transaction in flight at a
//! time: the committer takes whatever queued while it was in flight and
//! applies it together. Nothing waits for a timer: a batch that finds no
//! transaction in flight and nothing queued commits alone, at once, in its
//! own task, by the one-SKU statement, so one hot SKU commits exactly as
//! before.
//!
//! The price of one transaction in flight: a slow one (a lock wait, a
//! hot SKU's 5,000-row batch) holds up the batches of every other SKU of
//! the instance until it ends; they then go in one transaction together.
//!
//! Fencing holds per batch: the store skips (and reports) a batch whose
//! epoch or applied place in line is stale and applies the others. When
//! the shared transaction fails as a whole, every batch of it is applied
//! again on its own, so each partition gets its own answer (a key decided
//! before, a lost connection) and handles it as it always has.
//!
//! Must not decide, retry, ack or announce: the partition that handed the
//! batch over does all of that with the answer it gets back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dropline_core::{BatchPlan, Sku};
use dropline_store::{AppliedBatch, BatchConnection, PartitionBatch, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex, MutexGuard};
use tokio::task::JoinHandle;

/// Most decisions one shared transaction takes: a few full batches, so a
/// group never holds its partitions' answers much longer than one hot
/// SKU's commit would.
const DECISIONS_PER_COMMIT_MAX: usize = 20_000;

/// Where partitions hand their batches to be committed.
pub(crate) struct SharedCommits {
    queue: mpsc::UnboundedSender<Handed>,
    /// Batches handed to the committer and not taken by it yet.
    queued: Arc<AtomicUsize>,
    /// The one connection this instance commits batches on: whoever holds
    /// it has the instance's one transaction in flight, a batch alone in
    /// its partition's task or the committer's group.
    turn: Arc<Mutex<BatchConnection>>,
    committer: JoinHandle<()>,
}

/// A batch handed over, and where its answer goes.
struct Handed {
    sku: Sku,
    epoch: u64,
    plan: Arc<BatchPlan>,
    answer: oneshot::Sender<Result<AppliedBatch, StoreError>>,
}

impl SharedCommits {
    /// Starts the committer on `store`. It stops when this is dropped.
    pub(crate) fn start(store: &Store) -> Self {
        let (queue, handed) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let turn = Arc::new(Mutex::new(store.batch_connection()));
        let committer = tokio::spawn(commit_groups(handed, queued.clone(), turn.clone()));
        Self {
            queue,
            queued,
            turn,
            committer,
        }
    }

    /// Whether the committer has stopped while this lives: only a bug (a
    /// panic) stops it, and then no queued batch would ever commit.
    pub(crate) fn committer_stopped(&self) -> bool {
        self.committer.is_finished()
    }

    /// Commits `plan`, decided by `sku`'s owner at `epoch`, alone or with
    /// other partitions' batches; the answer is this batch's own.
    pub(crate) async fn apply(
        &self,
        sku: &Sku,
        epoch: u64,
        plan: Arc<BatchPlan>,
    ) -> Result<AppliedBatch, StoreError> {
        if let Some(mut alone) = self.commit_alone() {
            return alone.apply_batch(sku, epoch, &plan).await;
        }
        let (answer, answered) = oneshot::channel();
        let handed = Handed {
            sku: sku.clone(),
            epoch,
            plan,
            answer,
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(handed).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(stopped());
        }
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The right to commit a batch alone, in the partition's own task, when
    /// no transaction of this instance is in flight and nothing waits for
    /// one: one hot SKU commits exactly as it did before batches were
    /// shared (handing its 5,000-row batches to another task cost it 15%
    /// of its rate, `just bench --only processor`).
    fn commit_alone(&self) -> Option<MutexGuard<'_, BatchConnection>> {
        if self.queued.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.turn.try_lock().ok()
    }
}

/// The committer has stopped (the processor is shutting down): the
/// outcome is as unknown as a lost connection's, and handled the same way.
fn stopped() -> StoreError {
    StoreError::closed()
}

/// The committer: waits for a batch, then for the transaction in flight
/// (if any) to end, and commits everything queued meanwhile, up to the
/// limit, in one transaction; until the queue closes.
///
/// One transaction in flight per instance, not several: over 200 sizes
/// the batches are a few decisions each, and Postgres spends most of a
/// batch's cost on the call and its commit (0.27–0.34 ms of function time
/// a batch alone, 0.08–0.18 ms in a call of 20, measured on a warm
/// connection; plus a commit and a round trip each). Parallel
/// transactions split the batches ready at once into more, smaller
/// groups; on two cores they bought no throughput, only more commits.
async fn commit_groups(
    mut handed: mpsc::UnboundedReceiver<Handed>,
    queued: Arc<AtomicUsize>,
    turn: Arc<Mutex<BatchConnection>>,
) {
    while let Some(first) = handed.recv().await {
        let mut connection = turn.lock().await;
        let mut decisions = first.plan.decided.len();
        let mut group = vec![first];
        while decisions < DECISIONS_PER_COMMIT_MAX {
            let Ok(next) = handed.try_recv() else { break };
            decisions += next.plan.decided.len();
            group.push(next);
        }
        queued.fetch_sub(group.len(), Ordering::SeqCst);
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
