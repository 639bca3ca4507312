//! The burst: every buyer prepared, then all released at one instant over a
//! bounded pool of keep-alive connections ([`crate::http::Pool`]).
//!
//! Buyers behave like real ones: a `503` or `429` (nothing accepted) is
//! retried with the same key, a `202` is read until decided; some buyers
//! double-click (the same key twice at once) and some buy in two tabs (two
//! keys at once), as [`Crowd`] says; each buyer buys one SKU of the sale
//! (sizes of one model), the crowd spread evenly over them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::Barrier;

use crate::credentials::Credentials;
use crate::crowd::{draw_habits, draw_skus};
pub use crate::crowd::{Crowd, Habit};
use crate::http::{Answer, Pool, NO_ANSWER};
use crate::latency::Latencies;
use crate::setup::DropUnderTest;

/// One burst: who buys, and how they reach the gateway.
#[derive(Debug, Clone)]
pub struct BurstOptions {
    /// The gateways' base URLs: the connections are spread evenly over
    /// them (one, unless the tool's own stack runs several).
    pub gateways: Vec<String>,
    /// Simultaneous buyers.
    pub buyers: u32,
    pub crowd: Crowd,
    /// HTTP/1.1 keep-alive connections shared by all buyers.
    pub connections: u32,
    /// Seconds each buyer asks to wait (`Prefer: wait=N`; 0 sends
    /// `Prefer: respond-async`).
    pub wait_s: u64,
    /// Who each buyer is, and the token it sends.
    pub credentials: Credentials,
}

/// What one purchase (one idempotency key) was finally told.
#[derive(Debug, Clone, Default)]
pub struct BuyerResult {
    /// The SKU the purchase was sent to.
    pub sku: String,
    pub key: String,
    pub user: String,
    pub habit: Habit,
    /// Status of the first POST.
    pub first_status: u16,
    /// Status of every POST sent (retries after 503/429 included).
    pub statuses: Vec<u16>,
    /// Status once any 202 was resolved by GET (200 maps to the outcome's).
    pub final_status: u16,
    pub outcome: Option<String>,
    pub order_id: Option<String>,
    pub seq: Option<u64>,
    /// From the burst to the POST's answer.
    pub accepted_after: Duration,
    /// From the burst to the definitive answer.
    pub decided_after: Option<Duration>,
    /// A double-click's second copy, as it was answered.
    pub echo: Option<Box<BuyerResult>>,
}

pub struct BurstResults {
    /// One per purchase key, in buyer order.
    pub buyers: Vec<BuyerResult>,
    /// From release to the last buyer's definitive answer.
    pub wall: Duration,
    /// The seed the crowd was drawn with.
    pub seed: u64,
}

impl BurstResults {
    /// Requests answered 5xx or not at all, retries and echoes included.
    pub fn server_errors(&self) -> usize {
        self.purchases_and_echoes()
            .flat_map(|b| &b.statuses)
            .filter(|s| **s == NO_ANSWER || **s >= 500)
            .count()
    }

    /// From the burst to each purchase's definitive answer.
    pub fn decision_latencies(&self) -> Latencies {
        Latencies::from_durations(self.buyers.iter().filter_map(|b| b.decided_after))
    }

    /// Purchases answered per second of the burst-to-last-decision time.
    pub fn decisions_per_s(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        let decided = self
            .buyers
            .iter()
            .filter(|b| b.decided_after.is_some())
            .count();
        if wall > 0.0 {
            decided as f64 / wall
        } else {
            0.0
        }
    }

    /// Every purchase by its SKU, in buyer order.
    pub fn by_sku(&self) -> HashMap<&str, Vec<&BuyerResult>> {
        let mut by_sku: HashMap<&str, Vec<&BuyerResult>> = HashMap::new();
        for buyer in &self.buyers {
            by_sku.entry(buyer.sku.as_str()).or_default().push(buyer);
        }
        by_sku
    }

    /// Every purchase, and every double-click's second copy.
    pub fn purchases_and_echoes(&self) -> impl Iterator<Item = &BuyerResult> {
        self.buyers
            .iter()
            .flat_map(|b| std::iter::once(b).chain(b.echo.as_deref()))
    }
}

