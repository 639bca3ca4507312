//! The drop under test: created for the run, or an existing one.

use anyhow::Context as _;
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::{NewDrop, PoolOptions, Store};

use crate::Args;

pub struct DropUnderTest {
    pub sku: Sku,
    pub stock: u32,
}

pub async fn prepare_drop(args: &Args, client: &reqwest::Client) -> anyhow::Result<DropUnderTest> {
    if let Some(sku) = &args.sku {
        let sku = Sku::parse(sku.clone())?;
        let view: serde_json::Value = client
            .get(format!("{}/v1/drops/{sku}", args.url()))
            .send()
            .await
            .with_context(|| format!("reach the gateway at {}", args.url()))?
            .error_for_status()
            .with_context(|| format!("read drop {sku}"))?
            .json()
            .await?;
        let stock =
            view["initial_stock"].as_u64().unwrap_or(0) + view["restocked"].as_u64().unwrap_or(0);
        return Ok(DropUnderTest {
            sku,
            stock: stock as u32,
        });
    }
    let sku = Sku::parse(format!(
        "load-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))?;
    let store = Store::connect_lazy(&args.database_url, &PoolOptions::default())?;
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "loadtest".into(),
            stock: Stock::parse(args.stock.into())?,
            per_user_limit: PerUserLimit::parse(args.per_user_limit.into())?,
        })
        .await
        .context("create the drop (is the database migrated? run `dropline migrate`)")?;
    store.close().await;
    Ok(DropUnderTest {
        sku,
        stock: args.stock,
    })
}
