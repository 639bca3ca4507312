//! The drop under test: created for the run, or an existing one.

use anyhow::Context as _;
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::{NewDrop, PoolOptions, Store};

/// The drop a burst buys from.
pub struct DropUnderTest {
    pub sku: Sku,
    /// Units for sale (initial stock and restocks).
    pub stock: u32,
    /// Created for this run: every purchase it has is this burst's, so its
    /// whole line can be replayed.
    pub fresh: bool,
}

/// Where the drop comes from.
pub enum DropSource {
    /// An existing drop, read through the gateway at `url`.
    Existing { url: String, sku: Sku },
    /// A new drop, created in the gateway's database.
    New {
        database_url: String,
        stock: u32,
        per_user_limit: u32,
    },
}

pub async fn prepare_drop(
    source: &DropSource,
    client: &reqwest::Client,
) -> anyhow::Result<DropUnderTest> {
    match source {
        DropSource::Existing { url, sku } => existing_drop(url, sku, client).await,
        DropSource::New {
            database_url,
            stock,
            per_user_limit,
        } => new_drop(database_url, *stock, *per_user_limit).await,
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

async fn new_drop(
    database_url: &str,
    stock: u32,
    per_user_limit: u32,
) -> anyhow::Result<DropUnderTest> {
    let sku = Sku::parse(format!(
        "load-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))?;
    let store = Store::connect_lazy(database_url, &PoolOptions::default())?;
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "loadtest".into(),
            stock: Stock::parse(stock.into())?,
            per_user_limit: PerUserLimit::parse(per_user_limit.into())?,
            opens_at: None,
        })
        .await
        .context("create the drop (is the database migrated? run `dropline migrate`)")?;
    store.close().await;
    Ok(DropUnderTest {
        sku,
        stock,
        fresh: true,
    })
}
