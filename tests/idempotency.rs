//! One decision per (SKU, Idempotency-Key), whatever the client does.

use std::sync::Arc;

use dropline_suite::buyers::storm;
use dropline_suite::{read_answer, spawn_app, spawn_app_with, AppOptions, PrivateNats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_sent_twenty_times_at_once_gets_one_decision() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            stock: 5,
            ..AppOptions::default()
        })
        .await,
    );
    let answers = storm(&app, "storm-key", "storm-user", 20).await;
    for a in &answers {
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body, answers[0].body, "every copy gets the same answer");
    }
    assert_eq!(app.stored_counts().await, (1, 1));
    assert_eq!(
        app.intents_in_stream().await,
        20,
        "every copy was accepted; the processor decided the first and answered the rest with it"
    );
    assert_eq!(app.drop_view().await["remaining"], 4);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_with_a_different_body_is_refused_with_422() {
    let app = spawn_app().await;
    let first = app.buy("reused", "ana", 10).await;
    assert_eq!(first.status, 201);
    let other_user = app.buy("reused", "bob", 10).await;
    assert_eq!(other_user.status, 422, "{other_user:?}");
    assert_eq!(other_user.content_type, "application/problem+json");
    let other_quantity = read_answer(
        app.http
            .post(app.purchases_url())
            .header("Authorization", app.tokens.bearer("ana"))
            .header("Idempotency-Key", "reused")
            .json(&serde_json::json!({ "user_id": "ana", "quantity": 2 })),
    )
    .await;
    assert_eq!(other_quantity.status, 422);
    // The original decision stands, unchanged.
    let again = app.buy("reused", "ana", 10).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(app.drop_view().await["won"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quoted_key_form_is_the_same_key_as_the_bare_form() {
    let app = spawn_app().await;
    let bare = app.buy("8e03978e-40d5-43e8", "ana", 10).await;
    let quoted = app.buy("\"8e03978e-40d5-43e8\"", "ana", 10).await;
    assert_eq!(bare.status, 201);
    assert_eq!((quoted.status, &quoted.body), (201, &bare.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_duplicate_window_still_gets_the_recorded_answer() {
    // Gateways send no `Nats-Msg-Id`, so the stream's duplicate window drops
    // nothing today; a 1 s window (a stream setting, hence a NATS of its
    // own) keeps "long after" quick to reach should a per-key dedupe return.
    let nats = PrivateNats::start().await.expect("private nats-server");
    // Units are left, so the retries go to the line (a finally sold-out
    // drop's gateways would answer them themselves).
    let app = spawn_app_with(AppOptions {
        nats_url: Some(nats.url.clone()),
        stock: 2,
        tune: Box::new(|s| s.stream.duplicate_window_s = 1),
        ..AppOptions::default()
    })
    .await;
    let first = app.buy("late-retry", "ana", 10).await;
    assert_eq!(first.status, 201);
    let lost = app.buy("over-the-limit", "ana", 10).await;
    assert_eq!(
        (lost.status, lost.body["outcome"].as_str()),
        (409, Some("limit_reached"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let retry = app.buy("late-retry", "ana", 10).await;
    assert_eq!((retry.status, &retry.body), (201, &first.body));
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let reused = app.buy("late-retry", "mallory", 10).await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(
        app.stored_counts().await,
        (2, 1),
        "the late retries were decided as repeats, not recorded again"
    );
    // The server took both late sends as new intents: the processor kept
    // them from a second decision.
    assert_eq!(app.intents_in_stream().await, 4);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_answers_every_old_repeat_although_it_loads_only_the_winners() {
    // A claim loads a SKU's counters and winners, not its history: a
    // repeat of an older key is refused by the store's one decision per
    // key, and the processor answers it with what the store recorded.
    // A unit stays: repeats go to the line, not to a gateway's sell-out
    // answers.
    let app = spawn_app_with(AppOptions {
        stock: 5,
        per_user_limit: 2,
        ..AppOptions::default()
    })
    .await;
    let pair = |user: &str| serde_json::json!({ "user_id": user, "quantity": 2 });
    let history = [
        ("ana-1", pair("ana"), 201),
        ("ana-2", pair("ana"), 409), // limit_reached: she has her two
        ("bo-1", pair("bo"), 201),   // one unit is left after this:
        ("cy-1", pair("cy"), 409),   // sold_out, a pair is more than that
    ];
    let mut first = Vec::new();
    for (key, body, status) in &history {
        let answer = app.buy_body(key, body.clone(), 10).await;
        assert_eq!(answer.status, *status, "{key}: {answer:?}");
        first.push(answer);
    }
    let stored = app.stored_counts().await;
    let app = app.restarted().await;
    // In a batch of their own, then all at once with a new key among them.
    let mut singly = Vec::new();
    for (key, body, _) in &history {
        singly.push(app.buy_body(key, body.clone(), 10).await);
    }
    let mut together: Vec<_> = history
        .iter()
        .map(|(key, body, _)| app.buy_body(key, body.clone(), 10))
        .collect();
    together.push(app.buy_body("dee-1", serde_json::json!({ "user_id": "dee" }), 10));
    let answers = futures::future::join_all(together).await;
    for again in [&singly[..], &answers[..history.len()]] {
        for ((key, ..), (before, again)) in history.iter().zip(first.iter().zip(again)) {
            assert_eq!(
                (again.status, &again.body),
                (before.status, &before.body),
                "{key}"
            );
        }
    }
    assert_eq!(
        answers[4].status, 201,
        "the new key wins the last unit: {:?}",
        answers[4]
    );
    assert_eq!(
        app.stored_counts().await,
        (stored.0 + 1, stored.1 + 1),
        "only the new key was recorded"
    );
    app.assert_invariants().await;
}
