//! One row of a table: one design under one workload, measured on a
//! database of its own that is dropped after.

use std::time::Duration;

use anyhow::Context as _;
use dropline_store::{PoolOptions, Store};
use dropline_testkit::proxy::{upstream_of, Delay, DelayProxy};
use dropline_testkit::stack::{Stack, StackOptions};
use loadtest::burst::{BurstOptions, BurstResults};
use loadtest::setup::{DropSource, DropUnderTest};

use crate::cli::{Args, Sizes, Workload};
use crate::reference::{self, Design};
use crate::tally::{self, Row};

pub(crate) async fn reference_run(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
    design: Design,
) -> anyhow::Result<Row> {
    let proxy = slow_db_proxy(sizes, &args.services.postgres).await?;
    let serve_postgres = served_through(proxy.as_ref(), &args.services.postgres)?;
    let skus = sku_names(sizes.skus);
    let server = reference::Server::start(&reference::Spec {
        design,
        timings: args.timings(),
        postgres: &args.services.postgres,
        serve_postgres: &serve_postgres,
        redis_url: &args.redis_url,
        skus: &skus,
        stock: sizes.stock,
        verifier: args.verifier()?,
    })
    .await?;
    eprintln!(
        "   {} on {} ({}, served through {serve_postgres})",
        design.name(),
        server.url,
        server.database_url
    );
    let database = server.database.clone();
    let measured = measure_reference(args, workload, sizes, design, server, &skus).await;
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
    skus: &[String],
) -> anyhow::Result<Row> {
    let fired = fire(&args.burst(&server.url, sizes), skus, sizes.stock).await;
    let database_url = server.database_url.clone();
    server.stop().await;
    let results = fired?;
    let orders = reference::orders(&database_url).await?;
    Ok(tally::row(
        workload.name(),
        design.name(),
        on_sale(sizes),
        &results,
        &orders,
    ))
}

/// A reference design's drops: `cmp-<id>`, or `cmp-<id>-<n>` for each of
/// several.
fn sku_names(count: u32) -> Vec<String> {
    let id = format!("cmp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    match count {
        1 => vec![id],
        _ => (1..=count).map(|n| format!("{id}-{n}")).collect(),
    }
}

fn on_sale(sizes: &Sizes) -> tally::OnSale {
    tally::OnSale {
        skus: sizes.skus,
        stock_each: sizes.stock,
    }
}

async fn fire(burst: &BurstOptions, skus: &[String], stock: u32) -> anyhow::Result<BurstResults> {
    let drops = skus
        .iter()
        .map(|sku| {
            Ok(DropUnderTest {
                sku: dropline_core::Sku::parse(sku.clone())?,
                stock,
                fresh: true,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    loadtest::burst::fire(burst, &drops).await
}

pub(crate) async fn dropline_run(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
) -> anyhow::Result<Row> {
    let proxy = slow_db_proxy(sizes, &args.services.postgres).await?;
    let stack_postgres = served_through(proxy.as_ref(), &args.services.postgres)?;
    let mut stack = Stack::start(StackOptions {
        buyer_tokens: args.buyer_tokens.clone(),
        ..StackOptions::new(
            &stack_postgres,
            &args.services.nats_url,
            DROPLINE_PROCESSORS,
        )
    })
    .await?;
    let database = stack.database_name().to_string();
    let measured = measure_dropline(args, workload, sizes, &stack, &database).await;
    eprintln!("   stack logs: {}", stack.log_dir().display());
    // The processes go first, then the proxy they talk through.
    stack.stop();
    drop(stack);
    drop(proxy);
    let forgotten = forget_database(args, &database).await;
    let row = measured?;
    forgotten?;
    Ok(row)
}

/// dropline's processors in every row: as `loadtest`'s own stack has.
const DROPLINE_PROCESSORS: usize = 2;

/// The burst against a started dropline stack whose database is `database`,
/// and the row from the purchases it recorded.
async fn measure_dropline(
    args: &Args,
    workload: Workload,
    sizes: &Sizes,
    stack: &Stack,
    database: &str,
) -> anyhow::Result<Row> {
    // The tool itself talks to Postgres directly, never through the proxy.
    let database_url = format!("{}/{database}", args.services.postgres);
    let client = loadtest::burst::client(args.connections)?;
    let source = DropSource::New {
        database_url: database_url.clone(),
        skus: sizes.skus,
        stock: sizes.stock,
        per_user_limit: 1,
    };
    let drops = loadtest::setup::prepare_drops(&source, &client).await?;
    anyhow::ensure!(!drops.is_empty(), "no drop to sell");
    let store = Store::connect_lazy(&database_url, &PoolOptions::default())?;
    let measured = async {
        for drop in &drops {
            wait_for_owner(&store, &drop.sku).await?;
        }
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        let burst = args.burst(stack.url(), sizes);
        let results = loadtest::burst::fire(&burst, &drops).await?;
        let mut orders = Vec::new();
        for drop in &drops {
            orders.extend(
                store
                    .winners(&drop.sku)
                    .await?
                    .into_iter()
                    .map(|w| tally::Order {
                        sku: drop.sku.to_string(),
                        key: w.idempotency_key.to_string(),
                    }),
            );
        }
        Ok::<_, anyhow::Error>((results, orders))
    }
    .await;
    store.close().await;
    let (results, orders) = measured?;
    Ok(tally::row(
        workload.name(),
        tally::DROPLINE,
        on_sale(sizes),
        &results,
        &orders,
    ))
}

/// The slow-database day's proxy in front of `postgres`, one per row so no
/// row inherits another's connections; none on the other days.
async fn slow_db_proxy(sizes: &Sizes, postgres: &str) -> anyhow::Result<Option<DelayProxy>> {
    if sizes.db_delay_ms == 0 {
        return Ok(None);
    }
    let upstream = upstream_of(postgres).await?;
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
    dropline_testkit::drop_database(&args.services.postgres, database).await
}

/// How long a new drop's partition may take to be claimed.
const CLAIM_WAIT_MS_MAX: u64 = 60_000;

/// Waits until a processor holds the drop's partition, so the burst measures
/// selling, not discovery (slower through the delaying proxy).
async fn wait_for_owner(store: &Store, sku: &dropline_core::Sku) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_millis(CLAIM_WAIT_MS_MAX);
    loop {
        let owned = store
            .drop_statuses(Some(sku))
            .await
            .context("read the partition")?
            .first()
            .is_some_and(|status| status.lease_live);
        if owned {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no processor claimed {sku} within {CLAIM_WAIT_MS_MAX} ms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
