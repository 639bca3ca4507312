//! End to end through HTTP: a burst of simultaneous buyers for a small stock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_store::NewDrop;
use dropline_suite::{read_answer, spawn_app, spawn_app_with, Answer, AppOptions, TestApp};
use tokio::sync::Barrier;

const BUYERS: usize = 2_000;
const STOCK: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_simultaneous_buyers_for_a_hundred_pairs_get_exactly_a_hundred_orders() {
    let app = Arc::new(spawn_app().await);
    let barrier = Arc::new(Barrier::new(BUYERS));
    let mut buyers = Vec::with_capacity(BUYERS);
    for i in 0..BUYERS {
        let app = app.clone();
        let barrier = barrier.clone();
        buyers.push(tokio::spawn(async move {
            let key = format!("key-{i}");
            let user = format!("user-{i}");
            barrier.wait().await;
            let answer = app.buy(&key, &user, 30).await;
            (key, user, answer)
        }));
    }
    let mut answers: Vec<Told> = Vec::with_capacity(BUYERS);
    for buyer in buyers {
        answers.push(buyer.await.expect("buyer task"));
    }
    assert_exactly_the_first_won(&answers);
    assert_answers_are_recorded(&app, &answers).await;
    assert_store_and_stream_agree(&app, &answers).await;
    app.assert_invariants().await;
}

/// A buyer's key and user, and what they were told.
type Told = (String, String, Answer);

/// A hundred winners with distinct orders, the first hundred in line.
/// Once the drop is finally sold out, its gateway answers new keys
/// `sold_out` at once without a place in line (`seq`): every other answer
/// stood in line.
fn assert_exactly_the_first_won(answers: &[Told]) {
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (_, _, a) in answers {
        *by_status.entry(a.status).or_default() += 1;
    }
    assert_eq!(by_status.get(&201), Some(&STOCK), "statuses: {by_status:?}");
    assert_eq!(
        by_status.get(&409),
        Some(&(BUYERS - STOCK)),
        "statuses: {by_status:?}"
    );

    let winners: Vec<_> = answers.iter().filter(|(_, _, a)| a.status == 201).collect();
    let order_ids: HashSet<_> = winners
        .iter()
        .map(|(_, _, a)| a.body["order_id"].as_str().expect("order_id").to_string())
        .collect();
    assert_eq!(
        order_ids.len(),
        STOCK,
        "every winner has a distinct order id"
    );
    for (key, user, a) in answers {
        assert_eq!(a.body["idempotency_key"], key.as_str());
        assert_eq!(a.body["user_id"], user.as_str());
        assert!(
            a.body["seq"].as_u64().is_some() || a.is_fast_sold_out(),
            "answers from the line carry seq: {a:?}"
        );
        let expected = if a.status == 201 { "won" } else { "sold_out" };
        assert_eq!(a.body["outcome"], expected);
    }

    // The winners are exactly the first intents in stream order.
    let mut seqs: Vec<(u64, u16)> = answers
        .iter()
        .filter_map(|(_, _, a)| Some((a.body["seq"].as_u64()?, a.status)))
        .collect();
    let in_line = seqs.len();
    seqs.sort();
    seqs.dedup_by_key(|(seq, _)| *seq);
    assert_eq!(seqs.len(), in_line, "every intent has a place of its own");
    assert!(
        seqs[..STOCK].iter().all(|(_, s)| *s == 201),
        "first {STOCK} in stream order won"
    );
    assert!(seqs[STOCK..].iter().all(|(_, s)| *s == 409));
}

/// Answers that stood in line (with a `seq`).
fn in_line(answers: &[Told]) -> usize {
    answers
        .iter()
        .filter(|(_, _, a)| a.body["seq"].is_u64())
        .count()
}

/// Every winner is readable, and a replay of any answer is that answer.
async fn assert_answers_are_recorded(app: &TestApp, answers: &[Told]) {
    let winners: Vec<_> = answers.iter().filter(|(_, _, a)| a.status == 201).collect();
    // Every winner is readable, and a replay returns the same answer and order.
    for (key, user, won) in winners.iter().take(25) {
        let read = app.read_purchase(key, 0).await;
        assert_eq!(read.status, 200);
        assert_eq!(read.body["order_id"], won.body["order_id"]);
        let replay = app.buy(key, user, 5).await;
        assert_eq!(replay.status, 201);
        assert_eq!(replay.body, won.body, "a replay gets the recorded answer");
    }
    // A loser's replay is sold_out again: from the line (the same answer),
    // or at once from a gateway that knows the drop finally sold out.
    for (key, user, lost) in answers.iter().filter(|(_, _, a)| a.status == 409).take(25) {
        let replay = app.buy(key, user, 5).await;
        if !replay.is_fast_sold_out() {
            assert_eq!((replay.status, &replay.body), (409, &lost.body));
        }
    }
}

