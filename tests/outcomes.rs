//! What buyers are told: limits, quantities, closed drops, late decisions.

use dropline_store::AdmissionChange;
use dropline_suite::{read_answer, spawn_app, spawn_app_with, AppOptions, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_per_user_limit_gets_limit_reached() {
    let app = spawn_app_with(AppOptions {
        stock: 10,
        per_user_limit: 2,
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.buy("a1", "ana", 10).await.status, 201);
    assert_eq!(app.buy("a2", "ana", 10).await.status, 201);
    let third = app.buy("a3", "ana", 10).await;
    assert_eq!(
        (third.status, third.body["outcome"].as_str()),
        (409, Some("limit_reached"))
    );
    let too_many = app
        .buy_body(
            "b1",
            serde_json::json!({ "user_id": "bob", "quantity": 3 }),
            10,
        )
        .await;
    assert_eq!(
        too_many.body["outcome"], "limit_reached",
        "asking for more than the limit at once"
    );
    let two = app
        .buy_body(
            "b2",
            serde_json::json!({ "user_id": "bob", "quantity": 2 }),
            10,
        )
        .await;
    assert_eq!((two.status, two.body["quantity"].as_u64()), (201, Some(2)));
    let view = app.drop_view().await;
    assert_eq!(
        (view["won"].as_u64(), view["remaining"].as_u64()),
        (Some(4), Some(6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantity_larger_than_what_remains_is_sold_out_and_a_smaller_one_still_wins() {
    let app = spawn_app_with(AppOptions {
        stock: 2,
        per_user_limit: 3,
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.buy("first", "ana", 10).await.status, 201);
    let big = app
        .buy_body(
            "big",
            serde_json::json!({ "user_id": "bob", "quantity": 2 }),
            10,
        )
        .await;
    assert_eq!(
        (big.status, big.body["outcome"].as_str()),
        (409, Some("sold_out"))
    );
    assert_eq!(app.buy("small", "carl", 10).await.status, 201);
    assert_eq!(app.drop_view().await["remaining"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_drop_refuses_purchases_with_409_and_accepts_nothing() {
    let app = spawn_app().await;
    app.change_admission(AdmissionChange::Pause).await;
    let refused = app.buy("k", "ana", 5).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["state"], "paused");
    assert_eq!(app.intents_in_stream().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_accepted_while_no_processor_runs_are_answered_202_and_decided_once_one_starts() {
    let app = spawn_app_with(AppOptions {
        stock: 3,
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let mut pending = Vec::new();
    for i in 0..5 {
        let answer = app.queue(&format!("k{i}"), &format!("u{i}")).await;
        assert_eq!(answer.body["outcome"], "pending");
        assert_eq!(answer.headers["preference-applied"], "wait=0");
        let location = answer.headers["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert_eq!(location, format!("/v1/drops/{}/purchases/k{i}", app.sku));
        pending.push(location);
    }
    // Undecided: the purchase is not known yet.
    assert_eq!(app.read_purchase("k0", 0).await.status, 404);

    let processor = app.start_processor();

    let mut outcomes = Vec::new();
    for (i, location) in pending.iter().enumerate() {
        let read = read_answer(
            app.http
                .get(format!("{}{location}", app.base_url))
                .header("Prefer", "wait=20")
                .header("Authorization", app.bearer_of_key(&format!("k{i}"))),
        )
        .await;
        assert_eq!(read.status, 200, "{read:?}");
        outcomes.push(
            read.body["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        outcomes,
        ["won", "won", "won", "sold_out", "sold_out"],
        "first come, first served"
    );
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_async_is_answered_at_acceptance_and_decided_later() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let accepted = read_answer(
        app.http
            .post(app.purchases_url())
            .header("Authorization", app.tokens.bearer("ana"))
            .header("Idempotency-Key", "async-1")
            .header("Prefer", "respond-async")
            .json(&serde_json::json!({ "user_id": "ana" })),
    )
    .await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    assert_eq!(accepted.body["outcome"], "pending");
    assert_eq!(
        accepted.headers["preference-applied"], "respond-async",
        "the preference is echoed"
    );
    let location = accepted.headers["location"]
        .to_str()
        .expect("ASCII location")
        .to_string();
    assert!(location.ends_with("/purchases/async-1"), "{location}");

    let processor = app.start_processor();
    let decided = read_answer(
        app.http
            .get(format!("{}{location}", app.base_url))
            .header("Prefer", "wait=10")
            .header("Authorization", app.tokens.bearer("ana")),
    )
    .await;
    assert_eq!(
        (decided.status, decided.body["outcome"].as_str()),
        (200, Some("won"))
    );
    processor.stop().await;
}
