//! Where dropctl finds Postgres and NATS, and how it explains not finding them.

use anyhow::Context as _;
use dropline_bus::{Bus, BusOptions, NatsAccess};
use dropline_core::redact;
use dropline_store::{PoolOptions, Store, StoreError};

#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", default_value = dropline_store::DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = dropline_bus::DEFAULT_NATS_URL, global = true)]
    pub nats_url: String,
    #[command(flatten)]
    pub nats_access: NatsAccess,
}

impl ServiceArgs {
    pub fn store(&self) -> anyhow::Result<Store> {
        let options = PoolOptions {
            connections_max: 2,
            ..PoolOptions::default()
        };
        Store::connect_lazy(&self.database_url, &options)
            .with_context(|| format!("configure Postgres {}", redact(&self.database_url)))
    }

    pub async fn bus(&self) -> anyhow::Result<Bus> {
        let options = BusOptions {
            client_name: "dropctl".into(),
            request_timeout_ms: 3_000,
            access: self.nats_access.clone(),
            ..BusOptions::default()
        };
        Bus::connect(&self.nats_url, &options, true)
            .await
            .map_err(|e| anyhow::anyhow!("connect to NATS at {}: {e}", redact(&self.nats_url)))
    }
}

impl ServiceArgs {
    /// Which Postgres could not be reached, when that is what `err` says
    /// (its password hidden); empty otherwise.
    pub fn where_unreachable(&self, err: &anyhow::Error) -> String {
        let unreachable = err
            .chain()
            .filter_map(|cause| cause.downcast_ref::<StoreError>())
            .any(StoreError::is_unreachable);
        match unreachable {
            true => format!(" (Postgres at {})", redact(&self.database_url)),
            false => String::new(),
        }
    }
}

/// Turns a store error into a message an operator can act on.
pub fn explain(err: StoreError) -> anyhow::Error {
    let text = err.to_string();
    if text.contains("relation \"drops\" does not exist") {
        anyhow::anyhow!("the database has no dropline schema: run `dropline migrate` first")
    } else if text.contains("does not exist") && text.contains("database") {
        anyhow::anyhow!("{text}: run `dropline migrate` first")
    } else {
        anyhow::Error::new(err)
    }
}
