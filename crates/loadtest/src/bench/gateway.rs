//! The gateway alone: how fast purchases are accepted with no processor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use dropline_testkit::databases::drop_database;
use dropline_testkit::stack::{Stack, StackOptions};
use serde_json::{json, Map, Value};

use super::{bench_sku, create_drop, object};
use crate::http::Pool;

/// What to measure.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// Purchases to send, each with its own idempotency key and user.
    pub purchases: u32,
    /// HTTP/1.1 keep-alive connections the purchases share.
    pub connections: u32,
    /// Units in the drop (it decides nothing, so it only has to exist).
    pub stock: u32,
    /// Postgres base URL (the stack's fresh database is created under it).
    pub postgres: String,
    pub nats_url: String,
}

/// A stack of one gateway and no processor on its own database, which is
/// dropped after.
pub async fn run(bench: &GatewayBench) -> anyhow::Result<Map<String, Value>> {
    let mut stack = Stack::start(StackOptions::new(&bench.postgres, &bench.nats_url, 0)).await?;
    let measured = accept_purchases(bench, &stack).await;
    stack.stop();
    let dropped = drop_database(&bench.postgres, stack.database_name()).await;
    drop(stack);
    let accepted = measured?;
    dropped?;
    Ok(accepted)
}

/// Sends every purchase to the stack's gateway and reports the `202`s per
/// second; fails if any purchase got another answer.
async fn accept_purchases(
    bench: &GatewayBench,
    stack: &Stack,
) -> anyhow::Result<Map<String, Value>> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let sku = bench_sku(&run_id)?;
    create_drop(&stack.database_url, &sku, bench.stock).await?;
    let pool = Arc::new(Pool::new(stack.url(), bench.connections as usize)?);
    pool.warm_up().await?;
    // Every buyer's token minted before the clock starts: the bench times
    // the gateway (which verifies each), not the signing.
    let authorizations = (0..bench.purchases)
        .map(|i| stack.options.buyer_tokens.bearer(&format!("u{i}")))
        .collect();
    let purchases = Purchases {
        path: format!("/v1/drops/{sku}/purchases"),
        key_prefix: run_id[..12].to_string(),
        count: bench.purchases,
        authorizations,
        next: AtomicU32::new(0),
    };
    let started = Instant::now();
    let statuses = send_all(&pool, Arc::new(purchases), bench.connections).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let accepted = statuses.get(&202).copied().unwrap_or(0);
    let rate = accepted as f64 / elapsed_s.max(1e-9);
    println!(
        "gateway accepted {accepted} of {} purchases in {elapsed_s:.3} s over {} connections: {rate:.0} accepted/s",
        bench.purchases, bench.connections
    );
    let refused: BTreeMap<u16, u64> = statuses.into_iter().filter(|(s, _)| *s != 202).collect();
    anyhow::ensure!(
        refused.is_empty(),
        "purchases not accepted, by status (0: no answer): {refused:?}"
    );
    Ok(object(json!({
        "gateway_purchases": bench.purchases, "gateway_connections": bench.connections,
        "gateway_accepted": accepted, "gateway_s": elapsed_s, "gateway_accepted_per_s": rate,
    })))
}

/// The purchases to send, handed out one at a time to whichever sender is free.
struct Purchases {
    path: String,
    key_prefix: String,
    count: u32,
    /// Buyer i's `Authorization` value.
    authorizations: Vec<String>,
    next: AtomicU32,
}

impl Purchases {
    /// The next purchase's number, while any is left.
    fn take(&self) -> Option<u32> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then_some(i)
    }
}

/// One sender per connection, each sending purchases back to back until
/// none is left; the answers counted by status.
async fn send_all(
    pool: &Arc<Pool>,
    purchases: Arc<Purchases>,
    connections: u32,
) -> anyhow::Result<BTreeMap<u16, u64>> {
    let senders: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(send_until_done(pool.clone(), purchases.clone())))
        .collect();
    let mut statuses = BTreeMap::new();
    for sender in senders {
        for (status, count) in sender.await.context("a sender")? {
            *statuses.entry(status).or_insert(0) += count;
        }
    }
    Ok(statuses)
}

async fn send_until_done(pool: Arc<Pool>, purchases: Arc<Purchases>) -> BTreeMap<u16, u64> {
    let mut statuses = BTreeMap::new();
    while let Some(i) = purchases.take() {
        let key = format!("{}-{i}", purchases.key_prefix);
        let body = Bytes::from(json!({ "user_id": format!("u{i}") }).to_string());
        let answer = pool
            .post_json(
                &purchases.path,
                &[
                    ("idempotency-key", &key),
                    ("prefer", "respond-async"),
                    ("authorization", &purchases.authorizations[i as usize]),
                ],
                body,
            )
            .await;
        *statuses.entry(answer.status).or_insert(0) += 1;
    }
    statuses
}