/// A client for the requests around the burst (setup, replays); the burst
/// itself goes through [`Pool`].
pub fn client(connections: u32) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .context("build HTTP client")
}

/// What every purchase of the burst shares.
struct Sale {
    pool: Pool,
    /// The SKUs on sale; a purchase names its SKU by index.
    skus: Vec<SaleSku>,
    prefer: String,
    progress: Progress,
    released: OnceLock<Instant>,
    crowd: PreparedCrowd,
    /// The next request of `crowd` to send.
    next_request: AtomicUsize,
}

/// One SKU of the sale.
struct SaleSku {
    name: String,
    purchases_path: String,
    stock: u32,
    /// Units won so far (one a win: buyers send no quantity), for the
    /// progress line.
    won: AtomicU32,
}

impl SaleSku {
    fn sold_out(&self) -> bool {
        self.won.load(Ordering::Relaxed) >= self.stock
    }
}

/// Counters behind the progress line.
#[derive(Default)]
struct Progress {
    answered: AtomicUsize,
    decided: AtomicUsize,
}

impl Sale {
    /// The sale of `drops` to a crowd drawn from `seed`, not yet released.
    fn new(
        options: &BurstOptions,
        drops: &[DropUnderTest],
        pool: Pool,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let buyers = options.buyers as usize;
        let habits = draw_habits(&options.crowd, buyers, seed);
        let skus = draw_skus(buyers, drops.len(), seed);
        // Tokens are minted here, before the release: the burst measures
        // the gateway, not the tool's signing.
        let crowd = PreparedCrowd::new(&habits, &skus, &options.credentials)?;
        Ok(Self {
            pool,
            skus: drops
                .iter()
                .map(|drop| SaleSku {
                    name: drop.sku.to_string(),
                    purchases_path: format!("/v1/drops/{}/purchases", drop.sku),
                    stock: drop.stock,
                    won: AtomicU32::new(0),
                })
                .collect(),
            prefer: match options.wait_s {
                0 => "respond-async".to_string(),
                s => format!("wait={s}"),
            },
            progress: Progress::default(),
            released: OnceLock::new(),
            crowd,
            next_request: AtomicUsize::new(0),
        })
    }
}

/// Fires the crowd at `drops` (at least one): each buyer buys the SKU the
/// seed picks for it, every buyer released at one instant.
pub async fn fire(options: &BurstOptions, drops: &[DropUnderTest]) -> anyhow::Result<BurstResults> {
    anyhow::ensure!(!drops.is_empty(), "a burst needs at least one drop");
    let pool = Pool::over(&options.gateways, options.connections as usize)?;
    pool.warm_up().await?;
    let seed = options.crowd.seed.unwrap_or_else(rand::random);
    let sale = Arc::new(Sale::new(options, drops, pool, seed)?);
    let (purchases, requests) = (sale.crowd.purchases.len(), sale.crowd.requests.len());
    // One sender per connection, all waiting at the barrier: the pool
    // bounds what is in flight either way, and 800 senders cost the
    // generator far less than 50,000 buyer tasks would.
    let senders = options.connections as usize;
    let barrier = Arc::new(Barrier::new(senders + 1));
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (sale, barrier) = (sale.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                send_until_done(&sale).await
            })
        })
        .collect();
    barrier.wait().await;
    let released = *sale.released.get_or_init(Instant::now);
    let over = match drops {
        [drop] => format!("at {}", drop.sku),
        _ => format!("over {} SKUs", drops.len()),
    };
    eprintln!(
        "released {} buyers ({purchases} purchases {over}; crowd seed {seed})",
        options.buyers
    );
    let ticker = tokio::spawn(show_progress(sale.clone(), requests));
    let mut answered = Vec::with_capacity(requests);
    for task in tasks {
        answered.extend(task.await.context("sender task")?);
    }
    ticker.abort();
    let results = sale.crowd.assemble(answered);
    let wall = results
        .iter()
        .filter_map(|r| r.decided_after)
        .max()
        .unwrap_or_else(|| released.elapsed());
    Ok(BurstResults {
        buyers: results,
        wall,
        seed,
    })
}

