//! The burst: every buyer prepared, then all released at one instant over a
//! bounded pool of keep-alive connections ([`crate::http::Pool`]).
//!
//! Buyers behave like real ones: a `503` or `429` (nothing accepted) is
//! retried with the same key, a `202` is read until decided; some buyers
//! double-click (the same key twice at once) and some buy in two tabs (two
//! keys at once), as [`Crowd`] says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;
use tokio::sync::Barrier;

use crate::http::{Answer, Pool, NO_ANSWER};
use crate::latency::Latencies;
use crate::setup::DropUnderTest;
use crate::Args;

/// Who in the crowd does what beyond buying once.
#[derive(Debug, Clone, clap::Args)]
pub struct Crowd {
    /// Share of buyers (0–1) who double-click: the same purchase, same key,
    /// twice at once. Both answers must be the same.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub retry_share: f64,
    /// Share of buyers (0–1) who buy in two tabs: two keys at once. They may
    /// win at most the per-user limit; the other attempt is `limit_reached`.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub twice_share: f64,
    /// Seed choosing who double-clicks and who uses two tabs (printed, so a
    /// crowd can be run again); random without it.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Crowd {
    /// Every buyer buys once (the comparisons: the reference designs do not
    /// all keep per-user limits).
    pub fn plain() -> Self {
        Self {
            retry_share: 0.0,
            twice_share: 0.0,
            seed: Some(0),
        }
    }
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a share between 0 and 1"))
    }
}

/// What a buyer does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Habit {
    /// One purchase, one key.
    #[default]
    Once,
    /// The same purchase twice at once, same key.
    DoubleClick,
    /// Two purchases at once, two keys, same user.
    TwoTabs,
}

/// What one purchase (one idempotency key) was finally told.
#[derive(Debug, Clone, Default)]
pub struct BuyerResult {
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
    purchases_path: String,
    prefer: String,
    progress: Progress,
    released: OnceLock<Instant>,
}

/// Counters behind the progress line.
#[derive(Default)]
struct Progress {
    answered: AtomicUsize,
    decided: AtomicUsize,
}

pub async fn fire(args: &Args, drop: &DropUnderTest) -> anyhow::Result<BurstResults> {
    let pool = Pool::new(args.url(), args.connections as usize)?;
    pool.warm_up().await?;
    let seed = args.crowd.seed.unwrap_or_else(rand::random);
    let habits = draw_habits(&args.crowd, args.buyers as usize, seed);
    let purchases = habits.iter().filter(|h| **h != Habit::DoubleClick).count()
        + habits.iter().filter(|h| **h == Habit::TwoTabs).count();
    // A double-click is one purchase sent twice.
    let requests = habits.iter().filter(|h| **h != Habit::Once).count() + habits.len();
    let sale = Arc::new(Sale {
        pool,
        purchases_path: format!("/v1/drops/{}/purchases", drop.sku),
        prefer: match args.wait_s {
            0 => "respond-async".to_string(),
            s => format!("wait={s}"),
        },
        progress: Progress::default(),
        released: OnceLock::new(),
    });
    let barrier = Arc::new(Barrier::new(habits.len() + 1));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(habits.len());
    for (i, habit) in habits.into_iter().enumerate() {
        let (sale, barrier) = (sale.clone(), barrier.clone());
        let key = format!("{}-{i}", &run_id[..8]);
        let user = format!("user-{i}");
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(serde_json::json!({ "user_id": user }).to_string());
            barrier.wait().await;
            buyer(&sale, habit, key, user, body).await
        }));
    }
    barrier.wait().await;
    let released = *sale.released.get_or_init(Instant::now);
    eprintln!(
        "released {} buyers ({purchases} purchases; crowd seed {seed})",
        tasks.len()
    );
    let ticker = tokio::spawn(show_progress(sale.clone(), requests));
    let mut results = Vec::with_capacity(purchases);
    for task in tasks {
        results.extend(task.await.context("buyer task")?);
    }
    ticker.abort();
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

