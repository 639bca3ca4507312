//! The drops under test: created for the run (one or many SKUs, the sizes
//! of one model), or an existing one; and the wait until processors own
//! the new drops' partitions.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::{NewDrop, PoolOptions, Store};
use futures::{StreamExt as _, TryStreamExt as _};

/// The drop a burst buys from.
pub struct DropUnderTest {
    pub sku: Sku,
    /// Units for sale (initial stock and restocks).
    pub stock: u32,
    /// Created for this run: every purchase it has is this burst's, so its
    /// whole line can be replayed.
    pub fresh: bool,
}

/// Where the drops come from.
pub enum DropSource {
    /// An existing drop, read through the gateway at `url`.
    Existing { url: String, sku: Sku },
    /// `skus` new drops (named `load-<run id>-<i>`), each with `stock` units,
    /// created in the gateway's database.
    New {
        database_url: String,
        skus: u32,
        stock: u32,
        per_user_limit: u32,
    },
}

/// Most SKUs one run creates (the sizes of a few hundred models): each is
/// a partition, a consumer and a check of its own.
pub const SKUS_MAX: u32 = 10_000;

/// Drops created at once: half the pool's connections, so thousands of
/// drops are not created one round trip after another.
const CREATES_IN_FLIGHT_MAX: usize = 8;

/// The drops a burst buys from, in SKU order.
pub async fn prepare_drops(
    source: &DropSource,
    client: &reqwest::Client,
) -> anyhow::Result<Vec<DropUnderTest>> {
    match source {
        DropSource::Existing { url, sku } => Ok(vec![existing_drop(url, sku, client).await?]),
        DropSource::New {
            database_url,
            skus,
            stock,
            per_user_limit,
        } => new_drops(database_url, *skus, *stock, *per_user_limit).await,
    }
}

async fn existing_drop(
    url: &str,
    sku: &Sku,
    client: &reqwest::Client,
) -> anyhow::Result<DropUnderTest> {
    let view: serde_json::Value = client
        .get(format!("{url}/v1/drops/{sku}"))
        .send()
        .await
        .with_context(|| format!("reach the gateway at {url}"))?
        .error_for_status()
        .with_context(|| format!("read drop {sku}"))?
        .json()
        .await?;
    let stock =
        view["initial_stock"].as_u64().unwrap_or(0) + view["restocked"].as_u64().unwrap_or(0);
    Ok(DropUnderTest {
        sku: sku.clone(),
        stock: u32::try_from(stock).context("the drop's stock")?,
        fresh: false,
    })
}

async fn new_drops(
    database_url: &str,
    skus: u32,
    stock: u32,
    per_user_limit: u32,
) -> anyhow::Result<Vec<DropUnderTest>> {
    anyhow::ensure!(
        (1..=SKUS_MAX).contains(&skus),
        "{skus} SKUs: a run creates 1 to {SKUS_MAX}"
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let new_drop = |i: u32| -> anyhow::Result<NewDrop> {
        Ok(NewDrop {
            sku: Sku::parse(format!("load-{}-{i}", &run_id[..12]))?,
            name: "loadtest".into(),
            stock: Stock::parse(stock.into())?,
            per_user_limit: PerUserLimit::parse(per_user_limit.into())?,
            opens_at: None,
        })
    };
    let drops = (0..skus)
        .map(new_drop)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    let created = futures::stream::iter(&drops)
        .map(|drop| store.create_drop(drop))
        .buffered(CREATES_IN_FLIGHT_MAX)
        .try_collect::<Vec<_>>()
        .await
        .context("create the drops (is the database migrated? run `dropline migrate`)");
    store.close().await;
    created?;
    Ok(drops
        .into_iter()
        .map(|drop| DropUnderTest {
            sku: drop.sku,
            stock,
            fresh: true,
        })
        .collect())
}

/// Waits until a processor holds a live lease on every drop's partition,
/// at most `wait_ms_max`; returns how many were still unowned then (a burst
/// at an unowned partition waits for its first claim, which the burst
/// would then measure).
pub async fn wait_until_owned(
    database_url: &str,
    drops: &[DropUnderTest],
    wait_ms_max: u64,
) -> anyhow::Result<usize> {
    let ours: std::collections::HashSet<&Sku> = drops.iter().map(|d| &d.sku).collect();
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
    let unowned = async {
        loop {
            // One query for all drops; the database may hold others.
            let rows = store
                .drop_statuses(None)
                .await
                .context("read the drops' partitions")?;
            let owned = rows
                .iter()
                .filter(|row| row.lease_live && ours.contains(&row.drop.sku))
                .count();
            let unowned = ours.len() - owned;
            if unowned == 0 || Instant::now() >= deadline {
                return Ok::<_, anyhow::Error>(unowned);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    store.close().await;
    unowned
}
