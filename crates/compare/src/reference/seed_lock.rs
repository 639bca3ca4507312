//! REFERENCE DESIGN, NOT PRODUCT CODE: the seed's design, bug included.
//!
//! `SET lock:<sku> <token> NX PX lock_ms`, spinning until taken (or
//! `lock_wait_ms`, then `503`); read the stock; if any is left, the slow
//! write (`write_ms`) of the value read minus one, plus the order; then, as
//! the seed's `finally`, `DEL lock:<sku>` whoever holds it now. Once the
//! write outlasts the lock, a second buyer reads the same stock, and the
//! first buyer's `DEL` frees the lock for a third: it oversells.
//! No idempotency either: the seed relied on the lock.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Answer, State};

pub async fn purchase(state: &State, sku: &str, key: &str, user: &str) -> anyhow::Result<Answer> {
    let lock = format!("lock:{sku}");
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut redis = state.redis.clone();
    let deadline = Instant::now() + Duration::from_millis(state.timings.lock_wait_ms);
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(state.timings.lock_ms)
            .query_async(&mut redis)
            .await
            .context("take the lock")?;
        if taken.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(Answer::Busy("the lock is busy"));
        }
        tokio::time::sleep(Duration::from_millis(state.timings.lock_retry_ms)).await;
    }
    let answer = locked(state, sku, key, user).await;
    // The seed's `finally`: deletes the lock, even when it has expired and
    // another buyer holds it by now. That is the bug being replayed.
    let released: redis::RedisResult<i64> =
        redis::cmd("DEL").arg(&lock).query_async(&mut redis).await;
    let answer = answer?;
    released.context("release the lock")?;
    Ok(answer)
}

/// What the seed did while it believed it held the lock.
async fn locked(state: &State, sku: &str, key: &str, user: &str) -> anyhow::Result<Answer> {
    let mut tx = state.pool.begin().await.context("begin the read")?;
    let remaining: i32 = sqlx::query_scalar("SELECT remaining FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(&mut *tx)
        .await
        .context("read the stock")?;
    tx.commit().await.context("commit the read")?;
    if remaining <= 0 {
        return Ok(Answer::SoldOut);
    }
    let order_id = uuid::Uuid::new_v4();
    let written = remaining - 1;
    let mut tx = state.pool.begin().await.context("begin the write")?;
    // The slow write.
    tokio::time::sleep(Duration::from_millis(state.timings.write_ms)).await;
    sqlx::query("UPDATE stock SET remaining = $2 WHERE sku = $1")
        .bind(sku)
        .bind(written)
        .execute(&mut *tx)
        .await
        .context("write the stock")?;
    let seq = state.initial_stock - i64::from(written);
    sqlx::query(
        "INSERT INTO orders (order_id, sku, idempotency_key, user_id, seq)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(order_id)
    .bind(sku)
    .bind(key)
    .bind(user)
    .bind(seq)
    .execute(&mut *tx)
    .await
    .context("insert the order")?;
    tx.commit().await.context("commit the write")?;
    Ok(Answer::Won { order_id, seq })
}