/// The drop, the database and the stream agree with what buyers were told.
async fn assert_store_and_stream_agree(app: &TestApp, answers: &[Told]) {
    let view = app.drop_view().await;
    assert_eq!(view["remaining"], 0);
    assert_eq!(view["won"], STOCK as u64);
    assert_eq!(view["initial_stock"], STOCK as u64);

    // What the database holds agrees with what buyers were told: what stood
    // in line was recorded, what was answered at once was not.
    let in_line = in_line(answers);
    assert_eq!(app.stored_counts().await, (in_line as i64, STOCK as i64));
    // Each replay above that went to the line was a new intent, answered
    // with the recorded decision; those answered at once were not sent.
    let replays = 25 + 25;
    let intents = app.intents_in_stream().await;
    assert!(
        (in_line as u64..=(in_line + replays) as u64).contains(&intents),
        "{intents} intents for {in_line} in line and {replays} replays"
    );
    // Purchases that arrived together shared a message.
    let messages = app.messages_in_stream().await;
    assert!(
        messages < BUYERS as u64 / 2,
        "{messages} messages for {BUYERS} simultaneous buyers"
    );
}

/// Twenty sizes selling at once through a gateway with a single publish
/// slot for all of them: every lane waits its turn (gathering what arrives
/// meanwhile), none is starved, and each size sells exactly its stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_sharing_one_publish_slot_each_sell_exactly_their_stock() {
    const SIZES: usize = 20;
    const BUYERS_PER_SIZE: usize = 15;
    const STOCK_PER_SIZE: i64 = 5;
    let app = Arc::new(
        spawn_app_with(AppOptions {
            tune: Box::new(|settings| settings.gateway.publishes_in_flight_max = 1),
            ..AppOptions::default()
        })
        .await,
    );
    let sizes: Vec<Sku> = (0..SIZES)
        .map(|i| Sku::parse(format!("{}-size-{i}", app.sku)).expect("valid sku"))
        .collect();
    for sku in &sizes {
        let new = NewDrop {
            sku: sku.clone(),
            name: "a size".into(),
            stock: Stock::parse(STOCK_PER_SIZE).expect("stock"),
            per_user_limit: PerUserLimit::parse(1).expect("limit"),
            opens_at: None,
        };
        app.store.create_drop(&new).await.expect("create a size");
    }
    let barrier = Arc::new(Barrier::new(SIZES * BUYERS_PER_SIZE));
    let buyers: Vec<_> = (0..SIZES * BUYERS_PER_SIZE)
        .map(|i| {
            let (app, barrier) = (app.clone(), barrier.clone());
            let sku = sizes[i % SIZES].clone();
            tokio::spawn(async move {
                let user = format!("user-{i}");
                let request = app
                    .http
                    .post(format!("{}/v1/drops/{sku}/purchases", app.base_url))
                    .header("Idempotency-Key", format!("key-{i}"))
                    .header("Prefer", "wait=30")
                    .header("Authorization", app.tokens.bearer(&user))
                    .json(&serde_json::json!({ "user_id": user }));
                barrier.wait().await;
                (sku, read_answer(request).await.status)
            })
        })
        .collect();
    let mut statuses: HashMap<(Sku, u16), usize> = HashMap::new();
    for buyer in buyers {
        *statuses
            .entry(buyer.await.expect("buyer task"))
            .or_default() += 1;
    }
    for sku in &sizes {
        let won = statuses.get(&(sku.clone(), 201)).copied();
        let refused = statuses.get(&(sku.clone(), 409)).copied();
        assert_eq!(
            (won, refused),
            (Some(5), Some(BUYERS_PER_SIZE - 5)),
            "{sku}: every buyer answered, exactly its stock won: {statuses:?}"
        );
    }
    app.assert_invariants().await;
}
