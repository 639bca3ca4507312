//! Gateway limits, each with its unit in its name, and how buyers are
//! known. Must not read the environment: the binary resolves settings and
//! hands them over.

use crate::auth::BuyerAuth;
use crate::operator::OperatorAccess;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a purchase waits for its decision without `Prefer: wait`.
    pub wait_default_ms: u64,
    /// The most a client may ask for with `Prefer: wait=N`.
    pub wait_max_ms: u64,
    /// While waiting for a decision, how often the store is asked too (a
    /// broadcast can be lost).
    pub store_recheck_ms: u64,
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// A request's head must arrive within this, and on a kept-alive
    /// connection the next one too, or the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How often every drop's admission is read again (one query for all
    /// of them); an `AdmissionChanged` event makes it at once.
    pub admission_refresh_ms: u64,
    /// A SKU the admission view does not know (perhaps created since the
    /// last refresh) is read from the store at most once this often.
    pub drop_cache_miss_ttl_ms: u64,
    /// Names this gateway in the store's `gateways` table, where it reports
    /// the newest admission change it applied.
    pub instance_id: String,
    /// Told to clients in `Retry-After` when the broker is unreachable.
    pub retry_after_s: u64,
    /// Most API requests in flight; beyond it, 429.
    pub requests_in_flight_max: usize,
    /// Added to `wait_max_ms` to bound a whole request.
    pub request_slack_ms: u64,
    /// Bound on the readiness probe's calls to NATS and Postgres.
    pub ready_timeout_ms: u64,
    /// Messages of one SKU's purchases awaiting their PubAck at once; the
    /// purchases arriving meanwhile travel together in the next message.
    pub publishes_in_flight_per_sku: usize,
    /// Messages of all SKUs' purchases awaiting their PubAck at once. The
    /// broker stores (and, synced, fsyncs) a stream's messages one by one,
    /// yet more in flight pays on many SKUs: with 32 rather than 8, more
    /// sizes' messages reach a processor together and commit in fewer,
    /// fuller shared transactions (a 200-SKU burst: ~150 instead of ~210,
    /// `docs/SCALING.md`). Far more (128) only splits purchases into more
    /// messages for the broker to store.
    pub publishes_in_flight_max: usize,
    /// The longest a purchase is held back while this gateway's undecided
    /// purchases of its SKU already cover every unit left (`room.rs`);
    /// 0 never holds one.
    pub hold_max_ms: u64,
    /// How buyers are known. Off in this default; `dropline serve` and
    /// `dropline gateway` refuse to start without a key unless told
    /// `--insecure-no-auth`.
    pub auth: BuyerAuth,
    /// Who may use `/ops/…` and `/metrics`.
    pub operators: OperatorAccess,
    /// Purchases per second one buyer may send to this gateway (a token
    /// bucket of `user_burst`); 0 turns the limit off, the default.
    pub user_rate_per_s: f64,
    pub user_burst: u32,
    /// Requests per second one client address may send to this gateway's
    /// API (a token bucket of `address_burst`); 0 turns the limit off, the
    /// default (many buyers can share an address behind a carrier's NAT).
    pub address_rate_per_s: f64,
    pub address_burst: u32,
    /// Proxies whose `X-Forwarded-For` names the client, for the
    /// per-address limit; none by default (the TCP peer is the client).
    pub trusted_proxies: crate::TrustedProxies,
    /// Web origins whose browsers may call the API (CORS); none by default.
    pub cors_origins: Vec<axum::http::HeaderValue>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            wait_default_ms: 3_000,
            wait_max_ms: 30_000,
            store_recheck_ms: 2_000,
            body_bytes_max: 4 * 1024,
            header_read_timeout_ms: 10_000,
            admission_refresh_ms: 1_000,
            drop_cache_miss_ttl_ms: 250,
            instance_id: format!("gateway-{}", uuid::Uuid::new_v4().simple()),
            retry_after_s: 1,
            ready_timeout_ms: 1_000,
            requests_in_flight_max: 10_000,
            request_slack_ms: 15_000,
            publishes_in_flight_per_sku: 2,
            publishes_in_flight_max: 32,
            hold_max_ms: 300,
            auth: BuyerAuth::Off,
            operators: OperatorAccess::LoopbackOnly,
            cors_origins: Vec::new(),
            user_rate_per_s: 0.0,
            user_burst: 10,
            address_rate_per_s: 0.0,
            address_burst: 20,
            trusted_proxies: crate::TrustedProxies::default(),
        }
    }
}
