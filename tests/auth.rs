//! Only the buyer can buy as the buyer: a bearer token names the buyer,
//! and every token that does not (missing, forged, expired, not yet valid,
//! `alg: none`, signed by a foreign key) buys nothing and gets a `401`
//! with its challenge; a body naming someone else is a `403`; another
//! buyer's purchase reads as unknown. And `dropline gateway` refuses to
//! start without a key unless told `--insecure-no-auth`. The operator
//! surfaces take the operator token, never a buyer's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dropline_gateway::{BuyerAuth, OperatorAccess};
use dropline_identity::{KeyConfig, Verifier};
use dropline_suite::{
    binary, read_answer, spawn_app, spawn_app_with, Answer, AppOptions, DroplineProcess, TestApp,
};
use dropline_testkit::Role;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn signed(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).expect("sign")
}

async fn post_with(app: &TestApp, key: &str, authorization: Option<&str>, body: Value) -> Answer {
    let mut request = app
        .http
        .post(app.purchases_url())
        .header("Idempotency-Key", key)
        .header("Prefer", "wait=5")
        .json(&body);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    read_answer(request).await
}

fn assert_unauthorized(answer: &Answer, what: &str, invalid_token: bool) {
    assert_eq!(answer.status, 401, "{what}: {answer:?}");
    assert_eq!(answer.content_type, "application/problem+json", "{what}");
    let challenge = answer.headers["www-authenticate"].to_str().expect("ASCII");
    assert!(
        challenge.starts_with("Bearer realm=\"dropline\""),
        "{what}: {challenge}"
    );
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        invalid_token,
        "{what}: {challenge}"
    );
}

