//! `just compare`: the incident, replayed. The same burst of buyers, from the
//! same load generator ([`crate::burst::fire`]), against the three reference
//! designs ([`crate::reference`]) and against dropline itself (a gateway and
//! two processors), in three workloads; one row per (workload, strategy).
//!
//! The slow-database day injects its delay one way for every design: each
//! row gets a fresh [`DelayProxy`] in [`Delay::EveryTransaction`] mode, and
//! the design's Postgres connections go through it (a reference design's
//! pool; dropline's gateway and processors, `dropline migrate` included).
//! Every transaction takes `--db-delay-ms` longer inside the database: the
//! proxy holds the client's message that ends it for that long before
//! Postgres receives it (a `COMMIT` or `ROLLBACK`; for a statement run
//! outside `BEGIN`, its own transaction, the statement itself in the simple
//! protocol or the `Sync` that commits it in the extended one). So the
//! transaction keeps its row locks through the delay, as the seed's slow
//! database did, and a design that queues on a lock (row-lock) pays for it
//! the way it would; every transaction pays once, however many statements
//! it has. Connecting, a pool's ping, a statement's prepare, `BEGIN` and
//! statements inside a transaction block are not delayed; see
//! [`crate::reference::proxy`] for the exact rules. No design's code knows
//! about the delay. Creating and filling a reference design's database, and
//! the tally's reads, go to Postgres directly.
//!
//! Every database a row creates (`reference_<design>_<id>`,
//! `dropline_load_<id>`) is dropped once the row is measured, unless
//! `--keep-databases`.

pub mod tally;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use sqlx::Connection as _;

use crate::burst::BurstResults;
use crate::reference::proxy::{self, Delay, DelayProxy};
use crate::reference::{self, Design, Timings};
use crate::setup::DropUnderTest;
use tally::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// 50,000 buyers, 100 pairs.
    Sneaker,
    /// 50,000 buyers, as many units: every attempt wins (the hot row).
    Big,
    /// 5,000 buyers, 100 pairs, every database transaction completing
    /// `--db-delay-ms` late (for every design, through a proxy).
    SlowDb,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Sneaker => "sneaker",
            Self::Big => "big",
            Self::SlowDb => "slow-db",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    SeedLock,
    RowLock,
    RedisLua,
    Dropline,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::SeedLock => "seed-lock",
            Self::RowLock => "row-lock",
            Self::RedisLua => "redis-lua",
            Self::Dropline => tally::DROPLINE,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The incident, replayed: the same buyers against four designs."
)]
pub struct Args {
    /// Workloads to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sneaker,big,slow-db"
    )]
    pub workloads: Vec<Workload>,
    /// Designs to run each workload against, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "seed-lock,row-lock,redis-lua,dropline"
    )]
    pub strategies: Vec<Strategy>,
    /// Multiplies every workload's default number of buyers (and the big
    /// drop's stock, which equals its buyers).
    #[arg(long, default_value_t = 1.0)]
    pub buyers_scale: f64,
    /// Buyers of the sneaker drop [default: 50,000 × scale].
    #[arg(long)]
    pub sneaker_buyers: Option<u32>,
    /// Pairs in the sneaker drop.
    #[arg(long, default_value_t = 100)]
    pub sneaker_stock: u32,
    /// Buyers of the big drop [default: 50,000 × scale].
    #[arg(long)]
    pub big_buyers: Option<u32>,
    /// Units in the big drop [default: its buyers].
    #[arg(long)]
    pub big_stock: Option<u32>,
    /// Buyers on the slow-database day [default: 5,000 × scale].
    #[arg(long)]
    pub slow_db_buyers: Option<u32>,
    /// Pairs on the slow-database day.
    #[arg(long, default_value_t = 100)]
    pub slow_db_stock: u32,
    /// HTTP connections shared by all buyers (the same for every design;
    /// the same default as `loadtest`).
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// seed-lock: the lock's time to live.
    #[arg(long, default_value_t = 1_000)]
    pub lock_ms: u64,
    /// seed-lock: how long a request waits for the lock before a `503`.
    #[arg(long, default_value_t = 10_000)]
    pub lock_wait_ms: u64,
    /// seed-lock: pause between two attempts at the lock.
    #[arg(long, default_value_t = 10)]
    pub lock_retry_ms: u64,
    /// seed-lock: the slow write.
    #[arg(long, default_value_t = 1_200)]
    pub write_ms: u64,
    /// slow-db: how much longer every database transaction takes, for every
    /// design (a proxy in front of Postgres holds the message that ends each
    /// transaction this long, so its locks are held that much longer).
    #[arg(long, default_value_t = 200)]
    pub db_delay_ms: u64,
    /// Postgres connections of each reference design's pool.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub db_connections_max: u32,
    #[command(flatten)]
    pub services: crate::Services,
    /// Redis for seed-lock and redis-lua.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Milliseconds between dropline's partition being claimed and the burst.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Also write every row as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Keep each row's database (`reference_*`, `dropline_load_*`) instead
    /// of dropping it once the row is measured.
    #[arg(long)]
    pub keep_databases: bool,
}

