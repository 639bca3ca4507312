//! The per-user rate limit: a buyer who sends purchases faster than the
//! gateway's per-user rate gets `429` with `Retry-After` and nothing is
//! accepted; other buyers are not affected; the limit is off by default.
//! The per-address limit: the same for a client address, which only a
//! trusted proxy's `X-Forwarded-For` can name.

use dropline_suite::{read_answer, spawn_app, spawn_app_with, Answer, AppOptions, TestApp};

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

/// An app whose API takes `burst` requests per client address (then one
/// every 5 s), believing `X-Forwarded-For` from `trusted` proxies.
async fn app_limiting_addresses(burst: u32, trusted: &[&str]) -> TestApp {
    let trusted: Vec<_> = trusted
        .iter()
        .map(|p| dropline_gateway::parse_trusted_proxy(p).expect("a proxy"))
        .collect();
    spawn_app_with(AppOptions {
        stock: 10,
        tune: Box::new(move |settings| {
            settings.gateway.address_rate_per_s = 0.2;
            settings.gateway.address_burst = burst;
            settings.gateway.trusted_proxies = dropline_gateway::TrustedProxies::new(trusted);
        }),
        ..AppOptions::default()
    })
    .await
}

async fn view_from(app: &TestApp, forwarded_for: &str) -> Answer {
    let url = format!("{}/v1/drops/{}", app.base_url, app.sku);
    read_answer(app.http.get(url).header("X-Forwarded-For", forwarded_for)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_beyond_its_rate_is_told_to_wait_and_others_are_served() {
    let app = app_limiting_addresses(3, &["127.0.0.0/8"]).await;
    for _ in 0..3 {
        assert_eq!(view_from(&app, "203.0.113.7").await.status, 200);
    }
    let fourth = view_from(&app, "203.0.113.7").await;
    assert_eq!(fourth.status, 429, "{fourth:?}");
    assert_eq!(fourth.body["type"], "urn:dropline:problem:rate-limited");
    assert!(fourth.headers.contains_key("retry-after"), "{fourth:?}");
    // The client's own entry left of the proxy's changes nothing.
    let spoofed = view_from(&app, "198.51.100.1, 203.0.113.7").await;
    assert_eq!(spoofed.status, 429, "{spoofed:?}");
    assert_eq!(
        view_from(&app, "203.0.113.8").await.status,
        200,
        "another client"
    );
    // A purchase from the limited address is refused before the line.
    let purchase = app
        .http
        .post(app.purchases_url())
        .header("X-Forwarded-For", "203.0.113.7")
        .header("Idempotency-Key", "limited-1")
        .header("Authorization", app.tokens.bearer("ana"))
        .json(&serde_json::json!({}));
    assert_eq!(read_answer(purchase).await.status, 429);
    assert_eq!(app.intents_in_stream().await, 0, "nothing accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_x_forwarded_for_cannot_buy_a_fresh_bucket() {
    let app = app_limiting_addresses(2, &[]).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(view_from(&app, &format!("203.0.113.{i}")).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}