/// `Authorization` values that name nobody at a gateway with `secret`,
/// each with what is wrong with it.
fn nameless(secret: &str) -> Vec<(&'static str, String)> {
    let ours = EncodingKey::from_secret(secret.as_bytes()).expect("key");
    let foreign =
        EncodingKey::from_secret(b"not-the-gateways-secret-but-32-bytes-long").expect("key");
    let rsa_private = std::fs::read(key_file("rsa-private.pem")).expect("key");
    let rsa = EncodingKey::from_rsa_pem(&rsa_private).expect("rsa");
    let claims = json!({ "sub": "ana", "exp": now() + 600 });
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let bearer =
        |alg, key: &EncodingKey, claims: Value| format!("Bearer {}", signed(alg, key, &claims));
    vec![
        ("forged", bearer(Algorithm::HS256, &foreign, claims.clone())),
        (
            "expired",
            bearer(
                Algorithm::HS256,
                &ours,
                json!({ "sub": "ana", "exp": now() - 120 }),
            ),
        ),
        (
            "not yet valid",
            bearer(
                Algorithm::HS256,
                &ours,
                json!({ "sub": "ana", "exp": now() + 7_200, "nbf": now() + 3_600 }),
            ),
        ),
        ("alg none", format!("Bearer {unsigned}")),
        (
            "RS256 against the secret",
            bearer(Algorithm::RS256, &rsa, claims.clone()),
        ),
        (
            "no sub",
            bearer(Algorithm::HS256, &ours, json!({ "exp": now() + 600 })),
        ),
        ("garbage", "Bearer not.a.jwt".to_string()),
        ("another scheme", format!("Basic {}", b64(b"ana:secret"))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_name_nobody_buy_nothing() {
    let app = spawn_app().await;
    for (i, (what, authorization)) in nameless(app.tokens.secret()).iter().enumerate() {
        let body = json!({ "user_id": "ana" });
        let answer = post_with(&app, &format!("k-{i}"), Some(authorization), body).await;
        assert_unauthorized(&answer, what, true);
    }
    let missing = post_with(&app, "k-none", None, json!({ "user_id": "ana" })).await;
    assert_unauthorized(&missing, "no token", false);
    assert_eq!(app.intents_in_stream().await, 0, "nothing was accepted");
    assert_eq!(app.drop_view().await["won"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buyer_is_the_token_and_one_buyer_keeps_to_the_limit() {
    let app = spawn_app().await;
    let ana = app.tokens.bearer("ana");
    // No user_id: the token says who buys.
    let first = post_with(&app, "ana-1", Some(&ana), json!({})).await;
    assert_eq!(
        (first.status, &first.body["user_id"]),
        (201, &json!("ana")),
        "{first:?}"
    );
    // Posing as someone else with one's own token.
    let posing = post_with(&app, "ana-2", Some(&ana), json!({ "user_id": "bob" })).await;
    assert_eq!(posing.status, 403, "{posing:?}");
    assert_eq!(posing.content_type, "application/problem+json");
    // A new key (and the body naming herself) is still ana: the limit holds.
    let again = post_with(&app, "ana-3", Some(&ana), json!({ "user_id": "ana" })).await;
    assert_eq!(
        (again.status, &again.body["outcome"]),
        (409, &json!("limit_reached")),
        "{again:?}"
    );
    assert_eq!(app.drop_view().await["won"], 1);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_reads_as_unknown_to_anyone_but_its_buyer() {
    let app = spawn_app().await;
    assert_eq!(app.buy("ana-key", "ana", 5).await.status, 201);
    let url = format!("{}/v1/drops/{}/purchases/ana-key", app.base_url, app.sku);
    let read_as = |user: &str| {
        read_answer(
            app.http
                .get(&url)
                .header("Authorization", app.tokens.bearer(user)),
        )
    };
    assert_eq!(read_as("ana").await.status, 200);
    let other = read_as("eve").await;
    assert_eq!(other.status, 404, "{other:?}");
    let unknown = app.read_purchase("never-sent", 0).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        other.body["detail"]
            .as_str()
            .map(|d| d.replace("ana-key", "never-sent")),
        unknown.body["detail"].as_str().map(str::to_owned),
        "another's purchase looks like an unknown key"
    );
    assert_unauthorized(
        &read_answer(app.http.get(&url)).await,
        "a read without a token",
        false,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_providers_public_key_is_taken() {
    let app = spawn_app_with(AppOptions {
        tune: Box::new(|settings| {
            let config = KeyConfig {
                public_key_pem: Some(key_file("ec-public.pem")),
                issuer: Some("https://id.example".into()),
                ..KeyConfig::default()
            };
            settings.gateway.auth =
                BuyerAuth::Tokens(Arc::new(Verifier::from_config(&config).expect("verifier")));
        }),
        ..AppOptions::default()
    })
    .await;
    let key = EncodingKey::from_ec_pem(&std::fs::read(key_file("ec-private.pem")).expect("key"))
        .expect("ec");
    let token = |iss: &str| {
        format!(
            "Bearer {}",
            signed(
                Algorithm::ES256,
                &key,
                &json!({ "sub": "cy", "exp": now() + 600, "iss": iss })
            )
        )
    };
    let bought = post_with(&app, "cy-1", Some(&token("https://id.example")), json!({})).await;
    assert_eq!(bought.status, 201, "{bought:?}");
    let elsewhere = post_with(
        &app,
        "cy-2",
        Some(&token("https://evil.example")),
        json!({}),
    )
    .await;
    assert_unauthorized(&elsewhere, "another issuer", true);
    // The shared secret's tokens mean nothing to this gateway.
    let hs = post_with(&app, "cy-3", Some(&app.tokens.bearer("cy")), json!({})).await;
    assert_unauthorized(&hs, "an HS256 token", true);
}

/// `dropline gateway` with no key: a one-line refusal, a non-zero exit.
#[tokio::test]
async fn the_gateway_refuses_to_start_without_a_key() {
    let output = tokio::process::Command::new(binary("dropline"))
        .arg("gateway")
        .env_remove("DROPLINE_JWT_SECRET")
        .env_remove("DROPLINE_JWT_PUBLIC_KEY")
        .env_remove("DROPLINE_JWKS_FILE")
        .env_remove("DROPLINE_AUTH")
        .env("DROPLINE_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .await
        .expect("run dropline");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DROPLINE_JWT_SECRET") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    let short = tokio::process::Command::new(binary("dropline"))
        .arg("gateway")
        .env("DROPLINE_JWT_SECRET", "short")
        .env("DROPLINE_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .await
        .expect("run dropline");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32 are needed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_surfaces_take_the_operator_token_and_nothing_else() {
    const TOKEN: &str = "the-operators-token-of-32-bytes-or-more";
    let app = spawn_app_with(AppOptions {
        tune: Box::new(|settings| {
            settings.gateway.operators = OperatorAccess::token(TOKEN).expect("a long token");
        }),
        ..AppOptions::default()
    })
    .await;
    let basic = |password: &str| {
        let pair = format!("ops:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let stats = format!("/ops/drops/{}/stats", app.sku);
    for path in ["/metrics", stats.as_str()] {
        let url = format!("{}{path}", app.base_url);
        let get = |authorization: Option<String>| {
            let mut request = app.http.get(&url);
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            read_answer(request)
        };
        let refused = get(None).await;
        assert_eq!(
            refused.status, 401,
            "{path} without a credential: {refused:?}"
        );
        let challenge = refused.headers["www-authenticate"].to_str().expect("ASCII");
        assert!(
            challenge.starts_with("Basic realm=\"dropline operators\""),
            "{challenge}"
        );
        assert_eq!(
            get(Some(app.tokens.bearer("ana"))).await.status,
            401,
            "{path}: a buyer's token"
        );
        assert_eq!(
            get(Some(basic("wrong"))).await.status,
            401,
            "{path}: a wrong password"
        );
        assert_eq!(
            get(Some(format!("Bearer {TOKEN}"))).await.status,
            200,
            "{path}: Bearer"
        );
        assert_eq!(
            get(Some(basic(TOKEN))).await.status,
            200,
            "{path}: Basic (a browser)"
        );
    }
    // The probes stay open: load balancers and orchestrators ask them.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processors_metrics_take_the_operator_token_too() {
    const TOKEN: &str = "the-operators-token-of-32-bytes-or-more";
    let app = spawn_app().await;
    let name = format!("processor-{}", dropline_testkit::unique_suffix());
    let env = [
        ("DATABASE_URL", app.database_url.clone()),
        ("NATS_URL", app.nats_url.clone()),
        ("DROPLINE_INSTANCE_ID", name.clone()),
        ("DROPLINE_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("DROPLINE_OPERATOR_TOKEN", TOKEN.to_string()),
        ("RUST_LOG", "info".to_string()),
    ];
    let log = std::env::temp_dir().join(format!("dropline-{name}.log"));
    let mut processor =
        DroplineProcess::start(Role::Processor, &name, &env, &log).expect("start a processor");
    let addr = processor
        .logged_addr("metrics_addr", std::time::Duration::from_secs(30))
        .await
        .expect("the processor logs its ops address");
    let get = |path: &str, authorization: Option<&str>| {
        let mut request = app.http.get(format!("http://{addr}{path}"));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        read_answer(request)
    };
    assert_eq!(get("/metrics", None).await.status, 401, "no credential");
    let buyer = app.tokens.bearer("ana");
    assert_eq!(get("/metrics", Some(&buyer)).await.status, 401, "a buyer");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(get("/metrics", Some(&bearer)).await.status, 200);
    assert_eq!(get("/healthz", None).await.status, 200, "probes stay open");
    processor.kill();
}