/// One workload's sizes.
struct Sizes {
    buyers: u32,
    stock: u32,
    db_delay_ms: u64,
}

impl Args {
    fn scaled(&self, buyers: u32) -> u32 {
        ((f64::from(buyers) * self.buyers_scale).round() as u32).max(1)
    }

    fn sizes(&self, workload: Workload) -> Sizes {
        match workload {
            Workload::Sneaker => Sizes {
                buyers: self.sneaker_buyers.unwrap_or_else(|| self.scaled(50_000)),
                stock: self.sneaker_stock,
                db_delay_ms: 0,
            },
            Workload::Big => {
                let buyers = self.big_buyers.unwrap_or_else(|| self.scaled(50_000));
                Sizes {
                    buyers,
                    stock: self.big_stock.unwrap_or(buyers),
                    db_delay_ms: 0,
                }
            }
            Workload::SlowDb => Sizes {
                buyers: self.slow_db_buyers.unwrap_or_else(|| self.scaled(5_000)),
                stock: self.slow_db_stock,
                db_delay_ms: self.db_delay_ms,
            },
        }
    }

    fn timings(&self) -> Timings {
        Timings {
            lock_ms: self.lock_ms,
            lock_wait_ms: self.lock_wait_ms,
            lock_retry_ms: self.lock_retry_ms,
            write_ms: self.write_ms,
            db_connections_max: self.db_connections_max,
        }
    }

