//! Every malformed request gets a 4xx problem+json and changes nothing.

use dropline_suite::{read_answer, spawn_app, Answer, TestApp};

async fn post(app: &TestApp, sku: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    // A valid buyer's token: what is malformed is the rest.
    let mut request = app
        .http
        .post(format!("{}/v1/drops/{sku}/purchases", app.base_url))
        .header("Authorization", app.tokens.bearer("ana"))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read_answer(request).await
}

/// One malformed purchase: what is wrong with it, the status it must get,
/// and the request.
struct Case {
    what: &'static str,
    status: u16,
    headers: Vec<(&'static str, String)>,
    sku: String,
    body: String,
}

const JSON: (&str, &str) = ("content-type", "application/json");
const OK_BODY: &str = r#"{"user_id":"ana"}"#;

impl Case {
    /// A JSON purchase of `sku` with key `k-1` and `body`.
    fn body(what: &'static str, status: u16, sku: &str, body: &str) -> Self {
        Self::with_headers(what, status, sku, &[JSON, ("idempotency-key", "k-1")], body)
    }

    fn with_headers(
        what: &'static str,
        status: u16,
        sku: &str,
        headers: &[(&'static str, &str)],
        body: &str,
    ) -> Self {
        Self {
            what,
            status,
            headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            sku: sku.to_string(),
            body: body.to_string(),
        }
    }
}

fn malformed_purchases(sku: &str) -> Vec<Case> {
    let key = ("idempotency-key", "k-1");
    let long_key = "k".repeat(256);
    let huge_body = format!(r#"{{"user_id":"{}"}}"#, "a".repeat(10_000));
    let header_case = |what, headers: &[(&'static str, &str)]| {
        Case::with_headers(what, 400, sku, headers, OK_BODY)
    };
    let mut cases = vec![
        header_case("no Idempotency-Key", &[JSON]),
        header_case("empty Idempotency-Key", &[JSON, ("idempotency-key", "")]),
        header_case("key with a space", &[JSON, ("idempotency-key", "a b")]),
        header_case(
            "unterminated quoted key",
            &[JSON, ("idempotency-key", "\"abc")],
        ),
        header_case("key too long", &[JSON, ("idempotency-key", &long_key)]),
        Case::body("not JSON", 400, sku, "user_id=ana"),
        Case::body("blank user_id", 400, sku, r#"{"user_id":"  "}"#),
        Case::body("user_id not a string", 400, sku, r#"{"user_id":42}"#),
        Case::body("unknown field", 400, sku, r#"{"user_id":"ana","price":1}"#),
        Case::with_headers("no content type", 415, sku, &[key], OK_BODY),
        Case::with_headers(
            "text/plain",
            415,
            sku,
            &[("content-type", "text/plain"), key],
            OK_BODY,
        ),
        Case::body("body too large", 413, sku, &huge_body),
        Case::body("SKU with a dot", 400, "a.b", OK_BODY),
        Case::body("SKU with a wildcard", 400, "a*", OK_BODY),
        Case::body("unknown SKU", 404, "no-such-drop", OK_BODY),
    ];
    cases.extend(malformed_quantities(sku));
    cases
}

/// Quantities that are no whole number of units one may buy.
fn malformed_quantities(sku: &str) -> Vec<Case> {
    vec![
        Case::body(
            "quantity zero",
            400,
            sku,
            r#"{"user_id":"ana","quantity":0}"#,
        ),
        Case::body(
            "quantity negative",
            400,
            sku,
            r#"{"user_id":"ana","quantity":-3}"#,
        ),
        Case::body(
            "quantity huge",
            400,
            sku,
            r#"{"user_id":"ana","quantity":1000000}"#,
        ),
        Case::body(
            "quantity a fraction",
            400,
            sku,
            r#"{"user_id":"ana","quantity":1.5}"#,
        ),
        Case::body(
            "quantity not a number",
            400,
            sku,
            r#"{"user_id":"ana","quantity":"2"}"#,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_purchase_gets_a_problem_and_changes_nothing() {
    let app = spawn_app().await;
    for case in malformed_purchases(app.sku.as_str()) {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = post(&app, &case.sku, &headers, &case.body).await;
        let what = case.what;
        assert_eq!(answer.status, case.status, "{what}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert_eq!(
            answer.body["status"], case.status,
            "{what}: problem body names the status"
        );
        assert!(
            answer.body["title"].is_string() && answer.body["detail"].is_string(),
            "{what}"
        );
    }
    assert_bad_reads_get_problems(&app).await;
    assert_nothing_was_accepted(&app).await;
    // And the drop still works for a good request afterwards.
    assert_eq!(app.buy("good", "ana", 10).await.status, 201);
}

async fn assert_bad_reads_get_problems(app: &TestApp) {
    let never_sent = app.read_purchase("never-sent", 0).await;
    assert_eq!(never_sent.status, 404, "{never_sent:?}");
    assert_eq!(never_sent.content_type, "application/problem+json");
    let bad_reads = [
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
}

/// Nothing was accepted, decided or sold.
async fn assert_nothing_was_accepted(app: &TestApp) {
    assert_eq!(app.intents_in_stream().await, 0);
    assert_eq!(app.stored_counts().await, (0, 0));
    let view = app.drop_view().await;
    assert_eq!(
        (view["remaining"].as_u64(), view["won"].as_u64()),
        (Some(100), Some(0))
    );
}

/// Strings an attacker would choose, as keys, buyers and SKUs: each is
/// data (stored and read back verbatim, a bound parameter to Postgres) or
/// refused at the edge, and none becomes a NATS subject of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_stay_data_in_sql_and_never_shape_a_subject() {
    let app = spawn_app().await;
    let sql = "x');DROP_TABLE_purchases;--";
    let key = "k'--;DELETE/**/FROM/**/drops;\\\"";
    let buyer = "robert'); DROP TABLE drops; -- \u{1F45F}";
    let answer = app.buy(key, buyer, 10).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let url = format!("{}/v1/drops/{}/purchases/{encoded}", app.base_url, app.sku);
    let read = read_answer(
        app.http
            .get(url)
            .header("Authorization", app.tokens.bearer(buyer)),
    )
    .await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["idempotency_key"], key);
    assert_eq!(read.body["user_id"], buyer, "stored verbatim");
    assert_eq!(app.stored_counts().await.0, 1, "the purchases table stands");
    assert_eq!(app.drop_view().await["won"], 1, "the drops table stands");
    assert_subject_syntax_is_refused(&app, sql).await;
    // A head beyond 64 KiB is refused before it is read whole.
    let huge = "x".repeat(100 * 1024);
    let request = app.http.get(app.purchases_url()).header("X-Padding", huge);
    let answer = request.send().await.map(|r| r.status().as_u16());
    assert!(
        matches!(answer, Ok(431) | Err(_)),
        "a 100 KiB head: {answer:?}"
    );
    assert_only_the_purchases_lane_was_written(&app).await;
}

/// Subject syntax in a SKU is refused before the bus.
async fn assert_subject_syntax_is_refused(app: &TestApp, sql: &str) {
    for sku in [
        "a.b",
        "a.>",
        "*",
        ">",
        "dropline.line.x.ctl",
        "a%2Eb",
        "a%20b",
        sql,
    ] {
        let url = format!("{}/v1/drops/{}/purchases", app.base_url, sku);
        let request = app
            .http
            .post(url)
            .header("Idempotency-Key", "k-hostile")
            .header("Authorization", app.tokens.bearer("ana"))
            .json(&serde_json::json!({}));
        let answer = read_answer(request).await;
        assert!(
            [400, 404].contains(&answer.status),
            "SKU {sku:?}: {answer:?}"
        );
    }
}

/// The stream holds this drop's purchases lane and nothing else of its.
async fn assert_only_the_purchases_lane_was_written(app: &TestApp) {
    let client = async_nats::connect(&app.nats_url).await.expect("nats");
    let stream = async_nats::jetstream::new(client)
        .get_stream(dropline_core::names::INTENTS_STREAM)
        .await
        .expect("stream");
    use futures::TryStreamExt;
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("dropline.*.{}.>", app.sku))
        .await
        .expect("subjects")
        .try_collect()
        .await
        .expect("subject counts");
    let lane = dropline_core::names::line_subject(&app.sku, dropline_core::names::Lane::Purchases);
    assert_eq!(
        subjects,
        vec![(lane, 1)],
        "one message, on the purchases lane"
    );
}
