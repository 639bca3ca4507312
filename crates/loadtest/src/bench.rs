//! `bench`: dropline's two halves measured alone, each on a fresh database
//! that is dropped at the end. Both run by default, processor first;
//! `--only` picks one.
//!
//! - The processor alone on one hot SKU: pre-fills the stream with N intents
//!   for a fresh drop (no gateway), then starts `dropline processor` as its
//!   own process and times the drain from its first commit to its last, from
//!   the commit timestamps in Postgres.
//! - The gateway alone: starts `dropline gateway` with no processor (as
//!   `loadtest`'s stack starts it), sends N purchases, each with its own
//!   idempotency key and user, with `Prefer: respond-async` over a bounded
//!   pool of keep-alive HTTP/1.1 connections ([`loadtest::http::Pool`]), and
//!   counts the `202`s per second: a `202` is the gateway's answer right after
//!   JetStream's PubAck, so this is the rate at which purchases are accepted.
//!   Any other answer is an error, and the bench fails.
//!
//! The figures go to stdout (and `--json`), progress to stderr.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use dropline_bus::{Bus, BusOptions, IntentMessage, StreamSettings};
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, PerUserLimit, Quantity, Sku, Stock, UserId};
use dropline_store::{NewDrop, PoolOptions, Store};
use futures::stream::{FuturesUnordered, StreamExt};
use loadtest::http::Pool;
use loadtest::stack::{drop_database, Stack};
use serde_json::{json, Map, Value};

#[derive(Debug, Parser)]
#[command(
    about = "dropline's halves alone: the processor draining a pre-filled partition \
             (decisions/s), then the gateway with no processor (accepted purchases/s)"
)]
struct Args {
    /// Run only this part [default: both, processor first].
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Processor: intents to pre-fill.
    #[arg(long, default_value_t = 200_000)]
    intents: u32,
    /// Units in each part's drop (the default sells out at once; try the
    /// intents count for all-win). The gateway part decides nothing, so
    /// there it only has to exist.
    #[arg(long, default_value_t = 100)]
    stock: u32,
    /// Base URL of Postgres (a fresh database is created under it).
    #[arg(
        long,
        env = "DROPLINE_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    #[arg(long, env = "NATS_URL", default_value = dropline_bus::DEFAULT_NATS_URL)]
    nats_url: String,
    /// Processor: the dropline binary to run. (The gateway part runs the
    /// `dropline` next to this executable, as `loadtest`'s stack does.)
    #[arg(long, default_value = "target/release/dropline")]
    dropline: String,
    /// Processor: extra arguments for `dropline processor` (e.g.
    /// --batch-len-max 1000).
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    processor_args: Vec<String>,
    /// Gateway: purchases to send, each with its own idempotency key and user.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    purchases: u32,
    /// Gateway: HTTP/1.1 keep-alive connections the purchases share (also
    /// the most purchases in flight).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Also write the result as JSON here: the processor's fields
    /// (`decisions_per_s`, …) and the gateway's (`gateway_accepted_per_s`, …).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Processor,
    Gateway,
}

/// Publishes in flight at once (async-nats stalls past 5,000 without backpressure).
const PUBLISH_WINDOW: usize = 1_000;
/// How long the processor may take to drain the partition.
const DRAIN_S_MAX: u64 = 600;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut result = Map::new();
    if args.only != Some(Part::Gateway) {
        result.extend(processor_part(&args).await.context("processor")?);
    }
    if args.only != Some(Part::Processor) {
        result.extend(gateway_part(&args).await.context("gateway")?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(result))?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
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
        })
        .await
        .context("create the drop")?;
    store.close().await;
    Ok(())
}

/// The processor alone: its own database, created here and dropped after.
async fn processor_part(args: &Args) -> anyhow::Result<Map<String, Value>> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("dropline_bench_{}", &run_id[..12]);
    let database_url = format!("{}/{database}", args.postgres);
    Store::migrate(&database_url)
        .await
        .context("create the bench database")?;
    let measured = drain(args, &database_url, &run_id).await;
    let dropped = drop_database(&args.postgres, &database).await;
    let result = measured?;
    dropped?;
    Ok(result)
}

/// Pre-fills the partition, runs the processor until it has decided every
/// intent and reads the drain's time from the commit timestamps.
async fn drain(
    args: &Args,
    database_url: &str,
    run_id: &str,
) -> anyhow::Result<Map<String, Value>> {
    let sku = bench_sku(run_id)?;
    create_drop(database_url, &sku, args.stock).await?;

    let bus = Bus::connect(&args.nats_url, &BusOptions::default(), true)
        .await
        .map_err(|e| anyhow::anyhow!("connect to NATS: {e}"))?;
    bus.ensure_stream(&StreamSettings::default())
        .await
        .map_err(|e| anyhow::anyhow!("stream: {e}"))?;
    let filled = Instant::now();
    prefill(&bus, &sku, args.intents).await?;
    let fill_s = filled.elapsed().as_secs_f64();
    eprintln!(
        "pre-filled {} intents in {fill_s:.2} s ({:.0}/s)",
        args.intents,
        f64::from(args.intents) / fill_s
    );

    let mut processor = tokio::process::Command::new(&args.dropline)
        .arg("processor")
        .args(&args.processor_args)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", &args.nats_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} processor", args.dropline))?;
    let pool = sqlx::PgPool::connect(database_url).await?;
    wait_until_decided(&pool, &sku, args.intents).await?;
    let _ = processor.kill().await;

    // Commit timestamps: from the first batch's commit to the last one's.
    let (first, last, batches, won): (f64, f64, i64, i64) = sqlx::query_as(
        "SELECT extract(epoch FROM min(decided_at))::float8, extract(epoch FROM max(decided_at))::float8, \
                count(DISTINCT decided_at), count(*) FILTER (WHERE outcome = 'won') \
           FROM purchases WHERE sku = $1",
    )
    .bind(sku.as_str())
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    let drain_s = last - first;
    let rate = f64::from(args.intents) / drain_s.max(1e-9);
    println!(
        "processor drained {} intents ({} won) in {drain_s:.3} s over {batches} batches: {rate:.0} decisions/s",
        args.intents, won
    );
    Ok(object(json!({
        "intents": args.intents, "stock": args.stock, "won": won, "batches": batches,
        "drain_s": drain_s, "decisions_per_s": rate, "prefill_per_s": f64::from(args.intents) / fill_s,
    })))
}

