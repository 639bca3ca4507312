//! Faults injected live during a burst (`--chaos`), on the tool's own stack.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::setup::DropUnderTest;
use crate::stack::{Stack, LEASE_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Chaos {
    /// SIGKILL the processor that owns the drop's partition.
    Kill,
    /// SIGSTOP the owning processor for three leases, then SIGCONT it: a
    /// zombie that wakes up after its partition moved.
    Stall,
    /// Stop the (private) nats-server for a second, then start it again.
    NatsRestart,
}

/// Waits until a tenth of the buyers are decided, then injects `chaos`.
/// Returns what was done, for the report.
pub async fn inject(
    chaos: Chaos,
    stack: &mut Stack,
    drop: &DropUnderTest,
    buyers: u32,
) -> anyhow::Result<String> {
    let pool = sqlx::PgPool::connect(&stack.database_url).await?;
    let threshold = i64::from((buyers / 10).max(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let decided: i64 = sqlx::query_scalar("SELECT decided FROM partitions WHERE sku = $1")
            .bind(drop.sku.as_str())
            .fetch_one(&pool)
            .await?;
        if decided >= threshold {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the burst never reached {threshold} decisions"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let owner: Option<String> = sqlx::query_scalar("SELECT owner FROM partitions WHERE sku = $1")
        .bind(drop.sku.as_str())
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    match chaos {
        Chaos::Kill => {
            let (name, child) = owning_processor(stack, owner.as_deref())?;
            child.start_kill()?;
            Ok(format!(
                "killed {name} (SIGKILL) after {threshold} decisions"
            ))
        }
        Chaos::Stall => {
            let (name, child) = owning_processor(stack, owner.as_deref())?;
            let pid = child.id().context("processor pid")?.to_string();
            signal("-STOP", &pid).await?;
            tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
            signal("-CONT", &pid).await?;
            Ok(format!(
                "froze {name} (SIGSTOP) for {} ms, then woke it",
                3 * LEASE_MS
            ))
        }
        Chaos::NatsRestart => {
            stack.stop_nats().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            stack.start_nats().await?;
            Ok("stopped nats-server for 1 s, then started it again".into())
        }
    }
}

fn owning_processor<'a>(
    stack: &'a mut Stack,
    owner: Option<&str>,
) -> anyhow::Result<(String, &'a mut tokio::process::Child)> {
    let owner = owner.context("no processor owns the partition")?;
    stack
        .processors
        .iter_mut()
        .find(|(name, _)| name == owner)
        .map(|(name, child)| (name.clone(), child))
        .with_context(|| format!("owner {owner} is not one of this tool's processors"))
}

async fn signal(signal: &str, pid: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
    Ok(())
}
