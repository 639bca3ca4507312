//! A drop with a long history, written straight into a database: the rows
//! a drop of a million buyers leaves behind, in seconds instead of the
//! minutes deciding them one by one would take, for the bench that claims
//! such a SKU.
//!
//! The history is one an owner could have recorded: the first `winners`
//! intents won a unit each, every later one was decided `sold_out`, then
//! an operator restocked `restocked` units, so the drop is open with units
//! left and a repeat of an old key goes to the line. The partition is free
//! (no owner, epoch 1). Its places in line are those of stream messages 1
//! to [`LongHistory::last_message_seq`]: new intents must come from later
//! messages, so the stream must be past that message before the history is
//! written (an owner skips what stands at or before its applied place).

use anyhow::Context as _;
use dropline_core::ledger::order_id;
use dropline_core::Sku;
use sqlx::{Connection as _, PgConnection};

/// Places in line per stream message (a gateway's message carries up to
/// this many intents).
const PLACES_PER_MESSAGE: u64 = 1024;

/// The epoch the history was decided under.
const HISTORY_EPOCH: i64 = 1;

#[derive(Debug, Clone)]
pub struct LongHistory {
    pub sku: Sku,
    /// Intents decided, winners included.
    pub decided: u32,
    /// The first intents, each of which won one unit (the initial stock).
    pub winners: u32,
    /// Units restocked after the last decision.
    pub restocked: u32,
}

impl LongHistory {
    /// The place in line of the `i`-th intent (from 0): message
    /// `1 + i / 1024`, slot `i % 1024`.
    pub fn place(i: u32) -> u64 {
        PLACES_PER_MESSAGE + u64::from(i)
    }

    /// The idempotency key and the buyer of the `i`-th intent.
    pub fn key(i: u32) -> String {
        format!("k{i}")
    }

    pub fn user(i: u32) -> String {
        format!("u{i}")
    }

    /// The restock stands first in the message after the last intent's.
    pub fn restock_place(&self) -> u64 {
        (Self::place(self.decided.saturating_sub(1)) / PLACES_PER_MESSAGE + 1) * PLACES_PER_MESSAGE
    }

    /// The stream message of the history's last entry (the restock).
    pub fn last_message_seq(&self) -> u64 {
        self.restock_place() / PLACES_PER_MESSAGE
    }

    /// Writes the drop, its partition, its decisions and its restock in one
    /// transaction: a processor sees the drop whole or not at all.
    pub async fn write(&self, database_url: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            0 < self.winners && self.winners <= self.decided && self.restocked > 0,
            "a long history needs winners, at most as many as decisions, and a restock"
        );
        let mut conn = PgConnection::connect(database_url)
            .await
            .context("connect to the bench database")?;
        let mut tx = conn.begin().await?;
        self.write_drop(&mut tx).await?;
        self.write_winners(&mut tx).await?;
        self.write_sold_out(&mut tx).await?;
        sqlx::query(
            "INSERT INTO operations (sku, operation_id, kind, units, operator, seq, epoch) \
             VALUES ($1, 'restock-after-history', 'restock', $2, 'bench', $3, $4)",
        )
        .bind(self.sku.as_str())
        .bind(self.restocked as i32)
        .bind(self.restock_place() as i64)
        .bind(HISTORY_EPOCH)
        .execute(&mut *tx)
        .await
        .context("write the restock")?;
        tx.commit().await.context("commit the history")?;
        conn.close().await?;
        Ok(())
    }

    async fn write_drop(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        // Stock is conserved: remaining = initial + restocked - won.
        sqlx::query(
            "INSERT INTO drops (sku, name, initial_stock, restocked, remaining, won_units, \
                                per_user_limit, status, admission_version) \
             VALUES ($1, 'long history', $2, $3, $3, $2, 1, 'open', \
                     nextval('drops_admission_version'))",
        )
        .bind(self.sku.as_str())
        .bind(self.winners as i32)
        .bind(self.restocked as i32)
        .execute(&mut *tx)
        .await
        .context("write the drop")?;
        sqlx::query(
            "INSERT INTO partitions (sku, epoch, applied_seq, decided) VALUES ($1, $2, $3, $4)",
        )
        .bind(self.sku.as_str())
        .bind(HISTORY_EPOCH)
        .bind(self.restock_place() as i64)
        .bind(i64::from(self.decided))
        .execute(&mut *tx)
        .await
        .context("write the partition")?;
        Ok(())
    }

    /// Winners carry the order id an owner gives the place in line.
    async fn write_winners(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        let winners = 0..self.winners;
        let keys: Vec<String> = winners.clone().map(Self::key).collect();
        let users: Vec<String> = winners.clone().map(Self::user).collect();
        let places: Vec<i64> = winners.clone().map(|i| Self::place(i) as i64).collect();
        let orders: Vec<uuid::Uuid> = winners
            .map(|i| order_id(&self.sku, Self::place(i)))
            .collect();
        sqlx::query(
            "INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, order_id, seq, epoch) \
             SELECT $1, k, u, 1, 'won', o, s, $6 FROM UNNEST($2::text[], $3::text[], $4::uuid[], $5::bigint[]) AS t(k, u, o, s)",
        )
        .bind(self.sku.as_str())
        .bind(&keys)
        .bind(&users)
        .bind(&orders)
        .bind(&places)
        .bind(HISTORY_EPOCH)
        .execute(&mut *tx)
        .await
        .context("write the winners")?;
        Ok(())
    }

    async fn write_sold_out(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO purchases (sku, idempotency_key, user_id, quantity, outcome, seq, epoch) \
             SELECT $1, 'k' || i, 'u' || i, 1, 'sold_out', $2 + i, $5 \
               FROM generate_series($3::bigint, $4::bigint) AS i",
        )
        .bind(self.sku.as_str())
        .bind(PLACES_PER_MESSAGE as i64)
        .bind(i64::from(self.winners))
        .bind(i64::from(self.decided) - 1)
        .bind(HISTORY_EPOCH)
        .execute(&mut *tx)
        .await
        .context("write the sold-out decisions")?;
        Ok(())
    }
}