    /// The load generator's arguments for one run against `url`.
    fn load(&self, url: &str, sizes: &Sizes, database_url: &str) -> crate::Args {
        crate::Args {
            url: Some(url.to_string()),
            services: self.services.clone(),
            chaos: None,
            buyers: sizes.buyers,
            stock: sizes.stock,
            per_user_limit: 1,
            connections: self.connections,
            wait_s: 10,
            sku: None,
            database_url: database_url.to_string(),
            settle_ms: self.settle_ms,
            json: None,
            html: std::path::PathBuf::new(),
            keep_database: self.keep_databases,
            // Every design gets the same plain crowd: the reference designs
            // do not all keep a per-user limit.
            crowd: crate::burst::Crowd::plain(),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &workload in &args.workloads {
        let sizes = args.sizes(workload);
        eprintln!(
            "== {}: {} buyers, {} units, db delay {} ms",
            workload.name(),
            sizes.buyers,
            sizes.stock,
            sizes.db_delay_ms
        );
        let mut table_rows = Vec::new();
        for &strategy in &args.strategies {
            eprintln!("-- {} / {}", workload.name(), strategy.name());
            let row = match strategy {
                Strategy::SeedLock => {
                    reference_run(&args, workload, &sizes, Design::SeedLock).await
                }
                Strategy::RowLock => reference_run(&args, workload, &sizes, Design::RowLock).await,
                Strategy::RedisLua => {
                    reference_run(&args, workload, &sizes, Design::RedisLua).await
                }
                Strategy::Dropline => dropline_run(&args, workload, &sizes).await,
            }
            .with_context(|| format!("{} / {}", workload.name(), strategy.name()))?;
            eprintln!(
                "   sold {} (oversold {}), duplicates {}, lost {}, errors {}, {:.2} s",
                row.sold, row.oversold, row.duplicates, row.lost, row.errors, row.wall_s
            );
            table_rows.push(row);
        }
        let title = format!(
            "{}: {} buyers, {} units{}",
            workload.name(),
            sizes.buyers,
            sizes.stock,
            if sizes.db_delay_ms > 0 {
                format!(", every database transaction +{} ms", sizes.db_delay_ms)
            } else {
                String::new()
            }
        );
        let table_refs: Vec<&Row> = table_rows.iter().collect();
        println!("{}", tally::table(&title, &table_refs));
        if let Some(ratios) = tally::against_dropline(&table_refs) {
            println!("{ratios}");
        }
        println!();
        rows.extend(table_rows);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(rows)
}

async fn reference_run(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
    design: Design,
) -> anyhow::Result<Row> {
    let proxy = slow_db_proxy(sizes, &args.services.postgres).await?;
    let serve_postgres = served_through(proxy.as_ref(), &args.services.postgres)?;
    let sku = format!("cmp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let server = reference::Server::start(
        design,
        args.timings(),
        &args.services.postgres,
        &serve_postgres,
        &args.redis_url,
        &sku,
        sizes.stock,
    )
    .await?;
    eprintln!(
        "   {} on {} ({}, served through {serve_postgres})",
        design.name(),
        server.url,
        server.database_url
    );
    let database = server.database.clone();
    let measured = measure_reference(args, workload, sizes, design, server, &sku).await;
    // The design's pool is closed: the proxy has nothing left to relay.
    drop(proxy);
    let forgotten = forget_database(args, &database).await;
    let row = measured?;
    forgotten?;
    Ok(row)
}

/// The burst against a started reference design, which it then stops, and
/// the row from the orders its database holds.
async fn measure_reference(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
    design: Design,
    server: reference::Server,
    sku: &str,
) -> anyhow::Result<Row> {
    let load = args.load(&server.url, sizes, &server.database_url);
    let fired = fire(&load, sku, sizes.stock).await;
    let database_url = server.database_url.clone();
    server.stop().await;
    let results = fired?;
    let keys = reference::order_keys(&database_url, sku).await?;
    Ok(tally::row(
        workload.name(),
        design.name(),
        sizes.stock,
        &results,
        &keys,
    ))
}

async fn fire(load: &crate::Args, sku: &str, stock: u32) -> anyhow::Result<BurstResults> {
    let drop = DropUnderTest {
        sku: dropline_core::Sku::parse(sku.to_string())?,
        stock,
    };
    crate::burst::fire(load, &drop).await
}

async fn dropline_run(args: &Args, workload: Workload, sizes: &Sizes) -> anyhow::Result<Row> {
    let proxy = slow_db_proxy(sizes, &args.services.postgres).await?;
    let stack_postgres = served_through(proxy.as_ref(), &args.services.postgres)?;
    let mut stack =
        crate::stack::Stack::start(&stack_postgres, &args.services.nats_url, false, 2).await?;
    let database = stack.database_name().to_string();
    let measured = measure_dropline(args, workload, sizes, &stack, &database).await;
    eprintln!("   stack logs: {}", stack.log_dir().display());
    // The processes go first, then the proxy they talk through.
    stack.stop().await;
    drop(stack);
    drop(proxy);
    let forgotten = forget_database(args, &database).await;
    let row = measured?;
    forgotten?;
    Ok(row)
}

/// The burst against a started dropline stack whose database is `database`,
/// and the row from the purchases it recorded.
async fn measure_dropline(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
    stack: &crate::stack::Stack,
    database: &str,
) -> anyhow::Result<Row> {
    // The tool itself talks to Postgres directly, never through the proxy.
    let database_url = format!("{}/{database}", args.services.postgres);
    let load = args.load(&stack.url, sizes, &database_url);
    let client = crate::burst::client(args.connections)?;
    let sale = crate::setup::prepare_drop(&load, &client).await?;
    wait_for_owner(&database_url, sale.sku.as_str()).await?;
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let results = crate::burst::fire(&load, &sale).await?;
    let keys = dropline_won_keys(&database_url, sale.sku.as_str()).await?;
    Ok(tally::row(
        workload.name(),
        tally::DROPLINE,
        sizes.stock,
        &results,
        &keys,
    ))
}

/// The slow-database day's proxy in front of `postgres`, one per row so no
/// row inherits another's connections; none on the other days.
async fn slow_db_proxy(sizes: &Sizes, postgres: &str) -> anyhow::Result<Option<DelayProxy>> {
    if sizes.db_delay_ms == 0 {
        return Ok(None);
    }
    let upstream = proxy::upstream_of(postgres).await?;
    let delay = Delay::EveryTransaction(Duration::from_millis(sizes.db_delay_ms));
    Ok(Some(DelayProxy::start(upstream, delay).await?))
}

/// The Postgres base URL a design under test connects to.
fn served_through(proxy: Option<&DelayProxy>, postgres: &str) -> anyhow::Result<String> {
    match proxy {
        Some(proxy) => proxy.base_url(postgres),
        None => Ok(postgres.to_string()),
    }
}

/// Drops a row's database once the row is measured, unless
/// `--keep-databases`.
async fn forget_database(args: &Args, database: &str) -> anyhow::Result<()> {
    if args.keep_databases {
        eprintln!("   kept database {database}");
        return Ok(());
    }
    crate::stack::drop_database(&args.services.postgres, database).await
}

/// How long a new drop's partition may take to be claimed.
const CLAIM_WAIT_MS_MAX: u64 = 60_000;

/// Waits until a processor holds the drop's partition, so the burst measures
/// selling, not discovery (slower through the delaying proxy).
async fn wait_for_owner(database_url: &str, sku: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .with_context(|| format!("connect to {database_url}"))?;
    let deadline = std::time::Instant::now() + Duration::from_millis(CLAIM_WAIT_MS_MAX);
    loop {
        let owned: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM partitions
                            WHERE sku = $1 AND owner IS NOT NULL AND lease_until > now())",
        )
        .bind(sku)
        .fetch_one(&mut conn)
        .await
        .context("read the partition")?;
        if owned {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no processor claimed {sku} within {CLAIM_WAIT_MS_MAX} ms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await?;
    Ok(())
}

/// The key of every winning purchase dropline recorded for `sku`.
async fn dropline_won_keys(database_url: &str, sku: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .with_context(|| format!("connect to {database_url}"))?;
    let keys = sqlx::query_scalar(
        "SELECT idempotency_key FROM purchases WHERE sku = $1 AND outcome = 'won'",
    )
    .bind(sku)
    .fetch_all(&mut conn)
    .await
    .context("read the purchases")?;
    conn.close().await?;
    Ok(keys)
}
