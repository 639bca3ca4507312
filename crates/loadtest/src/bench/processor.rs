//! The processor alone, draining a pre-filled partition of one hot SKU.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use dropline_bus::{Bus, IntentMessage};
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, Quantity, Sku, UserId};
use dropline_store::{PoolOptions, Store};
use dropline_testkit::ceiling::{self, CeilingRows};
use dropline_testkit::databases::{create_database, drop_database};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};

use super::{bench_sku, create_drop, intent_publisher, object};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProcessorBench {
    /// Intents to pre-fill.
    pub intents: u32,
    /// Units in the drop.
    pub stock: u32,
    /// Postgres base URL (a fresh database is created under it).
    pub postgres: String,
    pub nats_url: String,
    /// The `dropline` binary to run.
    pub dropline: String,
    /// Extra arguments for `dropline processor`.
    pub processor_args: Vec<String>,
}

/// Publishes in flight at once (async-nats stalls past 5,000 without backpressure).
const PUBLISH_WINDOW: usize = 1_000;
/// How long the processor may take to drain the partition.
const DRAIN_S_MAX: u64 = 600;

/// Runs the bench on a database of its own, created here and dropped after.
pub async fn run(bench: &ProcessorBench) -> anyhow::Result<Map<String, Value>> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("dropline_bench_{}", &run_id[..12]);
    let database_url = create_database(&bench.postgres, &database)
        .await
        .context("create the bench database")?;
    let measured = drain(bench, &database_url, &run_id).await;
    let dropped = drop_database(&bench.postgres, &database).await;
    let result = measured?;
    dropped?;
    Ok(result)
}

/// Pre-fills the partition, runs the processor until it has decided every
/// intent and reads the drain's time from the commit times.
async fn drain(
    bench: &ProcessorBench,
    database_url: &str,
    run_id: &str,
) -> anyhow::Result<Map<String, Value>> {
    let sku = bench_sku(run_id)?;
    create_drop(database_url, &sku, bench.stock).await?;

    let bus = intent_publisher(&bench.nats_url).await?;
    let filled = Instant::now();
    prefill(&bus, &sku, bench.intents).await?;
    let fill_s = filled.elapsed().as_secs_f64();
    eprintln!(
        "pre-filled {} intents in {fill_s:.2} s ({:.0}/s)",
        bench.intents,
        f64::from(bench.intents) / fill_s
    );

    let mut processor = tokio::process::Command::new(&bench.dropline)
        .arg("processor")
        .args(&bench.processor_args)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", &bench.nats_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} processor", bench.dropline))?;
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    wait_until_decided(&store, &sku, bench.intents).await?;
    let _ = processor.kill().await;

    let span = store.decision_span(&sku).await?;
    store.close().await;
    let (Some(first), Some(last)) = (span.first_commit, span.last_commit) else {
        anyhow::bail!("no commit recorded");
    };
    let drain_s = (last - first).as_seconds_f64();
    let rate = f64::from(bench.intents) / drain_s.max(1e-9);
    println!(
        "processor drained {} intents ({} won) in {drain_s:.3} s over {} batches: {rate:.0} decisions/s",
        bench.intents, span.won, span.batches
    );
    let mut figures = object(json!({
        "intents": bench.intents, "stock": bench.stock, "won": span.won, "batches": span.batches,
        "drain_s": drain_s, "decisions_per_s": rate, "prefill_per_s": f64::from(bench.intents) / fill_s,
    }));
    let rows = CeilingRows {
        sku,
        rows: bench.intents,
        won: u32::try_from(span.won)?,
        batch_len: mean_batch_len(bench.intents, span.batches),
    };
    figures.extend(
        ceiling(
            bench,
            database_url,
            &rows,
            rate,
            f64::from(bench.intents) / fill_s,
        )
        .await?,
    );
    Ok(figures)
}

/// The processor's batches, on average (the ceiling writes batches of it).
fn mean_batch_len(intents: u32, batches: u64) -> usize {
    usize::try_from(u64::from(intents).div_ceil(batches.max(1))).unwrap_or(usize::MAX)
}

/// What the machine allows (see `dropline_testkit::ceiling`), measured
/// right after the drain on the same database and the same messages, and
/// the processor's rate as a share of the slower side.
async fn ceiling(
    bench: &ProcessorBench,
    database_url: &str,
    rows: &CeilingRows,
    decisions_per_s: f64,
    published_per_s: f64,
) -> anyhow::Result<Map<String, Value>> {
    let inserted_per_s = ceiling::postgres_rows_per_s(database_url, rows)
        .await
        .context("Postgres ceiling")?;
    let pulled_per_s = ceiling::jetstream_pulled_per_s(
        &bench.nats_url,
        &rows.sku,
        rows.rows.into(),
        rows.batch_len,
    )
    .await
    .context("JetStream ceiling")?;
    let ceiling_per_s = inserted_per_s.min(pulled_per_s);
    let share = decisions_per_s / ceiling_per_s;
    println!(
        "ceiling, batches of {}: Postgres inserts {inserted_per_s:.0} rows/s (one transaction per batch), \
         JetStream publishes {published_per_s:.0} and pulls and acks {pulled_per_s:.0} messages/s; \
         the processor decides at {:.0}% of the slower",
        rows.batch_len,
        share * 100.0
    );
    Ok(object(json!({
        "ceiling_batch_len": rows.batch_len, "ceiling_postgres_rows_per_s": inserted_per_s,
        "ceiling_jetstream_publish_per_s": published_per_s, "ceiling_jetstream_pull_ack_per_s": pulled_per_s,
        "ceiling_per_s": ceiling_per_s, "processor_share_of_ceiling": share,
    })))
}

async fn wait_until_decided(store: &Store, sku: &Sku, intents: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(DRAIN_S_MAX);
    loop {
        let decided = store
            .drop_statuses(Some(sku))
            .await?
            .first()
            .map_or(0, |status| status.decided);
        if decided >= u64::from(intents) {
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
        // One intent per message: the costliest layout for the processor.
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
