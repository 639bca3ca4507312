//! The `compare` command line: workloads, designs, and the knobs of each.

use std::sync::Arc;

use clap::{Parser, ValueEnum};
use dropline_identity::{KeyConfig, Verifier};
use dropline_testkit::BuyerTokens;
use loadtest::burst::{BurstOptions, Crowd};
use loadtest::credentials::Credentials;

use crate::reference::Timings;
use crate::tally;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// 50,000 buyers, 100 pairs.
    Sneaker,
    /// 50,000 buyers, as many units: every attempt wins (the hot row).
    Big,
    /// 5,000 buyers, 100 pairs, every database transaction completing
    /// `--db-delay-ms` late (for every design, through a proxy).
    SlowDb,
    /// 50,000 buyers over 20 sizes (SKUs) of 5 pairs each, released
    /// together; each buyer picks a size.
    Sizes,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sneaker => "sneaker",
            Self::Big => "big",
            Self::SlowDb => "slow-db",
            Self::Sizes => "sizes",
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
    pub fn name(self) -> &'static str {
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
    /// Every design's buyers carry tokens of this secret, made for the run:
    /// the gateway and the reference designs verify them alike.
    #[arg(skip = BuyerTokens::random())]
    pub buyer_tokens: BuyerTokens,
    /// Workloads to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sneaker,big,slow-db,sizes"
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
    /// Buyers of the sizes drop, spread over its sizes [default: 50,000 × scale].
    #[arg(long)]
    pub sizes_buyers: Option<u32>,
    /// Sizes (SKUs) in the sizes drop.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub sizes_skus: u32,
    /// Pairs of each size.
    #[arg(long, default_value_t = 5)]
    pub sizes_stock: u32,
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
    pub services: loadtest::cli::Services,
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

/// One workload's sizes: `skus` drops of `stock` units each, all released
/// to the same buyers at once.
pub(crate) struct Sizes {
    pub(crate) buyers: u32,
    pub(crate) skus: u32,
    pub(crate) stock: u32,
    pub(crate) db_delay_ms: u64,
}

impl Sizes {
    /// What is on sale, for titles: `100 units`, `20 SKUs × 5 units`.
    pub(crate) fn units(&self) -> String {
        match self.skus {
            1 => format!("{} units", self.stock),
            skus => format!("{skus} SKUs × {} units", self.stock),
        }
    }
}

impl Args {
    fn scaled(&self, buyers: u32) -> u32 {
        ((f64::from(buyers) * self.buyers_scale).round() as u32).max(1)
    }

    pub(crate) fn sizes(&self, workload: Workload) -> Sizes {
        match workload {
            Workload::Sneaker => Sizes {
                buyers: self.sneaker_buyers.unwrap_or_else(|| self.scaled(50_000)),
                skus: 1,
                stock: self.sneaker_stock,
                db_delay_ms: 0,
            },
            Workload::Big => {
                let buyers = self.big_buyers.unwrap_or_else(|| self.scaled(50_000));
                Sizes {
                    buyers,
                    skus: 1,
                    stock: self.big_stock.unwrap_or(buyers),
                    db_delay_ms: 0,
                }
            }
            Workload::SlowDb => Sizes {
                buyers: self.slow_db_buyers.unwrap_or_else(|| self.scaled(5_000)),
                skus: 1,
                stock: self.slow_db_stock,
                db_delay_ms: self.db_delay_ms,
            },
            Workload::Sizes => Sizes {
                buyers: self.sizes_buyers.unwrap_or_else(|| self.scaled(50_000)),
                skus: self.sizes_skus,
                stock: self.sizes_stock,
                db_delay_ms: 0,
            },
        }
    }

    /// What the reference designs check tokens with: the run's secret.
    pub(crate) fn verifier(&self) -> anyhow::Result<Arc<Verifier>> {
        let config = KeyConfig {
            secret: Some(self.buyer_tokens.secret().to_string()),
            ..KeyConfig::default()
        };
        Ok(Arc::new(Verifier::from_config(&config)?))
    }

    pub(crate) fn timings(&self) -> Timings {
        Timings {
            lock_ms: self.lock_ms,
            lock_wait_ms: self.lock_wait_ms,
            lock_retry_ms: self.lock_retry_ms,
            write_ms: self.write_ms,
            db_connections_max: self.db_connections_max,
        }
    }

    /// The burst every design of a workload gets, against `url`.
    pub(crate) fn burst(&self, url: &str, sizes: &Sizes) -> BurstOptions {
        BurstOptions {
            gateways: vec![url.to_string()],
            buyers: sizes.buyers,
            // Every design gets the same plain crowd: the reference designs
            // do not all keep a per-user limit.
            crowd: Crowd::plain(),
            connections: self.connections,
            wait_s: 10,
            credentials: Credentials::Minted(self.buyer_tokens.clone()),
        }
    }
}
