//! Bursts of buyers that behave like good clients: they retry a 503 or 429
//! with the same key after `Retry-After`, and read a 202 until it is decided.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::{read_answer, Answer, TestApp};

/// What one buyer ended with, and what it saw on the way.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub key: String,
    pub user: String,
    /// `won`, `sold_out` or `limit_reached`; `None` if never decided.
    pub outcome: Option<String>,
    pub order_id: Option<String>,
    /// Statuses of every POST sent, in order.
    pub statuses: Vec<u16>,
    /// Longest single request.
    pub slowest: Duration,
}

/// Releases `buyers` buyers at once, each retrying until decided (within
/// `patience`). Keys and users are `<prefix>-<i>`.
pub async fn burst(
    app: &Arc<TestApp>,
    prefix: &str,
    buyers: usize,
    patience: Duration,
) -> Vec<Outcome> {
    let barrier = Arc::new(Barrier::new(buyers));
    let mut tasks = Vec::with_capacity(buyers);
    for i in 0..buyers {
        let (app, barrier) = (app.clone(), barrier.clone());
        let (key, user) = (format!("{prefix}-{i}"), format!("{prefix}-user-{i}"));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            buy_until_decided(&app, key, user, patience).await
        }));
    }
    let mut outcomes = Vec::with_capacity(buyers);
    for task in tasks {
        outcomes.push(task.await.expect("buyer"));
    }
    outcomes
}

/// The same purchase sent `copies` times at once from as many connections.
pub async fn storm(
    app: &Arc<TestApp>,
    key: &'static str,
    user: &'static str,
    copies: usize,
) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(copies));
    let mut sends = Vec::with_capacity(copies);
    for _ in 0..copies {
        let (app, barrier) = (app.clone(), barrier.clone());
        sends.push(tokio::spawn(async move {
            barrier.wait().await;
            app.buy(key, user, 10).await
        }));
    }
    let mut answers = Vec::with_capacity(copies);
    for send in sends {
        answers.push(send.await.expect("send"));
    }
    answers
}

/// [`burst`] on its own task, so the test can inject a fault meanwhile.
pub fn spawn_burst(
    app: &Arc<TestApp>,
    prefix: &'static str,
    buyers: usize,
    patience: Duration,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    let app = app.clone();
    tokio::spawn(async move { burst(&app, prefix, buyers, patience).await })
}

pub async fn buy_until_decided(
    app: &TestApp,
    key: String,
    user: String,
    patience: Duration,
) -> Outcome {
    let deadline = Instant::now() + patience;
    app.remember_buyer(&key, &user);
    let mut result = Outcome {
        key,
        user,
        outcome: None,
        order_id: None,
        statuses: Vec::new(),
        slowest: Duration::ZERO,
    };
    while Instant::now() < deadline {
        let sent = Instant::now();
        let answer = read_answer(
            app.http
                .post(app.purchases_url())
                .header("Idempotency-Key", &result.key)
                .header("Prefer", "wait=5")
                .header("Authorization", app.tokens.bearer(&result.user))
                .json(&serde_json::json!({ "user_id": result.user })),
        )
        .await;
        result.slowest = result.slowest.max(sent.elapsed());
        result.statuses.push(answer.status);
        match answer.status {
            201 | 409 if answer.body["outcome"].is_string() => {
                take(&mut result, &answer);
                return result;
            }
            202 => {
                // Accepted: read it until decided.
                let location = answer.headers["location"]
                    .to_str()
                    .unwrap_or_default()
                    .to_string();
                while Instant::now() < deadline {
                    let read = read_answer(
                        app.http
                            .get(format!("{}{location}", app.base_url))
                            .header("Prefer", "wait=5")
                            .header("Authorization", app.tokens.bearer(&result.user)),
                    )
                    .await;
                    if read.status == 200 {
                        take(&mut result, &read);
                        return result;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            // Broker or gateway busy: nothing accepted; retry the same key.
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    result
}

fn take(result: &mut Outcome, answer: &Answer) {
    result.outcome = answer.body["outcome"].as_str().map(str::to_owned);
    result.order_id = answer.body["order_id"].as_str().map(str::to_owned);
}

/// Asserts every buyer got a definitive answer, exactly `stock` won (each
/// with its own order), and no 500 was ever seen.
pub fn assert_exactly_sold(outcomes: &[Outcome], stock: usize) {
    let undecided: Vec<_> = outcomes
        .iter()
        .filter(|o| o.outcome.is_none())
        .map(|o| &o.key)
        .collect();
    assert!(
        undecided.is_empty(),
        "{} buyers never got a decision: {:?}",
        undecided.len(),
        &undecided[..undecided.len().min(5)]
    );
    let won: Vec<_> = outcomes
        .iter()
        .filter(|o| o.outcome.as_deref() == Some("won"))
        .collect();
    assert_eq!(won.len(), stock.min(outcomes.len()), "winners");
    let orders: std::collections::HashSet<_> =
        won.iter().filter_map(|o| o.order_id.as_deref()).collect();
    assert_eq!(orders.len(), won.len(), "one order per winner");
    let server_errors: usize = outcomes
        .iter()
        .flat_map(|o| &o.statuses)
        .filter(|s| **s == 500)
        .count();
    assert_eq!(server_errors, 0, "never a 500");
}
