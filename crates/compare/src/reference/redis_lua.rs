//! REFERENCE DESIGN, NOT PRODUCT CODE: the usual flash-sale answer. An
//! atomic check-and-decrement Lua script in Redis decides (and remembers
//! each winning key, so a retry is answered the same); the order is then
//! inserted into Postgres, one transaction per win. A failure between the
//! two leaves a unit gone from Redis with no order until the buyer retries.

use std::sync::LazyLock;

use anyhow::Context as _;

use super::{db, Answer, State};

/// Returns the winner's seq (its unit number, from 1), or 0 when sold out.
/// KEYS: stock, winners hash. ARGV: idempotency key, initial stock.
static DECIDE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local earlier = redis.call('HGET', KEYS[2], ARGV[1])
        if earlier then return tonumber(earlier) end
        local remaining = tonumber(redis.call('GET', KEYS[1]) or '0')
        if remaining <= 0 then return 0 end
        local left = redis.call('DECR', KEYS[1])
        local seq = tonumber(ARGV[2]) - left
        redis.call('HSET', KEYS[2], ARGV[1], seq)
        return seq
        ",
    )
});

fn stock_key(sku: &str) -> String {
    format!("stock:{sku}")
}

fn winners_key(sku: &str) -> String {
    format!("winners:{sku}")
}

/// Puts every SKU's initial stock in Redis.
pub async fn prime(state: &State) -> anyhow::Result<()> {
    let mut redis = state.redis.clone();
    let mut pipe = redis::pipe();
    for sku in &state.skus {
        pipe.cmd("SET")
            .arg(stock_key(sku))
            .arg(state.initial_stock)
            .cmd("DEL")
            .arg(winners_key(sku));
    }
    pipe.query_async::<()>(&mut redis)
        .await
        .context("prime the Redis stock")
}

pub async fn remaining(state: &State, sku: &str) -> anyhow::Result<i32> {
    let mut redis = state.redis.clone();
    let remaining: Option<i32> = redis::cmd("GET")
        .arg(stock_key(sku))
        .query_async(&mut redis)
        .await
        .context("read the Redis stock")?;
    Ok(remaining.unwrap_or(0))
}

pub async fn purchase(state: &State, sku: &str, key: &str, user: &str) -> anyhow::Result<Answer> {
    let mut redis = state.redis.clone();
    let seq: i64 = DECIDE
        .key(stock_key(sku))
        .key(winners_key(sku))
        .arg(key)
        .arg(state.initial_stock)
        .invoke_async(&mut redis)
        .await
        .context("run the decide script")?;
    if seq == 0 {
        return Ok(Answer::SoldOut);
    }
    let mut tx = state.pool.begin().await.context("begin")?;
    let order_id: Option<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO orders (order_id, sku, idempotency_key, user_id, seq)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku, idempotency_key) DO NOTHING
         RETURNING order_id",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(sku)
    .bind(key)
    .bind(user)
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await
    .context("insert the order")?;
    let order_id = match order_id {
        Some(order_id) => order_id,
        // A retry of a key whose order is already written.
        None => {
            db::order_for_key(&mut *tx, sku, key)
                .await?
                .context("the order that conflicted is gone")?
                .0
        }
    };
    tx.commit().await.context("commit the order")?;
    Ok(Answer::Won { order_id, seq })
}
