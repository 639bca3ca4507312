//! A shop's web front on another origin may call the API, and only the
//! origins configured: preflights are answered (never `405`), and only a
//! configured origin is allowed.

use dropline_suite::{read_answer, spawn_app_with, AppOptions, TestApp};

const SHOP: &str = "https://shop.example";

async fn preflight(app: &TestApp, origin: &str) -> dropline_suite::Answer {
    read_answer(
        app.http
            .request(reqwest::Method::OPTIONS, app.purchases_url())
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,idempotency-key",
            ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_origins_may_call_from_a_browser() {
    let app = spawn_app_with(AppOptions {
        tune: Box::new(|settings| {
            settings.gateway.cors_origins =
                vec![dropline_gateway::parse_origin(SHOP).expect("an origin")];
        }),
        ..AppOptions::default()
    })
    .await;
    let allowed = preflight(&app, SHOP).await;
    assert!(allowed.status < 300, "{allowed:?}");
    assert_eq!(allowed.headers["access-control-allow-origin"], SHOP);
    let methods = allowed.headers["access-control-allow-methods"]
        .to_str()
        .expect("ASCII");
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers["access-control-allow-headers"]
        .to_str()
        .expect("ASCII");
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );

    let stranger = preflight(&app, "https://evil.example").await;
    assert_ne!(stranger.status, 405, "a preflight is answered");
    assert!(
        stranger
            .headers
            .get("access-control-allow-origin")
            .is_none(),
        "{stranger:?}"
    );

    // The real request from the shop's page carries the header too.
    let bought = read_answer(
        app.http
            .post(app.purchases_url())
            .header("Origin", SHOP)
            .header("Authorization", app.tokens.bearer("ana"))
            .header("Idempotency-Key", "from-the-shop")
            .json(&serde_json::json!({})),
    )
    .await;
    assert_eq!(bought.status, 201, "{bought:?}");
    assert_eq!(bought.headers["access-control-allow-origin"], SHOP);
}
