//! Connecting, creating the database and migrating.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
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

/// What `url` says, with one default of dropline's own: no TLS to a
/// Postgres on this machine unless `sslmode` (in the URL or `PGSSLMODE`)
/// asks for it. libpq's default, `prefer`, would encrypt loopback traffic,
/// which protects nothing there and costs every batch its CPU; to any other
/// host `prefer` stands.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let connect: PgConnectOptions = url.parse()?;
    let mode_given = url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some();
    let host = connect.get_host();
    let loopback = host == "localhost"
        || host.starts_with('/')
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(match loopback && !mode_given {
        true => connect.ssl_mode(PgSslMode::Disable),
        false => connect,
    })
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
        let connect = connect_options(url)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_left_out_on_this_machine_unless_asked_for() {
        let mode = |url: &str| connect_options(url).expect("a URL").get_ssl_mode();
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@localhost:5432/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(mode("postgres://u@[::1]/d"), PgSslMode::Disable));
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@db.example/d"),
            PgSslMode::Prefer
        ));
    }
}