/// One purchase (one idempotency key), prepared before the burst.
struct PreparedPurchase {
    /// Index of its SKU in the sale.
    sku: usize,
    key: String,
    user: String,
    habit: Habit,
    body: Bytes,
    /// The buyer's `Authorization` value, if it sends one.
    authorization: Option<Arc<str>>,
}

/// One request of the burst: a purchase, or a double-click's second copy.
struct Request {
    purchase: usize,
    echo: bool,
}

/// Every purchase and every request of the burst, in buyer order. What one
/// buyer sends "at once" (a double-click's copies, two tabs) is adjacent, so
/// that two free senders take it up together.
struct PreparedCrowd {
    purchases: Vec<PreparedPurchase>,
    requests: Vec<Request>,
}

impl PreparedCrowd {
    /// Buyer `i` does `habits[i]` at SKU `skus[i]`; both tabs of a two-tab
    /// buyer buy the same SKU (one user wanting one pair).
    fn new(habits: &[Habit], skus: &[usize], credentials: &Credentials) -> anyhow::Result<Self> {
        assert_eq!(habits.len(), skus.len(), "one SKU per buyer");
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let mut crowd = Self {
            purchases: Vec::with_capacity(habits.len()),
            requests: Vec::with_capacity(habits.len()),
        };
        for (i, (habit, sku)) in habits.iter().zip(skus).enumerate() {
            let key = format!("{}-{i}", &run_id[..8]);
            let buyer = credentials.buyer(i)?;
            let (user, authorization) = (buyer.user, buyer.authorization.map(Arc::<str>::from));
            let body = Bytes::from(serde_json::json!({ "user_id": user }).to_string());
            let mut add = |key: String, echo: bool| {
                if !echo {
                    crowd.purchases.push(PreparedPurchase {
                        sku: *sku,
                        key,
                        user: user.clone(),
                        habit: *habit,
                        body: body.clone(),
                        authorization: authorization.clone(),
                    });
                }
                crowd.requests.push(Request {
                    purchase: crowd.purchases.len() - 1,
                    echo,
                });
            };
            match habit {
                Habit::Once => add(key, false),
                Habit::DoubleClick => {
                    add(key.clone(), false);
                    add(key, true);
                }
                Habit::TwoTabs => {
                    let other_tab = format!("{key}-tab2");
                    add(key, false);
                    add(other_tab, false);
                }
            }
        }
        Ok(crowd)
    }

    /// One result per purchase, in buyer order, from the answers to every
    /// request (by request number); a double-click's second answer becomes
    /// its `echo`.
    fn assemble(&self, answered: Vec<(usize, BuyerResult)>) -> Vec<BuyerResult> {
        let mut by_request: Vec<Option<BuyerResult>> = Vec::new();
        by_request.resize_with(self.requests.len(), || None);
        for (i, result) in answered {
            by_request[i] = Some(result);
        }
        let mut purchases: Vec<Option<BuyerResult>> = Vec::new();
        purchases.resize_with(self.purchases.len(), || None);
        // A double-click's copy comes after its first request: its purchase
        // is filled by the time the copy is reached.
        for (request, result) in self.requests.iter().zip(by_request) {
            let Some(result) = result else { continue };
            let slot = &mut purchases[request.purchase];
            if !request.echo {
                *slot = Some(result);
            } else if let Some(first) = slot {
                first.echo = Some(Box::new(result));
            }
        }
        purchases.into_iter().flatten().collect()
    }
}

/// One line a second on stderr while the burst runs.
async fn show_progress(sale: Arc<Sale>, requests: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let elapsed = sale
            .released
            .get()
            .map(Instant::elapsed)
            .unwrap_or_default();
        let sold_out = sale.skus.iter().filter(|sku| sku.sold_out()).count();
        eprintln!(
            "  {:>5.1} s: {} of {requests} purchase requests answered, {} decided; \
             {sold_out} of {} SKUs sold out",
            elapsed.as_secs_f64(),
            sale.progress.answered.load(Ordering::Relaxed),
            sale.progress.decided.load(Ordering::Relaxed),
            sale.skus.len(),
        );
    }
}

