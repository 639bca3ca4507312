//! Claims free partitions of live drops, as many as this instance's fair
//! share leaves room for, and starts one task to work each; sets the fair
//! share from the live drops and the processors alive.
//!
//! Claims in one statement per look, never per partition: with a thousand
//! open drops, a task per drop trying its own claim every few seconds cost
//! CPU while idle, and new drops waited for those tasks' pauses (about 5 s
//! for 1,000 drops created together). Looks when Postgres says the sharing
//! changed (at most once per discovery interval), and every third of a
//! lease for what changes with time (a lease running out): a look every
//! 250 ms was most of Postgres's work with 1,000 idle drops. Must not work
//! a partition itself: its task does, so that one slow start never holds
//! up the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dropline_bus::Bus;
use dropline_core::Sku;
use dropline_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::lease::renew_all;
use crate::meters;
use crate::partition::own_partition;
use crate::progress_records::ProgressRecords;
use crate::share::Share;
use crate::shared_commit::SharedCommits;
use crate::ProcessorConfig;

/// Runs until `shutdown` completes, then stops every partition loop and
/// hands its partition back so another instance can take it at once.
pub async fn run(
    store: Store,
    bus: Bus,
    config: ProcessorConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let commits = SharedCommits::start(&store);
    let progress = ProgressRecords::start(store.clone());
    let ctx = Arc::new(Context {
        store,
        bus,
        config,
        share: Share::new(),
        leases: Arc::default(),
        commits,
        progress,
    });
    let renewer = renew_all(
        ctx.leases.clone(),
        ctx.store.clone(),
        ctx.config.instance_id.clone(),
        ctx.config.lease_ms,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut partitions: HashMap<Sku, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.config.discovery_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    meters::register();
    tracing::info!(instance = %ctx.config.instance_id, "processor started");
    tokio::pin!(shutdown);

    // Written every third of a lease (an instance silent for a lease counts
    // as gone); the first one of a run tells the others to look, so that
    // instances started together see each other at once.
    let mut last_heartbeat: Option<Instant> = None;
    let every_third_of_lease = Duration::from_millis((ctx.config.lease_ms / 3).max(1));
    let mut looks = Looks::new(every_third_of_lease);
    let listener = listen_for_changes(ctx.store.clone(), looks.changed.clone());

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if ctx.commits.committer_stopped() {
            // Every batch of this instance would wait for it in vain while
            // its leases were still renewed: exit, and let the partitions
            // go to another instance after their lease.
            anyhow::bail!("the batch committer stopped");
        }
        partitions.retain(|_, task| !task.is_finished());
        if last_heartbeat.is_none_or(|at| at.elapsed() >= every_third_of_lease)
            && heartbeat(&ctx, last_heartbeat.is_none()).await
        {
            last_heartbeat = Some(Instant::now());
        }
        if looks.due() {
            looks.looked(look(&ctx, &mut partitions, &stop_rx).await);
        }
    }
    listener.abort();

    tracing::info!(partitions = partitions.len(), "processor stopping");
    let _ = stop_tx.send(true);
    for (_, task) in partitions {
        let _ = task.await;
    }
    renewer.abort();
    ctx.progress.flush().await;
    if let Err(err) = ctx.store.processor_leaving(&ctx.config.instance_id).await {
        tracing::warn!(%err, "leave the processor list");
    }
    Ok(())
}

/// When to look for partitions: when the sharing changed (told by
/// Postgres), again at the next tick after a look that failed, and every
/// third of a lease for what changes with time (a lease running out, a
/// processor gone silent).
struct Looks {
    changed: Arc<AtomicBool>,
    last: Option<Instant>,
    every: Duration,
}

impl Looks {
    fn new(every: Duration) -> Self {
        Self {
            // The first look is due at once.
            changed: Arc::new(AtomicBool::new(true)),
            last: None,
            every,
        }
    }

    /// Whether to look now. Clears the change first, so a change told
    /// during the look makes the next one due.
    fn due(&mut self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
            || self.last.is_none_or(|at| at.elapsed() >= self.every)
    }

    /// Records a look; one that failed is due again at the next tick.
    fn looked(&mut self, succeeded: bool) {
        if succeeded {
            self.last = Some(Instant::now());
        } else {
            self.changed.store(true, Ordering::Release);
        }
    }
}

/// Sets `changed` whenever the sharing may have changed: at each of
/// Postgres's notifications, and once listening (again), as notifications
/// sent while it was not are lost.
fn listen_for_changes(store: Store, changed: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.sharing_changes().await {
                Ok(mut changes) => loop {
                    // Listening from here on, and again after each change
                    // or lost connection (`next` makes it again): what
                    // changed before is looked at.
                    changed.store(true, Ordering::Release);
                    if let Err(err) = changes.next().await {
                        tracing::warn!(%err, "listen for changes of the sharing");
                        break;
                    }
                },
                Err(err) => tracing::warn!(%err, "listen for changes of the sharing"),
            }
            // Until it listens again, the periodic look stands in.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Says this instance is alive; `false` when the store did not hear it.
/// The first heartbeat of a run (`joining`) also tells the other
/// processors to look: a new instance, or one back under its old name.
async fn heartbeat(ctx: &Context, joining: bool) -> bool {
    match ctx
        .store
        .processor_heartbeat(&ctx.config.instance_id, joining)
        .await
    {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(%err, "processor heartbeat");
            false
        }
    }
}

/// Sets the fair share from the live drops and processors, then claims as
/// many free partitions as it leaves room for, in one statement, and starts
/// a task for each. `false` when the store did not answer.
async fn look(
    ctx: &Arc<Context>,
    partitions: &mut HashMap<Sku, JoinHandle<()>>,
    stop: &watch::Receiver<bool>,
) -> bool {
    let sharing = match ctx
        .store
        .sharing(ctx.config.closed_linger_s, ctx.config.lease_ms)
        .await
    {
        Ok(sharing) => sharing,
        Err(err) => {
            tracing::warn!(%err, "count live drops and processors");
            return false;
        }
    };
    meters::live_drops(sharing.live_drops);
    ctx.share.set_fair(sharing.live_drops, sharing.instances);
    let free = ctx.share.free_slots();
    if free == 0 {
        return true;
    }
    // A task still retrying after a failure keeps its partition.
    let busy: Vec<Sku> = partitions.keys().cloned().collect();
    let claimed = ctx
        .store
        .claim_free_partitions(
            &ctx.config.instance_id,
            free,
            &busy,
            ctx.config.lease_ms,
            ctx.config.closed_linger_s,
        )
        .await;
    match claimed {
        Ok(claimed) => {
            ctx.share.took(claimed.len());
            for (sku, claim) in claimed {
                let task =
                    tokio::spawn(own_partition(ctx.clone(), sku.clone(), claim, stop.clone()));
                partitions.insert(sku, task);
            }
            true
        }
        Err(err) => {
            tracing::warn!(%err, "claim free partitions");
            false
        }
    }
}
