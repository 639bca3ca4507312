//! Connecting, creating the database and migrating.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::StoreError;

/// Postgres on its default local port, trust auth, database `dropline`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/dropline";

/// Pool limits, spelled out rather than left to sqlx's defaults.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub connections_max: u32,
    pub acquire_timeout_ms: u64,
    /// Per-statement limit set on every connection, so no call hangs forever.
    pub statement_timeout_ms: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            connections_max: 16,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: PgPool,
}

impl Store {
    /// Connects lazily: the pool opens connections on first use, so a service
    /// can start (and report not-ready) while Postgres is down.
    pub fn connect_lazy(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url.parse()?;
        let connect = connect.options([(
            "statement_timeout",
            options.statement_timeout_ms.to_string(),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(options.connections_max)
            .acquire_timeout(Duration::from_millis(options.acquire_timeout_ms))
            // A ping on every acquire costs a round trip per request; a dead
            // connection shows up as an I/O error that callers already retry.
            .test_before_acquire(false)
            .connect_lazy_with(connect);
        Ok(Self { pool })
    }

    /// Creates the database if it is missing, then applies every migration.
    /// Safe to run concurrently: sqlx migrates under an advisory lock.
    pub async fn migrate(url: &str) -> Result<(), StoreError> {
        if !Postgres::database_exists(url).await? {
            // Two migrators may race to create it; the loser sees it exist.
            if let Err(err) = Postgres::create_database(url).await {
                if !Postgres::database_exists(url).await? {
                    return Err(err.into());
                }
            }
        }
        let store = Self::connect_lazy(url, &PoolOptions::default())?;
        sqlx::migrate!("../../migrations")
            .run(&store.pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        store.pool.close().await;
        Ok(())
    }

    /// One cheap round trip: is Postgres answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
