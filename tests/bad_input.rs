//! Every malformed request gets a 4xx problem+json and changes nothing.

use dropline_suite::{read_answer, spawn_app, Answer, TestApp};

async fn post(app: &TestApp, sku: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = app
        .http
        .post(format!("{}/v1/drops/{sku}/purchases", app.base_url))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read_answer(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_purchase_gets_a_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let sku = app.sku.to_string();
    let json = ("content-type", "application/json");
    let key = ("idempotency-key", "k-1");
    let ok_body = r#"{"user_id":"ana"}"#;
    let huge_body = format!(r#"{{"user_id":"{}"}}"#, "a".repeat(10_000));
    let long_key = "k".repeat(256);
    // (what, expected status, headers, SKU in the path, body)
    type Case<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, String, String);
    let cases: Vec<Case> = vec![
        (
            "no Idempotency-Key",
            400,
            vec![json],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "empty Idempotency-Key",
            400,
            vec![json, ("idempotency-key", "")],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "key with a space",
            400,
            vec![json, ("idempotency-key", "a b")],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "unterminated quoted key",
            400,
            vec![json, ("idempotency-key", "\"abc")],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "key too long",
            400,
            vec![json, ("idempotency-key", long_key.as_str())],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "not JSON",
            400,
            vec![json, key],
            sku.clone(),
            "user_id=ana".into(),
        ),
        ("no user_id", 400, vec![json, key], sku.clone(), "{}".into()),
        (
            "blank user_id",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"  "}"#.into(),
        ),
        (
            "user_id not a string",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":42}"#.into(),
        ),
        (
            "quantity zero",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"ana","quantity":0}"#.into(),
        ),
        (
            "quantity negative",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"ana","quantity":-3}"#.into(),
        ),
        (
            "quantity huge",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"ana","quantity":1000000}"#.into(),
        ),
        (
            "quantity not a number",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"ana","quantity":"2"}"#.into(),
        ),
        (
            "unknown field",
            400,
            vec![json, key],
            sku.clone(),
            r#"{"user_id":"ana","price":1}"#.into(),
        ),
        (
            "no content type",
            415,
            vec![key],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "text/plain",
            415,
            vec![("content-type", "text/plain"), key],
            sku.clone(),
            ok_body.into(),
        ),
        (
            "body too large",
            413,
            vec![json, key],
            sku.clone(),
            huge_body.clone(),
        ),
        (
            "SKU with a dot",
            400,
            vec![json, key],
            "a.b".into(),
            ok_body.into(),
        ),
        (
            "SKU with a wildcard",
            400,
            vec![json, key],
            "a*".into(),
            ok_body.into(),
        ),
        (
            "unknown SKU",
            404,
            vec![json, key],
            "no-such-drop".into(),
            ok_body.into(),
        ),
    ];
    for (what, status, headers, sku, body) in &cases {
        let answer = post(&app, sku, headers, body).await;
        assert_eq!(answer.status, *status, "{what}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert_eq!(
            answer.body["status"], *status,
            "{what}: problem body names the status"
        );
        assert!(
            answer.body["title"].is_string() && answer.body["detail"].is_string(),
            "{what}"
        );
    }

    let bad_reads = [
        (format!("/v1/drops/{}/purchases/never-sent", app.sku), 404),
        ("/v1/drops/a.b".to_string(), 400),
        ("/v1/drops/nope".to_string(), 404),
        ("/no/such/path".to_string(), 404),
    ];
    for (path, status) in &bad_reads {
        let answer = app.get(path).await;
        assert_eq!(answer.status, *status, "GET {path}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let wrong_method = read_answer(app.http.delete(app.purchases_url())).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.content_type, "application/problem+json");

    // Nothing was accepted, decided or sold.
    assert_eq!(app.intents_in_stream().await, 0);
    assert_eq!(app.stored_counts().await, (0, 0));
    let view = app.drop_view().await;
    assert_eq!(
        (view["remaining"].as_u64(), view["won"].as_u64()),
        (Some(100), Some(0))
    );

    // And the drop still works for a good request afterwards.
    assert_eq!(app.buy("good", "ana", 10).await.status, 201);
}