/// Sends requests back to back, whichever is next, until none is left;
/// each answer with its request number.
async fn send_until_done(sale: &Sale) -> Vec<(usize, BuyerResult)> {
    let mut answered = Vec::new();
    loop {
        let i = sale.next_request.fetch_add(1, Ordering::Relaxed);
        let Some(request) = sale.crowd.requests.get(i) else {
            return answered;
        };
        let purchase_spec = &sale.crowd.purchases[request.purchase];
        let result = purchase(sale, purchase_spec).await;
        // A double-click's copy is the same unit: counted once.
        if !request.echo && result.outcome.as_deref() == Some("won") {
            sale.skus[purchase_spec.sku]
                .won
                .fetch_add(1, Ordering::Relaxed);
        }
        answered.push((i, result));
    }
}

/// How long a buyer keeps trying (retries after 503/429, reads after 202).
const PATIENCE: Duration = Duration::from_secs(120);

/// The parts of a purchase answer the tally needs.
#[derive(Default, Deserialize)]
struct PurchaseBody {
    outcome: Option<String>,
    order_id: Option<String>,
    seq: Option<u64>,
}

/// One purchase, behaving like a good client: a 503 or 429 (nothing
/// accepted) is retried with the same key; a 202 is read until decided.
async fn purchase(sale: &Sale, prepared: &PreparedPurchase) -> BuyerResult {
    let released = *sale.released.get_or_init(Instant::now);
    let sku = &sale.skus[prepared.sku];
    let mut result = BuyerResult {
        sku: sku.name.clone(),
        key: prepared.key.clone(),
        user: prepared.user.clone(),
        habit: prepared.habit,
        ..BuyerResult::default()
    };
    let deadline = released + PATIENCE;
    let answer = post_until_accepted(sale, prepared, &mut result, released, deadline).await;
    result.final_status = answer.status;
    take(&mut result, &answer.body);
    if matches!(answer.status, 201 | 409) && result.outcome.is_some() {
        decided(sale, &mut result, released);
    } else if answer.status == 202 {
        let authorization = prepared.authorization.as_deref();
        read_until_decided(sale, sku, &mut result, authorization, released, deadline).await;
    }
    result
}

