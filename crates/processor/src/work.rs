//! Working a claimed partition: rebuild the ledger under the new epoch,
//! then pull → complete the batch → decide and commit → announce → ack,
//! until stopped, fenced, or asked to yield.
//!
//! Owns the order of those steps and nothing else: must not claim, renew or
//! release the partition (that is `partition` and `lease`), and must never
//! ack or announce a batch before its commit.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use dropline_bus::{IntentBatch, IntentPuller, PullInterrupted};
use dropline_core::wire::LineAfter;
use dropline_core::{BatchPlan, Entry, Ledger, Sku};
use tokio::sync::watch;

use crate::announce::{announce, reannounce_last_batch, DropAnnouncer, DropAnswers};
use crate::commit::commit;
use crate::context::Context;
use crate::gaps::complete_batch;
use crate::gather::{linger, take_or_pull, while_pulling, Pace, Prefetched};
use crate::line::{line_of, Halt};
use crate::meters::{self, SkuGauges};
use crate::progress::ProgressMeter;

/// Why working a partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Shutdown asked for: hand the partition back.
    Stopped,
    /// Another instance holds a newer epoch: let go, try again later.
    Fenced,
    /// This instance owns more than its share: hand the partition back.
    Yielded,
    /// The line holds an entry this build does not know: stop deciding it.
    Halted,
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
    /// Times in a row the pull was started again after an interruption
    /// (reset by a delivery).
    restarts: u32,
    prefetched: Prefetched,
    pace: Pace,
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<bool>,
    /// Changes when this instance owns more than its share.
    excess: watch::Receiver<u64>,
    progress: ProgressMeter,
    drop_announcer: DropAnnouncer,
    /// The SKU's series, released when the work ends (dropped with this).
    gauges: SkuGauges,
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
        // Three round trips that need nothing of each other, run together:
        // the claim waits for the slowest of them, not for their sum.
        let (ledger_state, (), halt_cleared) = tokio::join!(
            ctx.store.load_ledger_state(sku),
            reannounce_last_batch(ctx, sku),
            ctx.store.record_halt(sku, epoch, None),
        );
        let ledger = Ledger::new(ledger_state?);
        let loaded = loading.elapsed();
        let pace = Pace::new(loaded);
        if let Err(err) = halt_cleared {
            tracing::warn!(%err, "clear the partition's halt");
        }
        let drop_announcer = DropAnnouncer::start(ctx, sku);
        if ledger.is_finally_sold_out() {
            // Gateways that missed the last owner's announcement hear it now.
            drop_announcer.sold_out(DropAnswers::remembered(&ledger));
        }
        let excess = ctx.share.excess_signal();
        let puller = start_pull(ctx, sku, ledger.applied_seq(), &lost).await?;
        let gauges = SkuGauges::new(sku);
        gauges.remaining(ledger.remaining());
        let ready = loading.elapsed();
        meters::partition_ready(ready);
        tracing::debug!(
            loaded_ms = loaded.as_millis(),
            consumer_ms = (ready - loaded).as_millis(),
            "partition ready"
        );
        Ok(Self {
            ctx,
            sku,
            epoch,
            ledger,
            puller,
            restarts: 0,
            prefetched: None,
            pace,
            stop,
            lost,
            excess,
            progress: ProgressMeter::new(Instant::now()),
            drop_announcer,
            gauges,
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
                // The sender lives in the context, which outlives this.
                Ok(()) = self.excess.changed() => {
                    if self.ctx.share.should_yield() {
                        return Ok(ControlFlow::Break(Exit::Yielded));
                    }
                    continue;
                }
                batch = take_or_pull(&mut self.puller, &mut self.prefetched) => batch,
            };
            let gathered = match batch {
                Ok(Some(batch)) => self.linger_if_lull(batch, was_idle).await.map(Some),
                other => other,
            };
            match gathered {
                // Nothing of it was committed: the fresh pull delivers it again.
                Err(err) if PullInterrupted::is(&err) && self.restarts < PULL_RESTARTS_MAX => {
                    self.restart_pull(&err).await?;
                }
                Err(err) => return Err(bus_error(err)),
                Ok(None) => anyhow::bail!("pull of {} ended", self.sku),
                Ok(Some(batch)) if !batch.is_empty() => return Ok(ControlFlow::Continue(batch)),
                Ok(Some(_)) => {}
            }
        }
    }

    /// Lets a batch that woke an idle processor grow for the rest of its
    /// wave (see [`linger`]).
    async fn linger_if_lull(
        &mut self,
        mut batch: IntentBatch,
        was_idle: bool,
    ) -> Result<IntentBatch, dropline_bus::BusError> {
        // The pull answers: a later silence is a new one.
        self.restarts = 0;
        if self.pace.is_lull(was_idle, batch.intents.len()) {
            linger(&mut self.puller, &mut batch, self.pace.linger()).await?;
        }
        Ok(batch)
    }

    /// Starts the pull again, from the ledger's place in line (what the
    /// pull it replaces delivered was not committed, see
    /// [`PullInterrupted`]), within the claim: a new claim would only add a
    /// lease acquisition and a reload of the ledger.
    async fn restart_pull(&mut self, why: &dropline_bus::BusError) -> anyhow::Result<()> {
        self.restarts += 1;
        tracing::info!(%why, restarts = self.restarts, "starting the pull again within the claim");
        tokio::time::sleep(self.ctx.config.retry_backoff(self.restarts)).await;
        self.prefetched = None;
        let applied_seq = self.ledger.applied_seq();
        self.puller = start_pull(self.ctx, self.sku, applied_seq, &self.lost).await?;
        Ok(())
    }

    /// Completes, decides and commits `batch`, then announces and acks it.
    /// `Break` when the commit was fenced, or when the line holds an entry
    /// this build does not know (what stands before its message is
    /// committed first, and nothing is acked).
    async fn commit_batch(&mut self, mut batch: IntentBatch) -> anyhow::Result<ControlFlow<Exit>> {
        let started = Instant::now();
        // The batch keeps its messages (to ack); the entries move on.
        let pulled = complete_batch(
            &self.ctx.bus,
            self.sku,
            self.ledger.applied_seq(),
            batch.continuity,
            std::mem::take(&mut batch.intents),
        )
        .await
        .map_err(bus_error)?;
        let line = line_of(pulled);
        let was_sold_out = self.ledger.is_finally_sold_out();
        // No read when the ledger will know the answers itself.
        let answers_ahead = (may_sell_out(&self.ledger, &line.entries)
            && !self.ledger.remembers_every_decision())
        .then(|| DropAnswers::read(&self.ctx.store, self.sku));
        // The commit is the slow step: the next batch is pulled meanwhile.
        let committed = while_pulling(
            commit(
                self.ctx,
                self.sku,
                self.epoch,
                &mut self.ledger,
                &line.entries,
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
        let commit_time = started.elapsed();
        self.pace.committed(commit_time, line.entries.len());
        record_batch(&plan, line.entries.len(), commit_time);
        self.gauges.remaining(self.ledger.remaining());
        // Buyers wait for the announcement, nobody for the ack: announce first.
        let after = LineAfter {
            applied_seq: self.ledger.applied_seq(),
            remaining: self.ledger.remaining(),
        };
        announce(self.ctx, self.sku, &plan, after).await;
        let answers_ahead = answers_ahead.map(|ahead| ahead.with_batch(&plan));
        announce_drop_changes(
            &self.drop_announcer,
            &self.ledger,
            was_sold_out,
            answers_ahead,
        );
        if let Some(halt) = line.halt {
            record_halt(self.ctx, self.sku, self.epoch, &halt).await;
            return Ok(ControlFlow::Break(Exit::Halted));
        }
        // Only after the commit: a crash before this ack means redelivery,
        // which the applied sequence turns into a no-op.
        if let Err(err) = batch.ack().await {
            tracing::warn!(%err, "ack batch (it will be redelivered and skipped)");
        }
        self.record_progress(plan.decided.len(), &batch);
        Ok(ControlFlow::Continue(()))
    }

    /// Records the line's progress when due: what waits is what was pulled
    /// ahead during the commit, and what the server has not delivered yet.
    fn record_progress(&mut self, decided: usize, committed: &IntentBatch) {
        self.progress.decided(decided);
        let (in_hand, oldest, undelivered) = match &self.prefetched {
            Some(Ok(Some(next))) => (
                next.intents.len() as u64,
                next.first_stored_unix_ms,
                next.undelivered_messages,
            ),
            _ => (0, None, committed.undelivered_messages),
        };
        // A message not delivered yet holds at least one intent.
        let waiting = in_hand + undelivered;
        self.gauges.progress(waiting, oldest);
        if let Some(progress) = self.progress.due(Instant::now(), waiting, oldest) {
            self.ctx.progress.record(self.sku, self.epoch, progress);
        }
    }
}

/// Whether deciding `entries` could sell out what is left: they ask for
/// at least as many units (a guess on the safe side; a sell-out it misses
/// is announced after a read of its own).
fn may_sell_out(ledger: &Ledger, entries: &[Entry]) -> bool {
    let asked: u64 = entries
        .iter()
        .map(|entry| match entry {
            Entry::Purchase(intent) => u64::from(intent.quantity.get()),
            Entry::Control(_) => 0,
        })
        .sum();
    !ledger.is_finally_sold_out() && asked >= u64::from(ledger.remaining())
}

/// Announces a final sell-out, or units coming back, if the batch made
/// either happen.
fn announce_drop_changes(
    announcer: &DropAnnouncer,
    ledger: &Ledger,
    was_sold_out: bool,
    answers_ahead: Option<DropAnswers>,
) {
    match (was_sold_out, ledger.is_finally_sold_out()) {
        (false, true) => announcer.sold_out(DropAnswers::remembered(ledger).or(answers_ahead)),
        (true, false) => announcer.in_stock(),
        _ => {}
    }
}

/// Stops deciding, loudly: the log, the store (for `dropctl status`) and a
/// metric all say why. (A free function, not a method: a `&Worker` held
/// across an await would not be `Send`, its pull stream being `Send` only.)
async fn record_halt(ctx: &Context, sku: &Sku, epoch: u64, halt: &Halt) {
    let reason = halt.reason();
    tracing::error!(seq = halt.seq, kind = %halt.kind, version = halt.version, "partition halted: {reason}");
    meters::halted();
    if let Err(err) = ctx.store.record_halt(sku, epoch, Some(&reason)).await {
        tracing::warn!(%err, "record the partition's halt");
    }
}

/// Attempts at starting the claim's pull before the claim counts as failed.
const PULL_ATTEMPTS: u32 = 5;

/// Restarts of an interrupted pull in a row (no delivery between them)
/// before the claim counts as failed.
const PULL_RESTARTS_MAX: u32 = 4;

/// Starts the pull of the claimed line (a fresh consumer), retried a few
/// times within the claim: a JetStream cluster that has just formed
/// answers "no responders" for a moment, and a new claim (a new epoch, a
/// lease acquisition more) would not make it answer any sooner. Not once
/// the lease is lost: the fresh consumer would replace the next owner's.
/// (A stop is seen by the batch loop, which then hands the partition back.)
async fn start_pull(
    ctx: &Context,
    sku: &Sku,
    applied_seq: u64,
    lost: &watch::Receiver<bool>,
) -> anyhow::Result<IntentPuller> {
    let mut failures = 0;
    loop {
        if *lost.borrow() {
            anyhow::bail!("the lease of {sku} was lost while its pull was starting");
        }
        let started = ctx
            .bus
            .pull_intents(
                sku,
                applied_seq,
                &ctx.config.consumer,
                ctx.config.batch_len_max,
            )
            .await;
        match started {
            Ok(puller) => return Ok(puller),
            Err(err) if failures + 1 < PULL_ATTEMPTS => {
                failures += 1;
                tracing::info!(%err, failures, "start the pull: trying again within the claim");
                tokio::time::sleep(ctx.config.retry_backoff(failures)).await;
            }
            Err(err) => return Err(bus_error(err)),
        }
    }
}

/// async-nats errors are boxed trait objects, which anyhow cannot take by `?`.
fn bus_error(err: dropline_bus::BusError) -> anyhow::Error {
    anyhow::anyhow!(err)
}

fn record_batch(plan: &BatchPlan, entries: usize, commit_time: Duration) {
    tracing::debug!(
        pulled = entries,
        decided = plan.decided.len(),
        ms = commit_time.as_secs_f64() * 1e3,
        "batch committed"
    );
    meters::batch_committed(plan, entries, commit_time);
}
