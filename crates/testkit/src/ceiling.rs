//! What this machine allows a processor at most, measured with nothing of
//! dropline in the way: Postgres inserting a SKU's decision rows in
//! batches, one transaction per batch, and JetStream delivering and acking
//! a SKU's messages. A processor that decides one batch while pulling the
//! next can go no faster than the slower of the two; the bench prints its
//! decisions per second as a share of that.
//!
//! Both sides do what the processor does and nothing it does not: the rows
//! are those a sold-out drop leaves (the first `won` win an order, the rest
//! are `sold_out`), written into a table with the columns, constraints and
//! indexes of `purchases`, in batches of the processor's size; the messages
//! are pulled by a pull consumer like the owner's (memory state, acking a
//! batch's last message acks the batch) with twice a batch in flight.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use dropline_bus::ConsumerSettings;
use dropline_core::ledger::order_id;
use dropline_core::names::{line_lanes_filter, INTENTS_STREAM};
use dropline_core::Sku;
use futures::StreamExt as _;
use sqlx::{Connection as _, PgConnection};

/// The rows of a sold-out drop: `rows` decisions of `sku`, the first `won`
/// of them winners, in batches of `batch_len`.
#[derive(Debug, Clone)]
pub struct CeilingRows {
    pub sku: Sku,
    pub rows: u32,
    pub won: u32,
    pub batch_len: usize,
}

/// The table the ceiling writes: `purchases`' columns, defaults, checks and
/// indexes (its statement trigger, which checks the drop exists, is the
/// processor's own cost and not copied).
const CEILING_TABLE: &str = "dropline_ceiling_purchases";

/// One intent per stream message (the processor bench's layout): the
/// `i`-th row's place in line.
fn place(i: u32) -> i64 {
    (i64::from(i) + 1) * 1024
}

/// Rows per second Postgres inserts into a copy of `purchases` in the
/// database at `database_url`, one transaction and one statement per batch.
/// The copy is dropped after.
pub async fn postgres_rows_per_s(database_url: &str, rows: &CeilingRows) -> anyhow::Result<f64> {
    anyhow::ensure!(
        rows.rows > 0 && rows.batch_len > 0,
        "the ceiling needs rows and a batch length"
    );
    let mut conn = PgConnection::connect(database_url)
        .await
        .context("connect for the Postgres ceiling")?;
    sqlx::query(&format!(
        "CREATE TABLE {CEILING_TABLE} (LIKE purchases INCLUDING ALL)"
    ))
    .execute(&mut conn)
    .await
    .context("copy the purchases table")?;
    let started = Instant::now();
    let indexes: Vec<u32> = (0..rows.rows).collect();
    for batch in indexes.chunks(rows.batch_len) {
        insert_batch(&mut conn, rows, batch).await?;
    }
    let elapsed = started.elapsed();
    let inserted: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {CEILING_TABLE}"))
        .fetch_one(&mut conn)
        .await?;
    sqlx::query(&format!("DROP TABLE {CEILING_TABLE}"))
        .execute(&mut conn)
        .await?;
    anyhow::ensure!(
        inserted == i64::from(rows.rows),
        "the ceiling inserted {inserted} rows of {}",
        rows.rows
    );
    Ok(per_second(rows.rows.into(), elapsed))
}

async fn insert_batch(
    conn: &mut PgConnection,
    rows: &CeilingRows,
    batch: &[u32],
) -> anyhow::Result<()> {
    let keys: Vec<String> = batch.iter().map(|i| format!("k{i}")).collect();
    let users: Vec<String> = batch.iter().map(|i| format!("u{i}")).collect();
    let won = |i: u32| i < rows.won;
    let outcomes: Vec<&str> = batch
        .iter()
        .map(|&i| if won(i) { "won" } else { "sold_out" })
        .collect();
    let places: Vec<i64> = batch.iter().map(|&i| place(i)).collect();
    let orders: Vec<Option<uuid::Uuid>> = batch
        .iter()
        .map(|&i| won(i).then(|| order_id(&rows.sku, place(i).unsigned_abs())))
        .collect();
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO {CEILING_TABLE} (sku, idempotency_key, user_id, quantity, outcome, order_id, seq, epoch) \
         SELECT $1, k, u, 1, o, id, s, 1 \
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::uuid[], $6::bigint[]) AS t(k, u, o, id, s)"
    ))
    .bind(rows.sku.as_str())
    .bind(&keys)
    .bind(&users)
    .bind(&outcomes)
    .bind(&orders)
    .bind(&places)
    .execute(&mut *tx)
    .await
    .context("insert a ceiling batch")?;
    tx.commit().await?;
    Ok(())
}

/// Messages per second a pull consumer of `sku`'s line on the NATS at
/// `nats_url` receives and acks, from the line's first message until
/// `messages` have been received and the last ack confirmed by the server.
pub async fn jetstream_pulled_per_s(
    nats_url: &str,
    sku: &Sku,
    messages: u64,
    batch_len: usize,
) -> anyhow::Result<f64> {
    anyhow::ensure!(
        messages > 0 && batch_len > 0,
        "the ceiling needs messages and a batch length"
    );
    let client = async_nats::connect(nats_url)
        .await
        .context("connect for the JetStream ceiling")?;
    let js = async_nats::jetstream::new(client);
    let owner = ConsumerSettings::default();
    let stream = js.get_stream_no_info(INTENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: line_lanes_filter(sku),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            memory_storage: true,
            // The owner's own limits: acks come once per batch, so the
            // server's default of 1,000 unacked messages would stall a
            // batch of more.
            ack_wait: Duration::from_millis(owner.ack_wait_ms),
            max_ack_pending: owner.ack_pending_max,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .context("make the ceiling's consumer")?;
    let started = Instant::now();
    let mut pulled = consumer
        .stream()
        .max_messages_per_batch(batch_len * 2)
        .messages()
        .await?;
    let mut received = 0u64;
    while let Some(message) = tokio::time::timeout(STALL_MAX, pulled.next())
        .await
        .with_context(|| format!("no message for {STALL_MAX:?} after {received}"))?
    {
        let message = message.map_err(|e| anyhow::anyhow!("pull: {e}"))?;
        received += 1;
        if received == messages {
            message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack the last message: {e}"))?;
            return Ok(per_second(messages, started.elapsed()));
        }
        if received.is_multiple_of(batch_len as u64) {
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
    }
    anyhow::bail!("the line ended after {received} of {messages} messages")
}

/// The longest wait for the next message before the ceiling gives up.
const STALL_MAX: Duration = Duration::from_secs(30);

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
