//! The reference designs' databases: one fresh database per server, two
//! plain tables, and the reads the HTTP contract and the tally need.
//!
//! `orders` has a unique (sku, idempotency_key) index for `row-lock` and
//! `redis-lua` (what a careful team adds), and none for `seed-lock`: the seed
//! relied on its lock, so its duplicate orders must stay observable. No
//! design's `stock` has a `CHECK (remaining >= 0)`: the oversell shows in
//! `orders`, as it did in the incident.

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};

use super::Design;
use crate::tally::Order;

/// Creates `reference_<design>_<id>` on the server at `postgres` (a base URL
/// without database) and returns its name.
pub async fn create_database(postgres: &str, design: Design) -> anyhow::Result<String> {
    let name = format!(
        "reference_{}_{}",
        design.name().replace('-', "_"),
        dropline_testkit::unique_suffix()
    );
    dropline_testkit::databases::create_empty_database(postgres, &name).await?;
    Ok(name)
}

/// Creates the tables in the database at `database_url` and puts `stock`
/// units of each of `skus` on sale.
pub async fn migrate(
    database_url: &str,
    design: Design,
    skus: &[String],
    stock: u32,
) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .with_context(|| format!("connect to {database_url}"))?;
    conn.execute(
        "CREATE TABLE stock (
             sku       text    PRIMARY KEY,
             initial   integer NOT NULL,
             remaining integer NOT NULL
         );
         CREATE TABLE orders (
             order_id        uuid        PRIMARY KEY,
             sku             text        NOT NULL,
             idempotency_key text        NOT NULL,
             user_id         text        NOT NULL,
             seq             bigint      NOT NULL,
             created_at      timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .context("create the reference tables")?;
    if design != Design::SeedLock {
        conn.execute("CREATE UNIQUE INDEX orders_one_per_key ON orders (sku, idempotency_key)")
            .await
            .context("create the idempotency index")?;
    }
    sqlx::query(
        "INSERT INTO stock (sku, initial, remaining) SELECT sku, $2, $2 FROM unnest($1::text[]) sku",
    )
    .bind(skus)
    .bind(i64::from(stock) as i32)
        .execute(&mut conn)
        .await
        .context("put the stock on sale")?;
    conn.close().await?;
    Ok(())
}

/// Every order recorded, one entry per order.
pub async fn orders(database_url: &str) -> anyhow::Result<Vec<Order>> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .with_context(|| format!("connect to {database_url}"))?;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT sku, idempotency_key FROM orders")
        .fetch_all(&mut conn)
        .await
        .context("read the orders")?;
    conn.close().await?;
    Ok(rows
        .into_iter()
        .map(|(sku, key)| Order { sku, key })
        .collect())
}

/// `(initial, remaining, won)` as the database has them.
pub async fn drop_view(pool: &sqlx::PgPool, sku: &str) -> anyhow::Result<Option<(i32, i32, i64)>> {
    sqlx::query_as(
        "SELECT s.initial, s.remaining,
                (SELECT count(*) FROM orders o WHERE o.sku = s.sku)
         FROM stock s WHERE s.sku = $1",
    )
    .bind(sku)
    .fetch_optional(pool)
    .await
    .context("read the drop")
}

/// The first order recorded for `key`: `(order_id, seq)`.
pub async fn order_for_key(
    db: impl sqlx::PgExecutor<'_>,
    sku: &str,
    key: &str,
) -> anyhow::Result<Option<(uuid::Uuid, i64)>> {
    sqlx::query_as(
        "SELECT order_id, seq FROM orders WHERE sku = $1 AND idempotency_key = $2
         ORDER BY created_at LIMIT 1",
    )
    .bind(sku)
    .bind(key)
    .fetch_optional(db)
    .await
    .context("read the order")
}
