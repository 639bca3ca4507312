//! `bench`: the processor alone on one hot SKU.
//!
//! Pre-fills the stream with N intents for a fresh drop (no gateway), then
//! starts `dropline processor` as its own process and times the drain from
//! its first commit to its last, from the commit timestamps in Postgres.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use dropline_bus::{Bus, BusOptions, StreamSettings};
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, PerUserLimit, Quantity, Sku, Stock, UserId};
use dropline_store::{NewDrop, PoolOptions, Store};
use futures::stream::{FuturesUnordered, StreamExt};

#[derive(Debug, Parser)]
#[command(about = "Time the processor draining a pre-filled partition")]
struct Args {
    /// Intents to pre-fill.
    #[arg(long, default_value_t = 200_000)]
    intents: u32,
    /// Units in the drop (the default sells out at once; try the intents count for all-win).
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
    /// The dropline binary to run as the processor.
    #[arg(long, default_value = "target/release/dropline")]
    dropline: String,
    /// Extra arguments for `dropline processor` (e.g. --batch-len-max 1000).
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    processor_args: Vec<String>,
    /// Also write the result as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Publishes in flight at once (async-nats stalls past 5,000 without backpressure).
const PUBLISH_WINDOW: usize = 1_000;

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
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database_url = format!("{}/dropline_bench_{}", args.postgres, &run_id[..12]);
    Store::migrate(&database_url)
        .await
        .context("create the bench database")?;
    let store = Store::connect_lazy(&database_url, &PoolOptions::default())?;
    let sku = Sku::parse(format!("bench-{}", &run_id[..12]))?;
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "bench".into(),
            stock: Stock::parse(args.stock.into())?,
            per_user_limit: PerUserLimit::parse(1)?,
        })
        .await?;

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
        .env("DATABASE_URL", &database_url)
        .env("NATS_URL", &args.nats_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} processor", args.dropline))?;
    let pool = sqlx::PgPool::connect(&database_url).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let decided: i64 = sqlx::query_scalar("SELECT decided FROM partitions WHERE sku = $1")
            .bind(sku.as_str())
            .fetch_one(&pool)
            .await?;
        if decided >= i64::from(args.intents) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain did not finish within 10 minutes ({decided} decided)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let drain_s = last - first;
    let rate = f64::from(args.intents) / drain_s.max(1e-9);
    println!(
        "processor drained {} intents ({} won) in {drain_s:.3} s over {batches} batches: {rate:.0} decisions/s",
        args.intents, won
    );
    if let Some(path) = &args.json {
        let result = serde_json::json!({
            "intents": args.intents, "stock": args.stock, "won": won, "batches": batches,
            "drain_s": drain_s, "decisions_per_s": rate, "prefill_per_s": f64::from(args.intents) / fill_s,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)?;
    }
    pool.close().await;
    let _ = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"dropline_bench_{}\" WITH (FORCE)",
        &run_id[..12]
    ))
    .execute(&sqlx::PgPool::connect(&format!("{}/postgres", args.postgres)).await?)
    .await;
    Ok(())
}

async fn prefill(bus: &Bus, sku: &Sku, intents: u32) -> anyhow::Result<()> {
    let mut in_flight = FuturesUnordered::new();
    for i in 0..intents {
        let intent = IntentPayload {
            key: IdempotencyKey::parse(format!("k{i}"))?,
            user_id: UserId::parse(format!("u{i}"))?,
            quantity: Quantity::ONE,
        };
        in_flight.push(async move { bus.publish_intent(sku, &intent).await });
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
