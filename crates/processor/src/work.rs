//! Working a claimed partition: rebuild the ledger under the new epoch,
//! then pull → complete the batch → decide and commit → announce → ack,
//! until stopped, fenced, or asked to yield.
//!
//! Owns the order of those steps and nothing else: must not claim, renew or
//! release the partition (that is `partition` and `lease`), and must never
//! ack or announce a batch before its commit.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use dropline_bus::{IntentBatch, IntentPuller, PulledIntent};
use dropline_core::{BatchPlan, Intent, Ledger, Sku};
use tokio::sync::watch;

use crate::announce::{announce, reannounce_last_batch};
use crate::commit::commit;
use crate::context::Context;
use crate::gaps::complete_batch;
use crate::gather::{linger, take_or_pull, while_pulling, Pace, Prefetched};

/// Why working a partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Shutdown asked for: hand the partition back.
    Stopped,
    /// Another instance holds a newer epoch: let go, try again later.
    Fenced,
    /// This instance owns more than its share: hand the partition back.
    Yielded,
}

/// Works `sku`'s partition at `epoch` until `stop` fires, `lost` says the
/// lease moved on, a commit is fenced, or this instance should yield.
pub(crate) async fn work(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
) -> anyhow::Result<Exit> {
    let mut worker = Worker::start(ctx, sku, epoch, stop, lost).await?;
    loop {
        let batch = match worker.next_batch().await? {
            ControlFlow::Continue(batch) => batch,
            ControlFlow::Break(exit) => return Ok(exit),
        };
        if let ControlFlow::Break(exit) = worker.commit_batch(batch).await? {
            return Ok(exit);
        }
    }
}

/// One partition's batch loop, for as long as this instance holds `epoch`.
struct Worker<'a> {
    ctx: &'a Context,
    sku: &'a Sku,
    epoch: u64,
    ledger: Ledger,
    puller: IntentPuller,
    prefetched: Prefetched,
    pace: Pace,
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
    /// How often this instance checks whether it owns more than its share.
    rebalance: tokio::time::Interval,
}

impl<'a> Worker<'a> {
    async fn start(
        ctx: &'a Context,
        sku: &'a Sku,
        epoch: u64,
        stop: watch::Receiver<bool>,
        lost: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let loading = Instant::now();
        let ledger = Ledger::new(ctx.store.load_ledger_state(sku).await?);
        let pace = Pace::new(loading.elapsed());
        reannounce_last_batch(ctx, sku).await;
        let rebalance =
            tokio::time::interval(Duration::from_millis((ctx.config.lease_ms / 3).max(1)));
        let puller = ctx
            .bus
            .pull_intents(
                sku,
                ledger.applied_seq(),
                &ctx.config.consumer,
                ctx.config.batch_len_max,
            )
            .await
            .map_err(bus_error)?;
        Ok(Self {
            ctx,
            sku,
            epoch,
            ledger,
            puller,
            prefetched: None,
            pace,
            stop,
            lost,
            rebalance,
        })
    }

    /// Waits for the next batch worth committing (`Continue`), or for a
    /// reason to stop working the partition (`Break`).
    async fn next_batch(&mut self) -> anyhow::Result<ControlFlow<Exit, IntentBatch>> {
        loop {
            let (batch, was_idle) = tokio::select! {
                // Biased: a stop or a lost lease wins over a batch already at hand.
                biased;
                _ = self.stop.changed() => return Ok(ControlFlow::Break(Exit::Stopped)),
                _ = self.lost.changed() => return Ok(ControlFlow::Break(Exit::Fenced)),
                _ = self.rebalance.tick() => {
                    if self.ctx.share.should_yield() {
                        return Ok(ControlFlow::Break(Exit::Yielded));
                    }
                    continue;
                }
                batch = take_or_pull(&mut self.puller, &mut self.prefetched) => batch,
            };
            let Some(mut batch) = batch.map_err(bus_error)? else {
                anyhow::bail!("pull of {} ended", self.sku);
            };
            if self.pace.is_lull(was_idle, batch.intents.len()) {
                linger(&mut self.puller, &mut batch, self.pace.linger())
                    .await
                    .map_err(bus_error)?;
            }
            if !batch.is_empty() {
                return Ok(ControlFlow::Continue(batch));
            }
        }
    }

    /// Completes, decides and commits `batch`, then announces and acks it.
    /// `Break` when the commit was fenced.
    async fn commit_batch(&mut self, mut batch: IntentBatch) -> anyhow::Result<ControlFlow<Exit>> {
        let started = Instant::now();
        // The batch keeps its messages (to ack); the intents move on.
        let pulled = complete_batch(
            &self.ctx.bus,
            self.sku,
            self.ledger.applied_seq(),
            batch.continuity,
            std::mem::take(&mut batch.intents),
        )
        .await
        .map_err(bus_error)?;
        let intents = intents_of(pulled);
        // The commit is the slow step: the next batch is pulled meanwhile.
        let committed = while_pulling(
            commit(
                self.ctx,
                self.sku,
                self.epoch,
                &mut self.ledger,
                &intents,
                &batch,
                &mut self.stop,
            ),
            &mut self.puller,
            &mut self.prefetched,
        )
        .await?;
        let Some(plan) = committed else {
            return Ok(ControlFlow::Break(Exit::Fenced));
        };
        self.pace.committed(started.elapsed(), intents.len());
        // Buyers wait for the announcement, nobody for the ack: announce first.
        announce(self.ctx, self.sku, &plan).await;
        // Only after the commit: a crash before this ack means redelivery,
        // which the applied sequence turns into a no-op.
        if let Err(err) = batch.ack().await {
            tracing::warn!(%err, "ack batch (it will be redelivered and skipped)");
        }
        record_metrics(&plan, intents.len(), started.elapsed());
        Ok(ControlFlow::Continue(()))
    }
}

/// async-nats errors are boxed trait objects, which anyhow cannot take by `?`.
fn bus_error(err: dropline_bus::BusError) -> anyhow::Error {
    anyhow::anyhow!(err)
}

/// The intents of a batch; a message that is not an intent is logged and
/// left undecided (only a stray publisher can put one on the subject).
fn intents_of(pulled: Vec<PulledIntent>) -> Vec<Intent> {
    pulled
        .into_iter()
        .filter_map(|p| match p {
            PulledIntent::Intent(intent) => Some(intent),
            PulledIntent::Malformed { seq, reason } => {
                tracing::error!(seq, reason, "skip a message that is not an intent");
                None
            }
        })
        .collect()
}

fn record_metrics(plan: &BatchPlan, pulled: usize, elapsed: Duration) {
    tracing::debug!(
        pulled,
        decided = plan.decided.len(),
        ms = elapsed.as_secs_f64() * 1e3,
        "batch committed"
    );
    metrics::counter!("dropline_processor_decisions_total").increment(plan.decided.len() as u64);
    metrics::counter!("dropline_processor_repeats_total").increment(plan.repeated.len() as u64);
    metrics::counter!("dropline_processor_batches_total").increment(1);
    metrics::histogram!("dropline_processor_batch_len").record(pulled as f64);
    metrics::histogram!("dropline_processor_batch_seconds").record(elapsed.as_secs_f64());
}