/// POSTs the purchase, again after a `503`, `429` or no answer (nothing was
/// accepted), until another answer or the deadline; every status is kept.
async fn post_until_accepted(
    sale: &Sale,
    prepared: &PreparedPurchase,
    result: &mut BuyerResult,
    released: Instant,
    deadline: Instant,
) -> Answer {
    loop {
        // The deadline also bounds the wait for a free connection: against a
        // design that holds every connection for seconds, buyers give up.
        let mut headers = vec![
            ("idempotency-key", result.key.as_str()),
            ("prefer", sale.prefer.as_str()),
        ];
        if let Some(authorization) = &prepared.authorization {
            headers.push(("authorization", authorization));
        }
        let post = sale.pool.post_json(
            &sale.skus[prepared.sku].purchases_path,
            &headers,
            prepared.body.clone(),
        );
        let answer = tokio::time::timeout_at(deadline.into(), post)
            .await
            .unwrap_or_else(|_| Answer::none());
        if result.statuses.is_empty() {
            result.first_status = answer.status;
            result.accepted_after = released.elapsed();
            sale.progress.answered.fetch_add(1, Ordering::Relaxed);
        }
        result.statuses.push(answer.status);
        let retry = matches!(answer.status, NO_ANSWER | 429 | 503);
        if !retry || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A read's headers: a long wait, and the buyer's token (a purchase is
/// readable by its buyer only).
fn read_headers(authorization: Option<&str>) -> Vec<(&'static str, &str)> {
    let mut headers = vec![("prefer", "wait=10")];
    if let Some(authorization) = authorization {
        headers.push(("authorization", authorization));
    }
    headers
}

/// Accepted, not decided within the wait: reads the purchase until it is.
async fn read_until_decided(
    sale: &Sale,
    sku: &SaleSku,
    result: &mut BuyerResult,
    authorization: Option<&str>,
    released: Instant,
    deadline: Instant,
) {
    // The tool's keys are URL-safe (hex, digits, '-'): no encoding needed.
    let read_path = format!("{}/{}", sku.purchases_path, result.key);
    while Instant::now() < deadline {
        let read = tokio::time::timeout_at(
            deadline.into(),
            sale.pool.get(&read_path, &read_headers(authorization)),
        )
        .await
        .unwrap_or_else(|_| Answer::none());
        if read.status == 200 {
            take(result, &read.body);
            result.final_status = if result.outcome.as_deref() == Some("won") {
                201
            } else {
                409
            };
            decided(sale, result, released);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn decided(sale: &Sale, result: &mut BuyerResult, released: Instant) {
    result.decided_after = Some(released.elapsed());
    sale.progress.decided.fetch_add(1, Ordering::Relaxed);
}

fn take(result: &mut BuyerResult, body: &[u8]) {
    let body: PurchaseBody = serde_json::from_slice(body).unwrap_or_default();
    result.outcome = body.outcome;
    result.order_id = body.order_id;
    result.seq = body.seq;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &str, status: u16) -> BuyerResult {
        BuyerResult {
            key: key.to_string(),
            first_status: status,
            ..BuyerResult::default()
        }
    }

    #[test]
    fn a_crowd_sends_what_each_buyer_does_side_by_side_and_reassembles_it() {
        let habits = [Habit::Once, Habit::DoubleClick, Habit::TwoTabs, Habit::Once];
        let crowd = PreparedCrowd::new(&habits, &[0; 4], &Credentials::None).unwrap();
        let keys: Vec<&str> = crowd.purchases.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert!(
            keys[3].ends_with("-tab2") && keys[3].starts_with(keys[2]),
            "{keys:?}"
        );
        assert_eq!(crowd.purchases[2].user, crowd.purchases[3].user);
        assert_eq!(crowd.purchases[1].habit, Habit::DoubleClick);
        // The double-click's copies, and the two tabs, are adjacent requests.
        let sent: Vec<(usize, bool)> = crowd
            .requests
            .iter()
            .map(|r| (r.purchase, r.echo))
            .collect();
        assert_eq!(
            sent,
            [
                (0, false),
                (1, false),
                (1, true),
                (2, false),
                (3, false),
                (4, false)
            ]
        );

        // Answers come back in whatever order the senders finished.
        let answered = vec![
            (5, answer(keys[4], 409)),
            (2, answer(keys[1], 201)),
            (0, answer(keys[0], 409)),
            (4, answer(keys[3], 409)),
            (1, answer(keys[1], 201)),
            (3, answer(keys[2], 409)),
        ];
        let results = crowd.assemble(answered);
        let got: Vec<&str> = results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(got, keys, "one result per purchase, in buyer order");
        let echo = results[1].echo.as_deref().expect("the double-click's copy");
        assert_eq!((echo.key.as_str(), echo.first_status), (keys[1], 201));
        assert!(results
            .iter()
            .enumerate()
            .all(|(i, r)| i == 1 || r.echo.is_none()));

        // A copy never stands in for its purchase's own answer.
        let without_first = vec![(0, answer(keys[0], 409)), (2, answer(keys[1], 201))];
        let results = crowd.assemble(without_first);
        let got: Vec<&str> = results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(got, [keys[0]]);
    }

    #[test]
    fn a_buyer_sends_every_request_to_the_sku_picked_for_it() {
        let crowd_options = Crowd {
            retry_share: 0.3,
            twice_share: 0.3,
            seed: Some(11),
        };
        let habits = draw_habits(&crowd_options, 2_000, 11);
        let skus = draw_skus(2_000, 20, 11);
        let crowd = PreparedCrowd::new(&habits, &skus, &Credentials::None).unwrap();
        let mut tabs_seen = 0;
        for pair in crowd.requests.windows(2) {
            let (first, second) = (
                &crowd.purchases[pair[0].purchase],
                &crowd.purchases[pair[1].purchase],
            );
            // A two-tab buyer's keys, and a double-click's copies, share
            // a user: one person wanting one pair of one size.
            if first.user == second.user {
                assert_eq!(first.sku, second.sku, "{} and {}", first.key, second.key);
                tabs_seen += usize::from(second.key.ends_with("-tab2"));
            }
        }
        assert!(tabs_seen > 400, "{tabs_seen} two-tab buyers");
        for purchase in &crowd.purchases {
            let buyer: usize = purchase.user["user-".len()..].parse().unwrap();
            assert_eq!(purchase.sku, skus[buyer], "{}", purchase.key);
        }
    }
}
