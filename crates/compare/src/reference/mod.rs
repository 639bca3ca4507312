//! REFERENCE DESIGNS FOR COMPARISON, NOT PRODUCT CODE.
//!
//! The designs dropline is measured against in `just compare`, each served
//! by a small axum server inside the `compare` tool, over the same HTTP
//! contract as the real gateway, so one load generator measures them all:
//!
//! - [`Design::SeedLock`]: the seed's design exactly, bug included (a Redis
//!   lock that expires under a slow write and is `DEL`eted unconditionally).
//! - [`Design::RowLock`]: one transaction per request, a conditional
//!   `UPDATE` of the hot stock row, plus the order insert.
//! - [`Design::RedisLua`]: an atomic check-and-decrement script in Redis,
//!   the order written to Postgres afterwards.
//!
//! Each server gets a fresh database of its own (`reference_<design>_<id>`)
//! with two plain tables, `stock` and `orders` (see [`db`]). Nothing here is
//! used by dropline itself; it exists so the incident can be replayed.
//!
//! A design's code has no slow-database knob: on the slow-database day its
//! pool connects through a [`dropline_testkit::DelayProxy`], the same kind and the same
//! delay as dropline's processes, and runs unchanged.
//!
//! What a design does not do: per-user limits (every buyer of the load
//! generator is a distinct user) and `Prefer: wait` (every answer is
//! synchronous, so there is never a `202`).

mod db;
mod http;
mod redis_lua;
mod row_lock;
mod seed_lock;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub use db::{create_database, orders};

/// Which reference design a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    SeedLock,
    RowLock,
    RedisLua,
}

impl Design {
    pub fn name(self) -> &'static str {
        match self {
            Self::SeedLock => "seed-lock",
            Self::RowLock => "row-lock",
            Self::RedisLua => "redis-lua",
        }
    }
}

/// The knobs of the designs. Timings are the seed's, scaled down.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// `seed-lock`: the lock's time to live (`SET … PX lock_ms`).
    pub lock_ms: u64,
    /// `seed-lock`: how long a request spins for the lock before it answers
    /// `503` + `Retry-After` (the seed's "busy, try again").
    pub lock_wait_ms: u64,
    /// `seed-lock`: pause between two attempts to take the lock.
    pub lock_retry_ms: u64,
    /// `seed-lock`: the slow write, between reading and writing the stock.
    pub write_ms: u64,
    /// Every design: Postgres connections in the server's pool.
    pub db_connections_max: u32,
}

/// What a design answers to one purchase.
pub(crate) enum Answer {
    Won {
        order_id: uuid::Uuid,
        seq: i64,
    },
    SoldOut,
    /// Nothing done; the client may retry with the same key (`503`).
    Busy(&'static str),
}

/// Shared by every request of one server.
pub(crate) struct State {
    design: Design,
    /// The drops on sale, each with `initial_stock` units.
    skus: HashSet<String>,
    initial_stock: i64,
    timings: Timings,
    pool: sqlx::PgPool,
    redis: redis::aio::MultiplexedConnection,
    /// Checks buyers' tokens, as the gateway does.
    verifier: Arc<dropline_identity::Verifier>,
}

/// What to start: a design, its knobs, where its services are, its drops
/// (every SKU with `stock` units), and how it checks buyers' tokens.
pub struct Spec<'a> {
    pub design: Design,
    pub timings: Timings,
    /// Postgres for setting up (the design's database is created here).
    pub postgres: &'a str,
    /// Postgres the design serves through (the same, or a delaying proxy).
    pub serve_postgres: &'a str,
    pub redis_url: &'a str,
    pub skus: &'a [String],
    pub stock: u32,
    pub verifier: Arc<dropline_identity::Verifier>,
}

/// One reference design, listening on 127.0.0.1 with its own database.
pub struct Server {
    pub url: String,
    /// The design's fresh database, by name and reached directly (not
    /// through the slow-database proxy): for the tally and the cleanup.
    pub database: String,
    pub database_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pool: sqlx::PgPool,
}

impl Server {
    /// Creates the design's database on `postgres` (stock `stock` for
    /// each of `skus`), primes Redis and starts serving. The design's pool connects
    /// through `serve_postgres` (the same server, or a delaying proxy in
    /// front of it); setting up goes to `postgres` directly. On failure, the
    /// database just created is dropped again.
    pub async fn start(spec: &Spec<'_>) -> anyhow::Result<Self> {
        let postgres = spec.postgres;
        let database = create_database(postgres, spec.design).await?;
        let started = Self::serve(
            spec,
            &format!("{postgres}/{database}"),
            &format!("{}/{database}", spec.serve_postgres),
        )
        .await;
        if started.is_err() {
            if let Err(err) = dropline_testkit::drop_database(postgres, &database).await {
                eprintln!("reference design: {err:#}");
            }
        }
        started
    }

    /// [`Self::start`] once the database exists: set up through
    /// `database_url`, served through `serve_url`.
    async fn serve(spec: &Spec<'_>, database_url: &str, serve_url: &str) -> anyhow::Result<Self> {
        let (design, timings) = (spec.design, spec.timings);
        db::migrate(database_url, design, spec.skus, spec.stock).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(timings.db_connections_max)
            .acquire_timeout(Duration::from_secs(60))
            .connect(serve_url)
            .await
            .with_context(|| format!("connect to {serve_url}"))?;
        let redis_url = spec.redis_url;
        let redis = redis::Client::open(redis_url)
            .context("parse the Redis URL")?
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connect to Redis at {redis_url}"))?;
        let state = Arc::new(State {
            design,
            skus: spec.skus.iter().cloned().collect(),
            initial_stock: spec.stock.into(),
            timings,
            pool: pool.clone(),
            redis,
            verifier: spec.verifier.clone(),
        });
        if design == Design::RedisLua {
            redis_lua::prime(&state).await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the reference server")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(state);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("reference server: {err}");
            }
        });
        let database = database_url
            .rsplit_once('/')
            .map_or(database_url, |(_, name)| name);
        Ok(Self {
            url,
            database: database.to_string(),
            database_url: database_url.to_string(),
            shutdown: Some(shutdown),
            task,
            pool,
        })
    }

    /// Stops serving and closes the pool.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        self.pool.close().await;
    }
}

/// Runs one purchase through the design.
pub(crate) async fn purchase(
    state: &State,
    sku: &str,
    key: &str,
    user: &str,
) -> anyhow::Result<Answer> {
    match state.design {
        Design::SeedLock => seed_lock::purchase(state, sku, key, user).await,
        Design::RowLock => row_lock::purchase(state, sku, key, user).await,
        Design::RedisLua => redis_lua::purchase(state, sku, key, user).await,
    }
}
