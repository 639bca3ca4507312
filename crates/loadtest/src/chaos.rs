//! Faults injected live during a burst (`--chaos`), on the tool's own stack.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dropline_core::Sku;
use dropline_store::{PoolOptions, Store};
use dropline_testkit::{Signal, Stack};

use crate::setup::DropUnderTest;

/// How long the burst may take to reach the point where the fault is injected.
const TRIGGER_WAIT_MS_MAX: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Chaos {
    /// SIGKILL the processor that owns the (first) drop's partition.
    Kill,
    /// SIGSTOP the (first) drop's owning processor for three leases, then
    /// SIGCONT it: a zombie that wakes up after its partitions moved.
    Stall,
    /// Stop the (private) nats-server for a second, then start it again.
    NatsRestart,
}

/// Waits until a tenth of the buyers are decided over all `drops`, then
/// injects `chaos` (a processor fault hits the first drop's owner, and with
/// it every partition that processor holds). Returns what was done, for
/// the report.
pub async fn inject(
    chaos: Chaos,
    stack: &mut Stack,
    drops: &[DropUnderTest],
    buyers: u32,
) -> anyhow::Result<String> {
    let threshold = u64::from((buyers / 10).max(1));
    let owner = owner_once_decided(stack, drops, threshold).await?;
    match chaos {
        Chaos::Kill => {
            let processor = owning_processor(stack, owner.as_deref())?;
            processor.signal(Signal::Kill)?;
            Ok(format!(
                "killed {} (SIGKILL) after {threshold} decisions",
                processor.name
            ))
        }
        Chaos::Stall => {
            let frozen_ms = 3 * stack.options.lease_ms;
            let processor = owning_processor(stack, owner.as_deref())?;
            processor.signal(Signal::Stop)?;
            tokio::time::sleep(Duration::from_millis(frozen_ms)).await;
            processor.signal(Signal::Cont)?;
            Ok(format!(
                "froze {} (SIGSTOP) for {frozen_ms} ms, then woke it",
                processor.name
            ))
        }
        Chaos::NatsRestart => {
            stack.stop_nats()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.start_nats().await?;
            Ok("stopped nats-server for 1 s, then started it again".into())
        }
    }
}

/// Waits until `threshold` intents of `drops` are decided; returns the
/// first drop's partition owner then.
async fn owner_once_decided(
    stack: &Stack,
    drops: &[DropUnderTest],
    threshold: u64,
) -> anyhow::Result<Option<String>> {
    let first = &drops.first().context("no drop to inject a fault into")?.sku;
    let ours: HashSet<&Sku> = drops.iter().map(|d| &d.sku).collect();
    let store = Store::connect_lazy(&stack.database_url, &PoolOptions::default())?;
    let deadline = Instant::now() + Duration::from_millis(TRIGGER_WAIT_MS_MAX);
    let owner = loop {
        // One read for every drop of the stack's database (all the tool's).
        let statuses = store.drop_statuses(None).await?;
        let ours: Vec<_> = statuses
            .into_iter()
            .filter(|s| ours.contains(&s.drop.sku))
            .collect();
        if ours.iter().map(|s| s.decided).sum::<u64>() >= threshold {
            let status = ours.into_iter().find(|s| &s.drop.sku == first);
            break status.with_context(|| format!("no drop {first}"))?.owner;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the burst never reached {threshold} decisions"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    store.close().await;
    Ok(owner)
}

fn owning_processor<'a>(
    stack: &'a mut Stack,
    owner: Option<&str>,
) -> anyhow::Result<&'a mut dropline_testkit::DroplineProcess> {
    let owner = owner.context("no processor owns the partition")?;
    stack
        .processor_named(owner)
        .with_context(|| format!("owner {owner} is not one of this tool's processors"))
}
