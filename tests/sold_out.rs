//! Finally sold out: gateways answer new keys `409 sold_out` at once,
//! without the line, and never contradict what the line recorded; a gateway
//! started later learns it from the store; a restock lifts it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dropline_suite::{spawn_app_with, Answer, AppOptions, Role, TestApp};

const NEW_KEYS: usize = 200;

/// Buys keys `<prefix>-<i>` all at once.
async fn crowd(app: &Arc<TestApp>, prefix: &str, buyers: usize) -> Vec<Answer> {
    let sends: Vec<_> = (0..buyers)
        .map(|i| {
            let (app, key, user) = (
                app.clone(),
                format!("{prefix}-{i}"),
                format!("{prefix}-u{i}"),
            );
            tokio::spawn(async move { app.buy(&key, &user, 10).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(buyers);
    for send in sends {
        answers.push(send.await.expect("buyer"));
    }
    answers
}

/// Every answer a fast `sold_out` with the buyer's own key, user and
/// quantity, and none of them in line.
async fn assert_all_answered_at_once(app: &Arc<TestApp>, prefix: &str, buyers: usize) {
    let in_line = app.intents_in_stream().await;
    for (i, answer) in crowd(app, prefix, buyers).await.iter().enumerate() {
        assert!(answer.is_fast_sold_out(), "{prefix}-{i}: {answer:?}");
        assert_eq!(answer.body["idempotency_key"], format!("{prefix}-{i}"));
        assert_eq!(answer.body["user_id"], format!("{prefix}-u{i}"));
        assert_eq!(
            (&answer.body["sku"], &answer.body["quantity"]),
            (&app.sku.as_str().into(), &1.into())
        );
        assert!(answer.body.get("seq").is_none(), "no place in line");
    }
    assert_eq!(
        app.intents_in_stream().await,
        in_line,
        "nothing went to the line"
    );
}

/// Every winner's repeat gets its recorded answer.
async fn assert_winners_repeat(app: &TestApp, winners: &[(String, Answer)]) {
    for (i, (key, won)) in winners.iter().enumerate() {
        let again = app.buy(key, &format!("u{i}"), 5).await;
        assert_eq!((again.status, &again.body), (201, &won.body), "{key}");
    }
}

/// New keys until one is decided by the line again (it has a `seq`).
async fn until_the_line_decides(app: &TestApp, prefix: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    loop {
        let answer = app
            .buy(&format!("{prefix}-{i}"), &format!("{prefix}-u{i}"), 10)
            .await;
        if answer.body["seq"].is_u64() {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "the sell-out was never lifted: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_never_contradicts_the_line() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            stock: 3,
            ..AppOptions::default()
        })
        .await,
    );
    let mut winners = Vec::new();
    for i in 0..3 {
        let key = format!("w{i}");
        let won = app.buy(&key, &format!("u{i}"), 10).await;
        assert_eq!(won.status, 201, "{won:?}");
        winners.push((key, won));
    }
    app.wait_for_fast_path("probe").await;
    let fast_before = app.metric("dropline_gateway_fast_path_total").await;
    assert_all_answered_at_once(&app, "late", NEW_KEYS).await;
    let fast = app.metric("dropline_gateway_fast_path_total").await - fast_before;
    assert!(fast >= NEW_KEYS as f64, "{fast} counted");
    assert_winners_repeat(&app, &winners).await;

    // A gateway started after the sell-out learns it from the store.
    let late = Arc::new(
        spawn_app_with(AppOptions {
            role: Role::GatewayOnly,
            reuse: Some((app.database_url.clone(), app.sku.clone())),
            ..AppOptions::default()
        })
        .await,
    );
    late.wait_for_fast_path("late-probe").await;
    assert_all_answered_at_once(&late, "late-gw", 20).await;
    assert_winners_repeat(&late, &winners).await;

    // A restock stands in line; once decided, new keys go to the line again.
    app.restock(2).await;
    let restocked = until_the_line_decides(&app, "restocked").await;
    assert_eq!(
        (restocked.status, restocked.body["outcome"].as_str()),
        (201, Some("won"))
    );
    let elsewhere = until_the_line_decides(&late, "elsewhere").await;
    assert_eq!(elsewhere.body["outcome"], "won", "{elsewhere:?}");
    assert_eq!(app.drop_view().await["won"], 5);
    app.assert_invariants().await;
}

/// A crowd bigger than what is left: while the gateway's own undecided
/// purchases cover every unit left, it holds the rest back instead of
/// sending them to the line, and answers them `sold_out` itself once the
/// line sold the units. (Held for at most `hold_max_ms`: long here, so
/// nothing is sent for want of an answer on a slow machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_beyond_the_units_left_sends_the_line_only_what_they_cover() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            stock: 5,
            tune: Box::new(|settings| settings.gateway.hold_max_ms = 10_000),
            ..AppOptions::default()
        })
        .await,
    );
    // Once the line decided a purchase, the gateway knows what is left.
    let first = app.buy("first", "u-first", 10).await;
    assert_eq!((first.status, &first.body["outcome"]), (201, &"won".into()));

    let answers = crowd(&app, "crowd", 100).await;
    let won: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(won.len(), 4, "the 4 units left are sold: {won:?}");
    assert!(won.iter().all(|a| a.body["outcome"] == "won"), "{won:?}");
    for (i, answer) in answers.iter().enumerate().filter(|(_, a)| a.status != 201) {
        assert!(answer.is_fast_sold_out(), "crowd-{i}: {answer:?}");
    }
    assert_eq!(
        app.intents_in_stream().await,
        5,
        "the line got the first purchase and 4 of the crowd, no more"
    );
    assert_eq!(app.drop_view().await["won"], 5);
    app.assert_invariants().await;
}

/// An owner that decided a drop's whole line announces its sell-out with
/// every decision, `sold_out` ones too: a repeat of a key the line refused
/// before the sell-out then gets its recorded answer from the gateway,
/// place in line and all, without standing in line again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_a_key_refused_in_line_gets_its_place_from_the_gateway_after_the_sell_out() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            stock: 2,
            per_user_limit: 3,
            ..AppOptions::default()
        })
        .await,
    );
    let three = serde_json::json!({ "user_id": "cy", "quantity": 3 });
    let refused = app.buy_body("cy-1", three.clone(), 10).await;
    assert_eq!(
        (refused.status, refused.body["outcome"].as_str()),
        (409, Some("sold_out")),
        "3 asked, 2 left: {refused:?}"
    );
    assert!(refused.body["seq"].is_u64(), "decided in line: {refused:?}");
    for buyer in ["ana", "bo"] {
        let won = app.buy(&format!("{buyer}-1"), buyer, 10).await;
        assert_eq!(won.status, 201, "{won:?}");
    }
    app.wait_for_fast_path("probe").await;
    let in_line = app.intents_in_stream().await;
    let again = app.buy_body("cy-1", three, 10).await;
    assert_eq!((again.status, &again.body), (409, &refused.body));
    assert_eq!(
        app.intents_in_stream().await,
        in_line,
        "the gateway answered the repeat itself"
    );
    app.assert_invariants().await;
}
