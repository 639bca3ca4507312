//! `just bench`: dropline's two halves measured alone, each on a fresh
//! database that is dropped at the end.
//!
//! - [`processor`]: the processor alone on one hot SKU: the stream is
//!   pre-filled with intents for a fresh drop (no gateway), then
//!   `dropline processor` runs as its own process and the drain is timed
//!   from its first commit to its last, from the commit times the store
//!   records.
//! - [`gateway`]: `dropline gateway` with no processor, sent purchases with
//!   `Prefer: respond-async` over a bounded pool of keep-alive connections;
//!   a `202` is the gateway's answer right after JetStream's PubAck, so the
//!   `202`s per second are the rate at which purchases are accepted. Any
//!   other answer fails the bench.
//!
//! - [`idle`]: many open drops created together and no buyers: how soon
//!   they are all owned, how evenly, with how many lease acquisitions, and
//!   the CPU the idle stack (dropline, NATS, its Postgres backends) uses.
//!
//! - [`history`]: a SKU with a long history (a million decided intents)
//!   claimed: how long the claim takes, how much the processor grows for
//!   it, and old keys answered as recorded.
//!
//! Figures go to stdout (and the caller's JSON), progress to stderr.

pub mod gateway;
pub mod history;
pub mod idle;
pub mod processor;

use anyhow::Context as _;
use dropline_bus::{Bus, BusOptions, StreamSettings};
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::{NewDrop, PoolOptions, Store};
use dropline_testkit::databases::drop_database;
use dropline_testkit::stack::{Stack, StackOptions};
use serde_json::{Map, Value};

/// `dropline`'s default lease (`DROPLINE_LEASE_MS`): the stacks of the idle
/// and history parts run the shipped setting (idle cost depends on how
/// often leases are renewed).
const SERVICE_LEASE_MS: u64 = 10_000;

/// Runs `measure` on a stack of a gateway and `processors` processors with
/// the service's lease, on a private nats-server and a fresh database,
/// which is dropped after.
async fn on_service_stack(
    postgres: &str,
    processors: usize,
    measure: impl AsyncFnOnce(&Stack) -> anyhow::Result<Map<String, Value>>,
) -> anyhow::Result<Map<String, Value>> {
    let options = StackOptions {
        private_nats: true,
        lease_ms: SERVICE_LEASE_MS,
        ..StackOptions::new(postgres, "", processors)
    };
    let mut stack = Stack::start(options).await?;
    let measured = measure(&stack).await;
    stack.stop();
    let dropped = drop_database(postgres, stack.database_name()).await;
    drop(stack);
    let figures = measured?;
    dropped?;
    Ok(figures)
}

/// A publisher of intents on the NATS at `url`, its stream made if missing.
async fn intent_publisher(url: &str) -> anyhow::Result<Bus> {
    let bus = Bus::connect(url, &BusOptions::default(), true)
        .await
        .map_err(|e| anyhow::anyhow!("connect to NATS: {e}"))?;
    bus.ensure_stream(&StreamSettings::default())
        .await
        .map_err(|e| anyhow::anyhow!("stream: {e}"))?;
    Ok(bus)
}

/// A fresh SKU name for this run.
fn bench_sku(run_id: &str) -> anyhow::Result<Sku> {
    Ok(Sku::parse(format!("bench-{}", &run_id[..12]))?)
}

/// Puts `stock` units of `sku` on sale in the database at `database_url`.
async fn create_drop(database_url: &str, sku: &Sku, stock: u32) -> anyhow::Result<()> {
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "bench".into(),
            stock: Stock::parse(stock.into())?,
            per_user_limit: PerUserLimit::parse(1)?,
            opens_at: None,
        })
        .await
        .context("create the drop")?;
    store.close().await;
    Ok(())
}

/// The fields of a JSON object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
