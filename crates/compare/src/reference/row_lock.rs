//! REFERENCE DESIGN, NOT PRODUCT CODE: what most teams write instead of a
//! lock. One transaction per request from the pool: a conditional `UPDATE`
//! of the hot stock row (`remaining > 0`), then the order insert; no row
//! updated means sold out. Every buyer queues on the one row lock.
//!
//! Idempotent through the unique (sku, idempotency_key) index: a repeated key
//! rolls back its decrement and gets the recorded order.

use anyhow::Context as _;

use super::{db, Answer, State};

pub async fn purchase(state: &State, sku: &str, key: &str, user: &str) -> anyhow::Result<Answer> {
    let mut tx = state.pool.begin().await.context("begin")?;
    let remaining: Option<i32> = sqlx::query_scalar(
        "UPDATE stock SET remaining = remaining - 1
         WHERE sku = $1 AND remaining > 0 RETURNING remaining",
    )
    .bind(sku)
    .fetch_optional(&mut *tx)
    .await
    .context("take a unit")?;
    let Some(remaining) = remaining else {
        // Sold out, unless this key won before (a retry whose answer was lost).
        let earlier = db::order_for_key(&mut *tx, sku, key).await?;
        tx.rollback().await.context("roll back")?;
        return Ok(
            earlier.map_or(Answer::SoldOut, |(order_id, seq)| Answer::Won {
                order_id,
                seq,
            }),
        );
    };
    let order_id = uuid::Uuid::new_v4();
    let seq = state.initial_stock - i64::from(remaining);
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, sku, idempotency_key, user_id, seq)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku, idempotency_key) DO NOTHING",
    )
    .bind(order_id)
    .bind(sku)
    .bind(key)
    .bind(user)
    .bind(seq)
    .execute(&mut *tx)
    .await
    .context("insert the order")?
    .rows_affected();
    if inserted == 0 {
        let earlier = db::order_for_key(&mut *tx, sku, key)
            .await?
            .context("the order that conflicted is gone")?;
        tx.rollback().await.context("roll back the repeat")?;
        return Ok(Answer::Won {
            order_id: earlier.0,
            seq: earlier.1,
        });
    }
    tx.commit().await.context("commit")?;
    Ok(Answer::Won { order_id, seq })
}