/// Each buyer's habit, drawn from `seed`: the same seed, the same crowd.
fn draw_habits(crowd: &Crowd, buyers: usize, seed: u64) -> Vec<Habit> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..buyers)
        .map(|_| {
            let draw: f64 = rng.gen();
            if draw < crowd.retry_share {
                Habit::DoubleClick
            } else if draw < crowd.retry_share + crowd.twice_share {
                Habit::TwoTabs
            } else {
                Habit::Once
            }
        })
        .collect()
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
        eprintln!(
            "  {:>5.1} s: {} of {requests} purchase requests answered, {} decided",
            elapsed.as_secs_f64(),
            sale.progress.answered.load(Ordering::Relaxed),
            sale.progress.decided.load(Ordering::Relaxed),
        );
    }
}

async fn buyer(
    sale: &Sale,
    habit: Habit,
    key: String,
    user: String,
    body: Bytes,
) -> Vec<BuyerResult> {
    match habit {
        Habit::Once => vec![purchase(sale, habit, key, user, body).await],
        Habit::DoubleClick => {
            let (mut first, second) = tokio::join!(
                purchase(sale, habit, key.clone(), user.clone(), body.clone()),
                purchase(sale, habit, key, user, body),
            );
            first.echo = Some(Box::new(second));
            vec![first]
        }
        Habit::TwoTabs => {
            let other_key = format!("{key}-tab2");
            let (a, b) = tokio::join!(
                purchase(sale, habit, key, user.clone(), body.clone()),
                purchase(sale, habit, other_key, user, body),
            );
            vec![a, b]
        }
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
async fn purchase(
    sale: &Sale,
    habit: Habit,
    key: String,
    user: String,
    body: Bytes,
) -> BuyerResult {
    let released = *sale.released.get_or_init(Instant::now);
    let mut result = BuyerResult {
        key,
        user,
        habit,
        ..BuyerResult::default()
    };
    let deadline = released + PATIENCE;
    let answer = loop {
        // The deadline also bounds the wait for a free connection: against a
        // design that holds every connection for seconds, buyers give up.
        let headers = [
            ("idempotency-key", result.key.as_str()),
            ("prefer", &sale.prefer),
        ];
        let post = sale
            .pool
            .post_json(&sale.purchases_path, &headers, body.clone());
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
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    result.final_status = answer.status;
    take(&mut result, &answer.body);
    if matches!(answer.status, 201 | 409) && result.outcome.is_some() {
        decided(sale, &mut result, released);
        return result;
    }
    if answer.status != 202 {
        return result;
    }
    // Accepted, not decided in time: read it until it is.
    // The tool's keys are URL-safe (hex, digits, '-'): no encoding needed.
    let read_path = format!("{}/{}", sale.purchases_path, result.key);
    while Instant::now() < deadline {
        let read = tokio::time::timeout_at(
            deadline.into(),
            sale.pool.get(&read_path, &[("prefer", "wait=10")]),
        )
        .await
        .unwrap_or_else(|_| Answer::none());
        if read.status == 200 {
            take(&mut result, &read.body);
            result.final_status = if result.outcome.as_deref() == Some("won") {
                201
            } else {
                409
            };
            decided(sale, &mut result, released);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result
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

    #[test]
    fn the_same_seed_draws_the_same_crowd() {
        let crowd = Crowd {
            retry_share: 0.1,
            twice_share: 0.2,
            seed: None,
        };
        let a = draw_habits(&crowd, 10_000, 42);
        assert_eq!(a, draw_habits(&crowd, 10_000, 42));
        assert_ne!(a, draw_habits(&crowd, 10_000, 43));
        let count = |h| a.iter().filter(|x| **x == h).count() as f64 / 10_000.0;
        assert!(
            (count(Habit::DoubleClick) - 0.1).abs() < 0.02,
            "{}",
            count(Habit::DoubleClick)
        );
        assert!(
            (count(Habit::TwoTabs) - 0.2).abs() < 0.02,
            "{}",
            count(Habit::TwoTabs)
        );
    }

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        assert!(share("0.5").is_ok());
        assert!(share("1.5").is_err());
        assert!(share("-0.1").is_err());
        assert!(share("lots").is_err());
    }
}
