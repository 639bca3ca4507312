//! The burst: every buyer prepared, then all released at one instant.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{Barrier, Semaphore};

use crate::latency::Latencies;
use crate::setup::DropUnderTest;
use crate::Args;

/// What one buyer was finally told.
#[derive(Debug, Clone)]
pub struct BuyerResult {
    pub key: String,
    pub user: String,
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
}

pub struct BurstResults {
    pub buyers: Vec<BuyerResult>,
    /// From release to the last buyer's definitive answer.
    pub wall: Duration,
}

impl BurstResults {
    /// Requests answered 5xx or not at all, retries included.
    pub fn server_errors(&self) -> usize {
        self.buyers
            .iter()
            .flat_map(|b| &b.statuses)
            .filter(|s| **s == 0 || **s >= 500)
            .count()
    }

    /// From the burst to each buyer's definitive answer.
    pub fn decision_latencies(&self) -> Latencies {
        Latencies::from_durations(self.buyers.iter().filter_map(|b| b.decided_after))
    }

    /// Buyers answered per second of the burst-to-last-decision wall time.
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
}

pub fn client(connections: u32) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections as usize)
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .context("build HTTP client")
}

pub async fn fire(
    client: &reqwest::Client,
    args: &Args,
    drop: &DropUnderTest,
) -> anyhow::Result<BurstResults> {
    let buyers = args.buyers as usize;
    // Connections are bounded by bounding requests in flight.
    let connections = Arc::new(Semaphore::new(args.connections as usize));
    let barrier = Arc::new(Barrier::new(buyers + 1));
    // The release instant: set by whichever task wakes first from the barrier,
    // so that latencies count from the burst, not from each task's wake-up.
    let release = Arc::new(OnceLock::new());
    let url = Arc::new(format!("{}/v1/drops/{}/purchases", args.url(), drop.sku));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(buyers);
    for i in 0..buyers {
        let (client, connections, barrier, url, release) = (
            client.clone(),
            connections.clone(),
            barrier.clone(),
            url.clone(),
            release.clone(),
        );
        let key = format!("{}-{i}", &run_id[..8]);
        let user = format!("user-{i}");
        let wait_s = args.wait_s;
        let read_base = args.url().to_string();
        let sku = drop.sku.to_string();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({ "user_id": user }).to_string();
            barrier.wait().await;
            let released = *release.get_or_init(Instant::now);
            buy(
                &client,
                &connections,
                &url,
                &read_base,
                &sku,
                key,
                user,
                body,
                wait_s,
                released,
            )
            .await
        }));
    }
    barrier.wait().await;
    let released = *release.get_or_init(Instant::now);
    eprintln!("released {buyers} buyers");
    let mut results = Vec::with_capacity(buyers);
    for task in tasks {
        results.push(task.await.context("buyer task")?);
    }
    let wall = results
        .iter()
        .filter_map(|r| r.decided_after)
        .max()
        .unwrap_or_else(|| released.elapsed());
    Ok(BurstResults {
        buyers: results,
        wall,
    })
}

/// How long a buyer keeps trying (retries after 503/429, reads after 202).
const PATIENCE: Duration = Duration::from_secs(120);

/// One buyer, behaving like a good client: a 503 or 429 (nothing accepted)
/// is retried with the same key; a 202 is read until decided.
#[allow(clippy::too_many_arguments)]
async fn buy(
    client: &reqwest::Client,
    connections: &Semaphore,
    url: &str,
    read_base: &str,
    sku: &str,
    key: String,
    user: String,
    body: String,
    wait_s: u64,
    released: Instant,
) -> BuyerResult {
    let mut result = BuyerResult {
        key,
        user,
        first_status: 0,
        final_status: 0,
        statuses: Vec::new(),
        outcome: None,
        order_id: None,
        seq: None,
        accepted_after: Duration::ZERO,
        decided_after: None,
    };
    let deadline = released + PATIENCE;
    let answer = loop {
        let answer = {
            let _connection = connections.acquire().await;
            send(
                client
                    .post(url)
                    .header("Idempotency-Key", &result.key)
                    .header("Prefer", format!("wait={wait_s}"))
                    .header("content-type", "application/json")
                    .body(body.clone()),
            )
            .await
        };
        if result.statuses.is_empty() {
            result.first_status = answer.0;
            result.accepted_after = released.elapsed();
        }
        result.statuses.push(answer.0);
        let retry = matches!(answer.0, 0 | 429 | 503);
        if !retry || Instant::now() >= deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    result.final_status = answer.0;
    take(&mut result, &answer.1);
    if matches!(answer.0, 201 | 409) && result.outcome.is_some() {
        result.decided_after = Some(released.elapsed());
        return result;
    }
    if answer.0 != 202 {
        return result;
    }
    // Accepted, not decided in time: read it until it is.
    let read_url = format!("{read_base}/v1/drops/{sku}/purchases/{}", result.key);
    while Instant::now() < deadline {
        let read = {
            let _connection = connections.acquire().await;
            send(client.get(&read_url).header("Prefer", "wait=10")).await
        };
        if read.0 == 200 {
            take(&mut result, &read.1);
            result.final_status = if result.outcome.as_deref() == Some("won") {
                201
            } else {
                409
            };
            result.decided_after = Some(released.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result
}

fn take(result: &mut BuyerResult, body: &serde_json::Value) {
    result.outcome = body["outcome"].as_str().map(str::to_owned);
    result.order_id = body["order_id"].as_str().map(str::to_owned);
    result.seq = body["seq"].as_u64();
}

/// Sends and reads the whole answer; a transport failure is status 0.
async fn send(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}