async fn wait_until_decided(pool: &sqlx::PgPool, sku: &Sku, intents: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(DRAIN_S_MAX);
    loop {
        let decided: i64 = sqlx::query_scalar("SELECT decided FROM partitions WHERE sku = $1")
            .bind(sku.as_str())
            .fetch_one(pool)
            .await?;
        if decided >= i64::from(intents) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain did not finish within {DRAIN_S_MAX} s ({decided} decided)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn prefill(bus: &Bus, sku: &Sku, intents: u32) -> anyhow::Result<()> {
    let mut in_flight = FuturesUnordered::new();
    for i in 0..intents {
        let intent = IntentPayload {
            key: IdempotencyKey::parse(format!("k{i}"))?,
            user_id: UserId::parse(format!("u{i}"))?,
            quantity: Quantity::ONE,
        };
        // One intent per message: the costliest layout for the processor,
        // and the one earlier figures were measured with.
        let mut message = IntentMessage::default();
        message.push(&intent);
        in_flight.push(async move { bus.send_intents(sku, message).await?.accepted().await });
        if in_flight.len() >= PUBLISH_WINDOW {
            if let Some(result) = in_flight.next().await {
                result?;
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    Ok(())
}

/// The gateway alone: a stack of one gateway and no processor on its own
/// database, which is dropped after.
async fn gateway_part(args: &Args) -> anyhow::Result<Map<String, Value>> {
    let mut stack = Stack::start(&args.postgres, &args.nats_url, false, 0).await?;
    let measured = accept_purchases(args, &stack).await;
    stack.stop().await;
    let dropped = drop_database(&args.postgres, stack.database_name()).await;
    drop(stack);
    let accepted = measured?;
    dropped?;
    Ok(accepted)
}

/// Sends every purchase to the stack's gateway and reports the `202`s per
/// second; fails if any purchase got another answer.
async fn accept_purchases(args: &Args, stack: &Stack) -> anyhow::Result<Map<String, Value>> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let sku = bench_sku(&run_id)?;
    create_drop(&stack.database_url, &sku, args.stock).await?;
    let pool = Arc::new(Pool::new(&stack.url, args.connections as usize)?);
    pool.warm_up().await?;
    let purchases = Purchases {
        path: format!("/v1/drops/{sku}/purchases"),
        key_prefix: run_id[..12].to_string(),
        count: args.purchases,
        next: AtomicU32::new(0),
    };
    let started = Instant::now();
    let statuses = send_all(&pool, Arc::new(purchases), args.connections).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let accepted = statuses.get(&202).copied().unwrap_or(0);
    let rate = accepted as f64 / elapsed_s.max(1e-9);
    println!(
        "gateway accepted {accepted} of {} purchases in {elapsed_s:.3} s over {} connections: {rate:.0} accepted/s",
        args.purchases, args.connections
    );
    let refused: BTreeMap<u16, u64> = statuses.into_iter().filter(|(s, _)| *s != 202).collect();
    anyhow::ensure!(
        refused.is_empty(),
        "purchases not accepted, by status (0: no answer): {refused:?}"
    );
    Ok(object(json!({
        "gateway_purchases": args.purchases, "gateway_connections": args.connections,
        "gateway_accepted": accepted, "gateway_s": elapsed_s, "gateway_accepted_per_s": rate,
    })))
}

/// The purchases to send, handed out one at a time to whichever sender is free.
struct Purchases {
    path: String,
    key_prefix: String,
    count: u32,
    next: AtomicU32,
}

impl Purchases {
    /// The next purchase's number, while any is left.
    fn take(&self) -> Option<u32> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then_some(i)
    }
}

/// One sender per connection, each sending purchases back to back until
/// none is left; the answers counted by status.
async fn send_all(
    pool: &Arc<Pool>,
    purchases: Arc<Purchases>,
    connections: u32,
) -> anyhow::Result<BTreeMap<u16, u64>> {
    let senders: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(send_until_done(pool.clone(), purchases.clone())))
        .collect();
    let mut statuses = BTreeMap::new();
    for sender in senders {
        for (status, count) in sender.await.context("a sender")? {
            *statuses.entry(status).or_insert(0) += count;
        }
    }
    Ok(statuses)
}

async fn send_until_done(pool: Arc<Pool>, purchases: Arc<Purchases>) -> BTreeMap<u16, u64> {
    let mut statuses = BTreeMap::new();
    while let Some(i) = purchases.take() {
        let key = format!("{}-{i}", purchases.key_prefix);
        let body = Bytes::from(json!({ "user_id": format!("u{i}") }).to_string());
        let answer = pool
            .post_json(
                &purchases.path,
                &[("idempotency-key", &key), ("prefer", "respond-async")],
                body,
            )
            .await;
        *statuses.entry(answer.status).or_insert(0) += 1;
    }
    statuses
}

/// The fields of a JSON object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
