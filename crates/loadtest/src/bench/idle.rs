//! Many open drops and no buyers: how soon a crowd of drops created
//! together is owned, how evenly the processors share them, how many lease
//! acquisitions that took, and then what the idle stack costs in CPU.
//!
//! The stack is a gateway and two processors with the service's own lease
//! (not the short one of the fault tests), on a private nats-server (so
//! its CPU is the stack's alone) and a fresh database. CPU is read from
//! `/proc/<pid>/stat` at the start and end of the idle window: dropline's
//! processes, the nats-server, and the Postgres backends serving the
//! stack's database (backends that connect during the window are missed;
//! the pools keep theirs open). Postgres' own background work (WAL writer,
//! checkpointer) serves every database on the server and is not counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::{NewDrop, PoolOptions, Store};
use dropline_testkit::cpu::CpuWatch;
use dropline_testkit::databases::backend_pids;
use dropline_testkit::stack::Stack;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Map, Value};

use super::{object, on_service_stack};

/// What to measure.
#[derive(Debug, Clone)]
pub struct IdleBench {
    /// Open drops created together.
    pub drops: u32,
    /// Length of the idle window measured.
    pub idle_s: u64,
    /// How long the drops may take to be owned before the bench fails.
    pub owned_wait_s: u64,
    /// Postgres base URL (the stack's fresh database is created under it).
    pub postgres: String,
}

/// The processors of the stack, as in `loadtest`'s own.
const PROCESSORS: usize = 2;

/// Drops created at once (each its own insert, as an operator's script
/// would).
const CREATE_CONCURRENCY: usize = 16;

pub async fn run(bench: &IdleBench) -> anyhow::Result<Map<String, Value>> {
    on_service_stack(&bench.postgres, PROCESSORS, async |stack| {
        measure(bench, stack).await
    })
    .await
}

async fn measure(bench: &IdleBench, stack: &Stack) -> anyhow::Result<Map<String, Value>> {
    let store = Store::connect_lazy(&stack.database_url, &PoolOptions::default())?;
    let measured = async {
        let mut figures = own_new_drops(bench, &store).await?;
        figures.extend(idle_cost(bench, stack).await?);
        Ok(figures)
    }
    .await;
    store.close().await;
    measured
}

/// Creates the drops together, then waits until every one is owned.
async fn own_new_drops(bench: &IdleBench, store: &Store) -> anyhow::Result<Map<String, Value>> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let skus = (0..bench.drops)
        .map(|i| Sku::parse(format!("idle-{}-{i}", &run_id[..8])))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    futures::stream::iter(&skus)
        .map(|sku| create_drop(store, sku))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let created_s = started.elapsed().as_secs_f64();
    eprintln!("created {} open drops in {created_s:.2} s", bench.drops);
    let created = Instant::now();
    let deadline = created + Duration::from_secs(bench.owned_wait_s);
    let owners = loop {
        let statuses = store.drop_statuses(None).await?;
        let owned = statuses.iter().filter(|s| s.lease_live).count();
        if owned == statuses.len() {
            break statuses;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{owned} of {} drops owned {} s after they were created",
            statuses.len(),
            bench.owned_wait_s
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let owned_s = created.elapsed().as_secs_f64();
    let acquisitions: u64 = owners.iter().map(|s| s.epoch).sum();
    let mut per_owner: BTreeMap<String, u64> = BTreeMap::new();
    for status in &owners {
        *per_owner
            .entry(status.owner.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let spread = per_owner.values().max().unwrap_or(&0) - per_owner.values().min().unwrap_or(&0);
    println!(
        "{} drops created together: all owned {owned_s:.2} s after the last was created; \
         partitions per processor {per_owner:?} (spread {spread}); {acquisitions} lease \
         acquisitions for {} partitions",
        bench.drops,
        owners.len()
    );
    Ok(object(json!({
        "idle_drops": bench.drops, "idle_created_s": created_s, "idle_owned_s": owned_s,
        "idle_partitions_per_processor": per_owner, "idle_owner_spread": spread,
        "idle_lease_acquisitions": acquisitions,
    })))
}

async fn create_drop(store: &Store, sku: &Sku) -> anyhow::Result<()> {
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "idle".into(),
            stock: Stock::parse(10)?,
            per_user_limit: PerUserLimit::parse(1)?,
            opens_at: None,
        })
        .await
        .with_context(|| format!("create drop {sku}"))?;
    Ok(())
}

/// CPU used by each part of the stack over the idle window, as a share of
/// one core.
async fn idle_cost(bench: &IdleBench, stack: &Stack) -> anyhow::Result<Map<String, Value>> {
    let watch = CpuWatch::start(vec![
        ("gateway", stack.gateway_pids()),
        ("processors", stack.processor_pids()),
        ("nats", stack.nats_pids()),
        (
            "postgres",
            backend_pids(&bench.postgres, stack.database_name()).await?,
        ),
    ]);
    let window = Duration::from_secs(bench.idle_s);
    eprintln!("idle for {} s ...", bench.idle_s);
    tokio::time::sleep(window).await;
    let mut figures = Map::new();
    let mut total = 0.0;
    let mut line = Vec::new();
    for (name, seconds) in watch.seconds()? {
        let share = seconds / window.as_secs_f64();
        total += share;
        line.push(format!("{name} {:.2}%", share * 100.0));
        figures.insert(format!("idle_cpu_{name}_share"), json!(share));
    }
    figures.insert("idle_cpu_share".into(), json!(total));
    figures.insert("idle_s".into(), json!(bench.idle_s));
    println!(
        "{} open drops, no buyers, {} s: {:.2}% of one core in all ({})",
        bench.drops,
        bench.idle_s,
        total * 100.0,
        line.join(", ")
    );
    Ok(figures)
}
