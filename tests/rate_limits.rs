//! The per-user rate limit: a buyer who sends purchases faster than the
//! gateway's per-user rate gets `429` with `Retry-After` and nothing is
//! accepted; other buyers are not affected; the limit is off by default.

use dropline_suite::{spawn_app, spawn_app_with, AppOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_beyond_the_rate_is_told_to_wait_and_nothing_is_accepted() {
    let app = spawn_app_with(AppOptions {
        stock: 10,
        per_user_limit: 10,
        tune: Box::new(|settings| {
            settings.gateway.user_rate_per_s = 0.2;
            settings.gateway.user_burst = 2;
        }),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.buy("ana-1", "ana", 5).await.status, 201);
    assert_eq!(app.buy("ana-2", "ana", 5).await.status, 201);
    let third = app.buy("ana-3", "ana", 5).await;
    assert_eq!(third.status, 429, "{third:?}");
    assert_eq!(third.content_type, "application/problem+json");
    assert_eq!(third.body["type"], "urn:dropline:problem:rate-limited");
    let wait_s: u64 = third.headers["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=5).contains(&wait_s), "Retry-After {wait_s}");
    assert_eq!(
        app.buy("bob-1", "bob", 5).await.status,
        201,
        "bob has his own bucket"
    );
    assert_eq!(
        app.intents_in_stream().await,
        3,
        "the refused purchase was not accepted"
    );
    assert_eq!(app.drop_view().await["won"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_rate_a_buyer_is_not_limited() {
    let app = spawn_app().await;
    for i in 0..30 {
        let answer = app.buy(&format!("ana-{i}"), "ana", 5).await;
        assert_ne!(answer.status, 429, "{answer:?}");
    }
}
