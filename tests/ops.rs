//! Operational endpoints, and the answer when the broker is gone.

use std::time::{Duration, Instant};

use dropline_suite::{read_answer, spawn_app, spawn_app_with, AppOptions, PrivateNats, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_openapi_answer() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(
        (health.status, &health.body["status"]),
        (200, &serde_json::json!("ok"))
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        (ready.body["nats"].as_str(), ready.body["postgres"].as_str()),
        (Some("ok"), Some("ok"))
    );

    assert_eq!(app.buy("m1", "ana", 10).await.status, 201);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for name in [
        "dropline_gateway_accepted_total",
        "dropline_gateway_answers_total",
        "dropline_gateway_fast_path_total",
        "dropline_processor_decisions_total",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }

    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"], "3.1.0");
    for path in [
        "/v1/drops/{sku}/purchases",
        "/v1/drops/{sku}/purchases/{idempotency_key}",
        "/v1/drops/{sku}",
    ] {
        assert!(spec.body["paths"][path].is_object(), "spec lacks {path}");
    }
    let schemas = &spec.body["components"]["schemas"];
    let outcomes = schemas["Purchase"]["properties"]["outcome"]["enum"].to_string();
    assert!(outcomes.contains("closed"), "{outcomes}");
    assert!(
        schemas["DropNotOpen"].is_object(),
        "the drop-not-open problem"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_purchases_get_503_with_retry_after_and_succeed_once_it_is_back() {
    let mut nats = PrivateNats::start().await.expect("private nats-server");
    let app = spawn_app_with(AppOptions {
        nats_url: Some(nats.url.clone()),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.buy("before", "ana", 10).await.status, 201);

    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let refused = app.buy("during", "bob", 10).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered without hanging: {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/readyz").await.status, 503);

    nats.restart().await.expect("restart nats-server");
    // The client reconnects by itself; the same key is then safe to retry.
    let mut retried = None;
    for _ in 0..100 {
        let answer = app.buy("during", "bob", 10).await;
        if answer.status != 503 {
            retried = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = retried.expect("accepted again after the broker came back");
    assert_eq!(retried.status, 201, "{retried:?}");
    assert_eq!(app.drop_view().await["won"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_in_flight_bound_requests_get_429_and_nothing_is_accepted() {
    // No processor: a purchase holds its slot for its whole wait.
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        tune: Box::new(|s| s.gateway.requests_in_flight_max = 1),
        ..AppOptions::default()
    })
    .await;
    let holder = {
        let request = app
            .http
            .post(app.purchases_url())
            .header("Authorization", app.tokens.bearer("ana"))
            .header("Idempotency-Key", "holder")
            .header("Prefer", "wait=2")
            .json(&serde_json::json!({ "user_id": "ana" }));
        tokio::spawn(read_answer(request))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shed = app.buy("shed", "bob", 1).await;
    assert_eq!(shed.status, 429, "{shed:?}");
    assert_eq!(shed.content_type, "application/problem+json");
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(app.get("/healthz").await.status, 200, "probes are not shed");
    assert_eq!(holder.await.unwrap().status, 202);
    assert_eq!(
        app.intents_in_stream().await,
        1,
        "the shed request was not accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_the_gateway_finishes_requests_in_flight() {
    let app = spawn_app_with(AppOptions {
        role: Role::GatewayOnly,
        ..AppOptions::default()
    })
    .await;
    let in_flight = {
        let request = app
            .http
            .post(app.purchases_url())
            .header("Authorization", app.tokens.bearer("ana"))
            .header("Idempotency-Key", "in-flight")
            .header("Prefer", "wait=2")
            .json(&serde_json::json!({ "user_id": "ana" }));
        tokio::spawn(read_answer(request))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_url = app.base_url.clone();
    app.stop().await;
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status, 202,
        "the request in flight got its answer: {answer:?}"
    );
    assert!(
        reqwest::get(format!("{base_url}/healthz")).await.is_err(),
        "no longer accepting"
    );
}
