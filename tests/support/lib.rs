//! Test support: spawns the real thing for each test.
//!
//! Every test gets its own database (created, migrated), its own SKU (so its
//! own NATS subject and consumer), and a `dropline serve` (gateway and
//! processor) on port 0 against the real NATS and Postgres of the machine.
//! Nothing here assumes an empty server: leftovers of earlier runs are
//! ignored, and test databases older than an hour are pruned.

pub mod buyers;
mod dropctl;
mod lifecycle;
mod processes;

pub use dropctl::{dropctl, dropctl_at, send_directly, CtlRun};
pub use dropline_testkit::{
    Delay, DelayProxy, DroplineProcess, PrivateCluster, PrivateNats, PrivatePostgres, Signal,
};
pub use processes::{start_processor, ProcessorSpec};

use std::sync::Once;
use std::time::Duration;

use dropline::{Settings, Shutdown};
use dropline_core::{PerUserLimit, Sku, Stock};
use dropline_gateway::BuyerAuth;
use dropline_identity::{KeyConfig, Verifier};
use dropline_store::{NewDrop, PoolOptions, Store};
use dropline_testkit::BuyerTokens;
use serde_json::Value;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| dropline_bus::DEFAULT_NATS_URL.into())
}

/// The Postgres tests create their databases on (no database part).
pub fn postgres_base() -> String {
    std::env::var("DROPLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx=error"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Test databases are named `dropline_test_<unix time>_<random>`; those an
/// interrupted run left behind are dropped after this long.
const TEST_DATABASE_AGE_S_MAX: u64 = 3_600;

/// A fresh, migrated database.
pub async fn fresh_database() -> String {
    fresh_database_on(&postgres_base()).await
}

/// A fresh, migrated database on the Postgres at `base` (no database part).
pub async fn fresh_database_on(base: &str) -> String {
    dropline_testkit::databases::prune_databases(base, "dropline_test", TEST_DATABASE_AGE_S_MAX)
        .await;
    let name = dropline_testkit::databases::dated_name("dropline_test");
    dropline_testkit::create_database(base, &name)
        .await
        .expect("create and migrate the test database")
}

/// A workspace binary built next to the test executables (`just test`
/// builds `dropline` and `dropctl` before running the tests).
pub fn binary(name: &str) -> std::path::PathBuf {
    dropline_testkit::binary(name).expect("the binary is built")
}

/// A direct connection to a test database, for assertions on what is stored.
pub async fn db(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url)
        .await
        .expect("connect to the test database")
}

/// A running `dropline serve` with its own database and one open drop.
pub struct TestApp {
    /// What the app was started with (fresh database, NATS).
    pub settings: Settings,
    pub base_url: String,
    pub nats_url: String,
    pub database_url: String,
    pub sku: Sku,
    pub store: Store,
    pub http: reqwest::Client,
    /// Mints the buyers' tokens this app's gateway takes.
    pub tokens: BuyerTokens,
    /// Who sent each key through the helpers, so that a read of it goes
    /// as its buyer (a purchase is readable by its buyer only).
    buyers: std::sync::Mutex<std::collections::HashMap<String, String>>,
    stop: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Which parts the test app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `dropline serve`: gateway and processor.
    Serve,
    /// The gateway alone: intents are accepted and queue up undecided.
    GatewayOnly,
}

pub struct AppOptions {
    pub role: Role,
    /// Run against an existing app's database and drop (a restart) instead
    /// of a fresh database with a new drop.
    pub reuse: Option<(String, Sku)>,
    /// Postgres to create the database on (a [`PrivatePostgres`]).
    pub postgres_base: Option<String>,
    /// NATS to use instead of the machine's (a [`PrivateNats`]).
    pub nats_url: Option<String>,
    pub stock: i64,
    pub per_user_limit: i64,
    /// When the new drop opens (scheduled until then); `None`: open now.
    pub opens_at: Option<chrono::DateTime<chrono::Utc>>,
    pub tune: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            role: Role::Serve,
            reuse: None,
            postgres_base: None,
            nats_url: None,
            stock: 100,
            per_user_limit: 1,
            opens_at: None,
            tune: Box::new(|_| {}),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    init_tracing();
    let database_url = match &options.reuse {
        Some((url, _)) => url.clone(),
        None => match &options.postgres_base {
            Some(base) => fresh_database_on(base).await,
            None => fresh_database().await,
        },
    };
    let nats = options.nats_url.clone().unwrap_or_else(nats_url);
    dropline_testkit::nats::check_expected_version(&nats)
        .await
        .expect("the NATS this test leg is meant for");
    let mut settings = Settings::for_services(&database_url, &nats);
    settings.processor.discovery_interval_ms = 50;
    // Buyers authenticate, as in production: every helper mints the
    // buyer's token (a test may turn it off in `tune`).
    let tokens = BuyerTokens::random();
    settings.gateway.auth = buyer_auth(&tokens);
    (options.tune)(&mut settings);
    let store = Store::connect_lazy(&database_url, &PoolOptions::default()).expect("pool");
    let sku = match options.reuse {
        Some((_, sku)) => sku,
        None => {
            create_test_drop(
                &store,
                options.stock,
                options.per_user_limit,
                options.opens_at,
            )
            .await
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let (fire, shutdown) = Shutdown::new();
    let role = options.role;
    let app_settings = settings.clone();
    let task = tokio::spawn(async move {
        match role {
            Role::Serve => dropline::run_serve(&app_settings, listener, shutdown).await,
            Role::GatewayOnly => dropline::run_gateway(&app_settings, listener, shutdown).await,
        }
    });
    let app = TestApp {
        settings,
        base_url,
        nats_url: nats,
        database_url,
        sku,
        store,
        http: http_client(),
        tokens,
        buyers: std::sync::Mutex::default(),
        stop: std::sync::Mutex::new(Some(Box::new(fire))),
        task: Some(task),
    };
    app.wait_until_ready().await;
    app
}

/// A gateway taking the tokens `tokens` mints.
pub fn buyer_auth(tokens: &BuyerTokens) -> BuyerAuth {
    let config = KeyConfig {
        secret: Some(tokens.secret().to_string()),
        ..KeyConfig::default()
    };
    BuyerAuth::Tokens(std::sync::Arc::new(
        Verifier::from_config(&config).expect("a valid test secret"),
    ))
}

/// Reads a key whose buyer the helpers do not know (one never sent).
const UNKNOWN_READER: &str = "reader-of-unknown-keys";

/// A drop with a SKU of its own.
async fn create_test_drop(
    store: &Store,
    stock: i64,
    per_user_limit: i64,
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Sku {
    let sku = Sku::parse(unique("t")).expect("sku");
    store
        .create_drop(&NewDrop {
            sku: sku.clone(),
            name: "test drop".into(),
            stock: Stock::parse(stock).expect("stock"),
            per_user_limit: PerUserLimit::parse(per_user_limit).expect("limit"),
            opens_at,
        })
        .await
        .expect("create drop");
    sku
}

/// `count` more open drops of 10 units, named after the app's SKU, created
/// together.
pub async fn create_sizes(app: &TestApp, count: usize) {
    let new_drops: Vec<NewDrop> = (0..count)
        .map(|i| NewDrop {
            sku: Sku::parse(format!("{}-size-{i}", app.sku)).expect("valid sku"),
            name: "a size".into(),
            stock: Stock::parse(10).expect("stock"),
            per_user_limit: PerUserLimit::parse(1).expect("limit"),
            opens_at: None,
        })
        .collect();
    futures::future::try_join_all(new_drops.iter().map(|new| app.store.create_drop(new)))
        .await
        .expect("create the drops");
}

/// A client that keeps enough idle connections for a test's burst.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A processor running in the test's process.
pub struct InProcessProcessor {
    stop: Box<dyn FnOnce() + Send>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessProcessor {
    /// Stops it and asserts it ran without error.
    pub async fn stop(self) {
        (self.stop)();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("processor stops within 30 s")
            .expect("processor task")
            .expect("processor ran cleanly");
    }
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self
                .http
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dropline serve did not become ready");
    }

    pub fn purchases_url(&self) -> String {
        format!("{}/v1/drops/{}/purchases", self.base_url, self.sku)
    }

    /// POSTs a purchase the way a well-behaved client does.
    pub async fn buy(&self, key: &str, user: &str, wait_s: u64) -> Answer {
        self.buy_body(key, serde_json::json!({ "user_id": user }), wait_s)
            .await
    }

    /// POSTs a purchase with any body (e.g. a quantity) and `Prefer: wait=N`,
    /// with the token of the body's `user_id` (or of a buyer named
    /// `anonymous` when the body names none).
    pub async fn buy_body(&self, key: &str, body: Value, wait_s: u64) -> Answer {
        let user = body["user_id"].as_str().unwrap_or("anonymous").to_string();
        self.remember_buyer(key, &user);
        let request = self
            .http
            .post(self.purchases_url())
            .header("Idempotency-Key", key)
            .header("Prefer", format!("wait={wait_s}"))
            .header("Authorization", self.tokens.bearer(&user))
            .json(&body);
        read_answer(request).await
    }

    /// Notes who sent `key`, for reads of it.
    pub fn remember_buyer(&self, key: &str, user: &str) {
        let mut buyers = self.buyers.lock().unwrap_or_else(|p| p.into_inner());
        buyers.insert(key.to_string(), user.to_string());
    }

    /// `Bearer <token>` of whoever sent `key` through the helpers.
    pub fn bearer_of_key(&self, key: &str) -> String {
        let buyers = self.buyers.lock().unwrap_or_else(|p| p.into_inner());
        let user = buyers.get(key).map_or(UNKNOWN_READER, String::as_str);
        self.tokens.bearer(user)
    }

    /// POSTs with `Prefer: wait=0` and asserts the intent was accepted but
    /// not decided yet (no processor is running).
    pub async fn queue(&self, key: &str, user: &str) -> Answer {
        let answer = self
            .buy_body(key, serde_json::json!({ "user_id": user }), 0)
            .await;
        assert_eq!(answer.status, 202, "{key} queued: {answer:?}");
        answer
    }

    /// GETs a purchase, waiting up to `wait_s` for its decision.
    pub async fn read_purchase(&self, key: &str, wait_s: u64) -> Answer {
        let url = format!("{}/v1/drops/{}/purchases/{key}", self.base_url, self.sku);
        read_answer(
            self.http
                .get(url)
                .header("Prefer", format!("wait={wait_s}"))
                .header("Authorization", self.bearer_of_key(key)),
        )
        .await
    }

    /// The outcome of each key, read with a wait, asserting each is decided.
    pub async fn outcomes_of(&self, keys: &[String]) -> Vec<String> {
        let mut outcomes = Vec::with_capacity(keys.len());
        for key in keys {
            let read = self.read_purchase(key, 20).await;
            assert_eq!(read.status, 200, "{key} decided: {read:?}");
            outcomes.push(
                read.body["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        outcomes
    }

    /// (decisions, wins) stored for this drop.
    pub async fn stored_counts(&self) -> (i64, i64) {
        let pool = db(&self.database_url).await;
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'won') FROM purchases WHERE sku = $1",
        )
        .bind(self.sku.as_str())
        .fetch_one(&pool)
        .await
        .expect("count purchases")
    }

    /// Starts a processor in this process, against this app's services.
    pub fn start_processor(&self) -> InProcessProcessor {
        self.start_processor_at(&self.nats_url)
    }

    /// Starts a processor in this process on `nats_url` (this app's NATS
    /// as another user) and this app's Postgres.
    pub fn start_processor_at(&self, nats_url: &str) -> InProcessProcessor {
        let (stop, shutdown) = Shutdown::new();
        let mut settings = self.settings.clone();
        settings.nats_url = nats_url.to_string();
        InProcessProcessor {
            stop: Box::new(stop),
            task: tokio::spawn(async move { dropline::run_processor(&settings, shutdown).await }),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        read_answer(self.http.get(format!("{}{path}", self.base_url))).await
    }

    /// The drop as the API shows it.
    pub async fn drop_view(&self) -> Value {
        let answer = self.get(&format!("/v1/drops/{}", self.sku)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body
    }

    /// Intents of this test's SKU stored in the stream (accepted ones),
    /// counted one by one: a message may carry several.
    pub async fn intents_in_stream(&self) -> u64 {
        let bus = dropline_bus::Bus::connect(&self.nats_url, &Default::default(), true)
            .await
            .expect("connect to NATS");
        let intents = bus
            .read_all_intents(&self.sku)
            .await
            .expect("read the SKU's intents");
        intents.len() as u64
    }

    /// Messages in this test's SKU's line, every lane (a message carries
    /// one or more intents).
    pub async fn messages_in_stream(&self) -> u64 {
        let client = async_nats::connect(&self.nats_url).await.expect("nats");
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(dropline_core::names::INTENTS_STREAM)
            .await
            .expect("stream");
        let info = stream
            .info_with_subjects(dropline_core::names::line_lanes_filter(&self.sku))
            .await
            .expect("subjects");
        use futures::TryStreamExt;
        let subjects: std::collections::HashMap<String, usize> =
            info.try_collect().await.expect("subject counts");
        subjects.values().sum::<usize>() as u64
    }

    /// Audits the drop (what `dropctl verify` runs) and fails the test on
    /// any violation; nothing may be queued undecided.
    pub async fn assert_invariants(&self) {
        let options = dropline_bus::BusOptions::default();
        let bus = dropline_bus::Bus::connect(&self.nats_url, &options, true)
            .await
            .expect("connect to NATS for the audit");
        // A pool of its own: the app's may hold connections a fault cut.
        let store = Store::connect_lazy(&self.database_url, &PoolOptions::default()).expect("pool");
        let report = dropline_audit::audit(&store, &bus, &self.sku)
            .await
            .expect("audit runs");
        let violations: Vec<_> = report.violations().collect();
        assert!(violations.is_empty(), "promises violated: {violations:#?}");
        assert_eq!(report.queued, 0, "intents left undecided");
    }

    /// Stops the app and waits for it to finish.
    pub async fn stop(mut self) {
        self.fire_stop();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), task).await;
            let finished = result.expect("app stops within 30 s").expect("app task");
            finished.expect("app ran without error");
        }
    }

    /// Stops the app and starts a new one (default options) on the same
    /// database and SKU: a restart, the new processor claiming the SKU.
    pub async fn restarted(self) -> TestApp {
        let reuse = (self.database_url.clone(), self.sku.clone());
        self.stop().await;
        spawn_app_with(AppOptions {
            reuse: Some(reuse),
            ..AppOptions::default()
        })
        .await
    }
}

impl TestApp {
    fn fire_stop(&self) {
        let fire = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fire) = fire {
            fire();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.fire_stop();
    }
}

pub async fn read_answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

/// Waits until `check` holds, failing the test after 30 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    const PATIENCE: Duration = Duration::from_secs(30);
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
