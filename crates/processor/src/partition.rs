//! One partition's life: claim it, rebuild the ledger under the new epoch,
//! then pull → decide → commit → ack → announce until stopped or fenced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dropline_bus::{Bus, BusError, IntentBatch, IntentPuller, PulledIntent};
use dropline_core::{BatchPlan, Decision, Intent, Ledger, Sku};
use dropline_store::{Store, StoreError};
use tokio::sync::watch;

use crate::gaps::complete_batch;
use crate::lease::keep_alive;
use crate::share::Share;
use crate::ProcessorConfig;

pub(crate) struct Context {
    pub store: Store,
    pub bus: Bus,
    pub config: ProcessorConfig,
    pub share: Share,
}

/// Why working a partition ended.
enum Exit {
    /// Shutdown asked for: hand the partition back.
    Stopped,
    /// Another instance holds a newer epoch: let go, try again later.
    Fenced,
    /// This instance owns more than its share: hand the partition back.
    Yielded,
}

/// Owns `sku`'s partition whenever it can, until `stop` turns true.
#[tracing::instrument(skip_all, fields(sku = %sku))]
pub(crate) async fn own_partition(ctx: Arc<Context>, sku: Sku, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    // Set after losing the partition, so that finding it taken is said once.
    let mut just_lost = false;
    while !*stop.borrow() {
        if !ctx.share.try_take() {
            // At the fair share: leave this partition to another instance,
            // unless it is still free when we look again.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ctx.config.lease_ms / 2)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let claim = ctx
            .store
            .claim_partition(&sku, &ctx.config.instance_id, ctx.config.lease_ms)
            .await;
        if !matches!(claim, Ok(Some(_))) {
            ctx.share.give_back();
        }
        let pause = match claim {
            Ok(Some(claim)) => {
                tracing::info!(
                    epoch = claim.epoch,
                    applied_seq = claim.applied_seq,
                    "partition claimed"
                );
                let (lost, renewer) = keep_alive(ctx.clone(), sku.clone(), claim.epoch);
                let outcome = work(&ctx, &sku, claim.epoch, stop.clone(), lost).await;
                renewer.abort();
                if !matches!(outcome, Ok(Exit::Yielded)) {
                    // `should_yield` already gave the slot back.
                    ctx.share.give_back();
                }
                match outcome {
                    Ok(Exit::Yielded) => {
                        if let Err(err) = ctx
                            .store
                            .release_partition(&sku, &ctx.config.instance_id, claim.epoch)
                            .await
                        {
                            tracing::warn!(%err, "hand partition back");
                        }
                        tracing::info!(
                            epoch = claim.epoch,
                            "partition handed to a less loaded instance"
                        );
                        Duration::from_millis(ctx.config.lease_ms)
                    }
                    Ok(Exit::Stopped) => {
                        if let Err(err) = ctx
                            .store
                            .release_partition(&sku, &ctx.config.instance_id, claim.epoch)
                            .await
                        {
                            tracing::warn!(%err, "hand partition back");
                        }
                        tracing::info!(epoch = claim.epoch, "partition handed back");
                        return;
                    }
                    Ok(Exit::Fenced) => {
                        tracing::warn!(
                            epoch = claim.epoch,
                            "fenced: another instance owns the partition"
                        );
                        failures = 0;
                        Duration::from_millis(ctx.config.lease_ms / 2)
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(
                            epoch = claim.epoch,
                            err = format!("{err:#}"),
                            "partition loop failed; reclaiming"
                        );
                        backoff(&ctx.config, failures)
                    }
                }
            }
            // Someone else holds a live lease.
            Ok(None) => {
                if std::mem::take(&mut just_lost) {
                    tracing::warn!("the partition moved to another instance; letting it go");
                }
                Duration::from_millis(ctx.config.lease_ms / 2)
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(%err, "claim partition");
                backoff(&ctx.config, failures)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

/// async-nats errors are boxed trait objects, which anyhow cannot take by `?`.
fn bus_error(err: dropline_bus::BusError) -> anyhow::Error {
    anyhow::anyhow!(err)
}

fn backoff(config: &ProcessorConfig, failures: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << failures.min(10));
    Duration::from_millis(ms.min(config.retry_backoff_max_ms))
}

async fn work(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    mut stop: watch::Receiver<bool>,
    mut lost: watch::Receiver<bool>,
) -> anyhow::Result<Exit> {
    let loading = Instant::now();
    let mut ledger = Ledger::new(ctx.store.load_ledger_state(sku).await?);
    // Until the first commit, loading the ledger is the best guess of how
    // long the database takes (see `linger`).
    let mut last_commit = loading.elapsed();
    let mut last_batch_len = 0;
    reannounce_last_batch(ctx, sku).await;
    let mut rebalance =
        tokio::time::interval(Duration::from_millis((ctx.config.lease_ms / 3).max(1)));
    let mut puller = ctx
        .bus
        .pull_intents(
            sku,
            ledger.applied_seq(),
            &ctx.config.consumer,
            ctx.config.batch_len_max,
        )
        .await
        .map_err(bus_error)?;
    // A batch pulled while the previous one committed.
    let mut prefetched: Option<Result<Option<IntentBatch>, BusError>> = None;
    loop {
        let batch = tokio::select! {
            // Biased: a stop or a lost lease wins over a batch already at hand.
            biased;
            _ = stop.changed() => return Ok(Exit::Stopped),
            _ = lost.changed() => return Ok(Exit::Fenced),
            _ = rebalance.tick() => {
                if ctx.share.should_yield() {
                    return Ok(Exit::Yielded);
                }
                continue;
            }
            batch = next_batch(&mut puller, &mut prefetched) => batch,
        };
        let (batch, was_idle) = batch;
        let batch = batch.map_err(bus_error)?;
        let Some(mut batch) = batch else {
            anyhow::bail!("pull of {sku} ended");
        };
        // A lull: nothing was waiting, or only a few stragglers of a wave
        // (a batch under half the last one), whose rest is on its way.
        let lull = was_idle || batch.intents.len() < last_batch_len / 2;
        if lull {
            linger(&mut puller, &mut batch, last_commit / LINGER_DIVISOR)
                .await
                .map_err(bus_error)?;
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        // The batch keeps its messages (to ack); the intents move on.
        let pulled = complete_batch(
            &ctx.bus,
            sku,
            ledger.applied_seq(),
            batch.continuity,
            std::mem::take(&mut batch.intents),
        )
        .await
        .map_err(bus_error)?;
        let intents = intents_of(pulled);
        // The commit is the slow step: the next batch is pulled meanwhile.
        let committed = while_pulling(
            commit(ctx, sku, epoch, &mut ledger, &intents, &batch, &mut stop),
            &mut puller,
            &mut prefetched,
        )
        .await?;
        let Some(plan) = committed else {
            return Ok(Exit::Fenced);
        };
        last_commit = started.elapsed();
        last_batch_len = intents.len();
        // Buyers wait for the announcement, nobody for the ack: announce first.
        announce(ctx, sku, &plan).await;
        // Only after the commit: a crash before this ack means redelivery,
        // which the applied sequence turns into a no-op.
        if let Err(err) = batch.ack().await {
            tracing::warn!(%err, "ack batch (it will be redelivered and skipped)");
        }
        record_metrics(&plan, intents.len(), started.elapsed());
    }
}

/// The batch pulled ahead, if any, else the next one from the consumer;
/// and whether the processor was idle, waiting for it.
async fn next_batch(
    puller: &mut IntentPuller,
    prefetched: &mut Option<Result<Option<IntentBatch>, BusError>>,
) -> (Result<Option<IntentBatch>, BusError>, bool) {
    match prefetched.take() {
        Some(batch) => (batch, false),
        None => (puller.next_batch().await, true),
    }
}

/// After a lull the processor waits up to this fraction of its last commit
/// for more intents before committing the few at hand.
const LINGER_DIVISOR: u32 = 4;
/// ... but never longer than this.
const LINGER_MAX: Duration = Duration::from_millis(50);

/// Lets `batch` grow for up to `linger` (capped at [`LINGER_MAX`]).
///
/// Why: when buyers arrive in waves (each answered wave sends the next), the
/// first few of a wave wake an idle processor, which would commit them alone
/// and make the rest wait a whole commit. With a slow database that halves
/// throughput (batches of 17 and 783 instead of 800, measured with 200 ms
/// commits). The same split persists when a few stragglers of a wave are
/// pulled during the previous commit: the two halves stay out of phase,
/// wave after wave, unless the stragglers wait for the rest. A wave takes
/// tens of milliseconds to arrive on two busy cores, in spurts (its answers
/// go out in messages of 500): a tenth of a 200 ms commit caught all of it
/// in some runs and split it in others; a quarter caught it in every run
/// (measured with `compare --workloads slow-db`). The cost is at most a
/// quarter of a commit in latency; with a fast database, a fraction of a
/// millisecond.
async fn linger(
    puller: &mut IntentPuller,
    batch: &mut IntentBatch,
    linger: Duration,
) -> Result<(), BusError> {
    let deadline = tokio::time::Instant::now() + linger.min(LINGER_MAX);
    while puller.can_top_up(batch) {
        match tokio::time::timeout_at(deadline, puller.top_up(batch)).await {
            Ok(result) => result?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Runs `work` to its end while pulling the next batch into `prefetched`,
/// and topping it up as deliveries arrive: under a slow commit the next batch
/// holds everything that arrived meanwhile, not just the first few. A pull
/// still waiting when `work` ends is dropped, which loses nothing:
/// `next_batch` and `top_up` are cancel-safe.
async fn while_pulling<T>(
    work: impl std::future::Future<Output = T>,
    puller: &mut IntentPuller,
    prefetched: &mut Option<Result<Option<IntentBatch>, BusError>>,
) -> T {
    tokio::pin!(work);
    loop {
        let wants_more = match prefetched {
            None => true,
            Some(Ok(Some(batch))) => puller.can_top_up(batch),
            Some(_) => false,
        };
        tokio::select! {
            biased;
            done = &mut work => return done,
            _ = pull_ahead(puller, prefetched), if wants_more => {}
        }
    }
}

/// Pulls the next batch into `prefetched`, or adds to the one there.
async fn pull_ahead(
    puller: &mut IntentPuller,
    prefetched: &mut Option<Result<Option<IntentBatch>, BusError>>,
) {
    match prefetched {
        Some(Ok(Some(batch))) => {
            if let Err(err) = puller.top_up(batch).await {
                *prefetched = Some(Err(err));
            }
        }
        _ => *prefetched = Some(puller.next_batch().await),
    }
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

/// Decides and commits one batch, retrying until it is in the store.
/// Returns the committed plan, or `None` when fenced.
async fn commit(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    ledger: &mut Ledger,
    intents: &[Intent],
    batch: &IntentBatch,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<BatchPlan>> {
    let mut failures = 0u32;
    loop {
        let plan = ledger.decide(intents);
        if plan.is_noop() {
            return Ok(Some(plan));
        }
        match apply_keeping_messages(ctx, sku, epoch, &plan, batch).await {
            Ok(applied) => {
                ledger.apply(&plan);
                if applied.remaining != ledger.remaining() {
                    // Stock moved outside this partition's ledger: trust the store.
                    tracing::warn!(
                        store = applied.remaining,
                        ledger = ledger.remaining(),
                        "stock differs; reloading ledger"
                    );
                    *ledger = Ledger::new(ctx.store.load_ledger_state(sku).await?);
                }
                return Ok(Some(plan));
            }
            Err(StoreError::Fenced) => return Ok(None),
            Err(err) => {
                failures += 1;
                tracing::warn!(%err, failures, decided = plan.decided.len(), "commit batch; reloading ledger and retrying");
                // Keep the messages from being redelivered while we retry.
                let _ = batch.in_progress().await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff(&ctx.config, failures)) => {}
                    _ = stop.changed() => anyhow::bail!("stopped while retrying a commit"),
                }
                // The outcome of a failed commit may be unknown (connection
                // lost mid-commit): only the store can say what was applied.
                match ctx.store.load_ledger_state(sku).await {
                    Ok(state) => *ledger = Ledger::new(state),
                    Err(err) => tracing::warn!(%err, "reload ledger"),
                }
            }
        }
    }
}

/// Applies the plan; while a slow commit runs, tells JetStream the batch is
/// in progress so it is not redelivered after `ack_wait`.
async fn apply_keeping_messages(
    ctx: &Context,
    sku: &Sku,
    epoch: u64,
    plan: &BatchPlan,
    batch: &IntentBatch,
) -> Result<dropline_store::AppliedBatch, StoreError> {
    let apply = ctx.store.apply_batch(sku, epoch, plan);
    tokio::pin!(apply);
    let every = Duration::from_millis((ctx.config.consumer.ack_wait_ms / 3).max(1));
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut apply => return result,
            _ = progress.tick() => {
                if let Err(err) = batch.in_progress().await {
                    tracing::warn!(%err, "signal batch in progress");
                }
            }
        }
    }
}

/// Announces the previous owner's last batch again: it may have died
/// between committing and announcing, leaving buyers waiting out their wait.
async fn reannounce_last_batch(ctx: &Context, sku: &Sku) {
    match ctx.store.last_batch(sku, ctx.config.batch_len_max).await {
        Ok(decisions) => publish_decisions(ctx, sku, &decisions).await,
        Err(err) => tracing::warn!(%err, "read the last batch to announce it again"),
    }
}

/// Tells waiting gateways about every decision of the batch, new and repeated.
async fn announce(ctx: &Context, sku: &Sku, plan: &BatchPlan) {
    publish_decisions(ctx, sku, &plan.decided).await;
    publish_decisions(ctx, sku, &plan.repeated).await;
}

async fn publish_decisions(ctx: &Context, sku: &Sku, decisions: &[Decision]) {
    if let Err(err) = ctx.bus.publish_decisions(sku, decisions).await {
        // Gateways fall back to reading the store.
        tracing::warn!(%err, "announce decisions");
    }
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
