//! Everything a dropline process is configured with: environment first,
//! flags override, defaults point at the local services. Must not connect
//! to anything: settings are resolved before any part starts.

use clap::Args;

use crate::auth::AuthArgs;
use dropline_bus::{BusOptions, ConsumerSettings, NatsAccess, StreamSettings};
use dropline_gateway::{GatewayConfig, TrustedProxies};
use dropline_processor::ProcessorConfig;
use dropline_store::PoolOptions;

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", default_value = dropline_store::DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = dropline_bus::DEFAULT_NATS_URL, global = true)]
    pub nats_url: String,
    /// Where the HTTP API listens.
    #[arg(
        long,
        env = "DROPLINE_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,
    /// Where `dropline processor` serves /healthz, /readyz and /metrics
    /// (port 0: any free port, logged). `serve` and `gateway` answer them
    /// on the API address instead.
    #[arg(
        long,
        env = "DROPLINE_METRICS_ADDR",
        default_value = "127.0.0.1:0",
        global = true
    )]
    pub metrics_addr: String,
    /// Most intents decided in one batch (one transaction).
    #[arg(long, env = "DROPLINE_BATCH_LEN_MAX", default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub batch_len_max: u32,
    /// Partition lease length in milliseconds.
    #[arg(long, env = "DROPLINE_LEASE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000), global = true)]
    pub lease_ms: u64,
    /// JetStream ack_wait of the per-SKU consumers, in milliseconds.
    #[arg(long, env = "DROPLINE_ACK_WAIT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000), global = true)]
    pub ack_wait_ms: u64,
    /// Replicas of the intents stream (3 in a cluster).
    #[arg(long, env = "DROPLINE_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5), global = true)]
    pub stream_replicas: u64,
    /// Postgres connections per process.
    #[arg(long, env = "DROPLINE_DB_CONNECTIONS_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512), global = true)]
    pub db_connections_max: u32,
    /// Most API requests in flight per gateway; beyond it, 429 + Retry-After.
    #[arg(long, env = "DROPLINE_REQUESTS_IN_FLIGHT_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub requests_in_flight_max: u32,
    /// Messages of one SKU's purchases awaiting their PubAck at once per
    /// gateway; purchases arriving meanwhile travel together in the next one.
    #[arg(long, env = "DROPLINE_PUBLISHES_IN_FLIGHT_PER_SKU", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64), global = true)]
    pub publishes_in_flight_per_sku: u32,
    /// Messages of all SKUs' purchases awaiting their PubAck at once per
    /// gateway. A drop of many sizes has many lanes: while the broker is
    /// busy, each size's purchases gather into fewer, fuller messages.
    #[arg(long, env = "DROPLINE_PUBLISHES_IN_FLIGHT_MAX", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub publishes_in_flight_max: u32,
    /// The longest a gateway holds a purchase back, in milliseconds, while
    /// its undecided purchases of the SKU already cover every unit left;
    /// 0 never holds one.
    #[arg(long, env = "DROPLINE_HOLD_MAX_MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=10_000), global = true)]
    pub hold_max_ms: u64,
    /// Names this processor in partition leases, and its gateway (as
    /// `<id>-gateway`) where gateways report the admission they applied
    /// (default: random, unique).
    #[arg(long, env = "DROPLINE_INSTANCE_ID", global = true)]
    pub instance_id: Option<String>,
    /// How often a gateway reads every drop's admission again, in
    /// milliseconds (an admission change event makes it at once).
    #[arg(long, env = "DROPLINE_ADMISSION_REFRESH_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000), global = true)]
    pub admission_refresh_ms: u64,
    /// Default seconds a purchase waits for its decision (`Prefer: wait` overrides).
    #[arg(long, env = "DROPLINE_WAIT_DEFAULT_S", default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60), global = true)]
    pub wait_default_s: u64,
    /// Milliseconds a client has to send a request's head (and, on a
    /// kept-alive connection, the next one) before its connection is closed.
    #[arg(long, env = "DROPLINE_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=60_000), global = true)]
    pub header_read_timeout_ms: u64,
    /// Web origins whose browsers may call the API (CORS), comma-separated,
    /// e.g. `https://shop.example,https://m.shop.example`.
    #[arg(long, env = "DROPLINE_CORS_ORIGINS", value_delimiter = ',', value_parser = dropline_gateway::parse_origin, global = true)]
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// Purchases per second one buyer may send to one gateway (a token
    /// bucket; beyond it 429 + Retry-After); 0, the default, turns it off.
    #[arg(long, env = "DROPLINE_USER_RATE_PER_S", default_value_t = 0.0, value_parser = parse_rate, global = true)]
    pub user_rate_per_s: f64,
    /// The per-user rate limit's burst: purchases a buyer may send at once.
    #[arg(long, env = "DROPLINE_USER_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub user_burst: u32,
    /// API requests per second one client address may send to one gateway
    /// (a token bucket; beyond it 429 + Retry-After); 0, the default, turns
    /// it off.
    #[arg(long, env = "DROPLINE_ADDRESS_RATE_PER_S", default_value_t = 0.0, value_parser = parse_rate, global = true)]
    pub address_rate_per_s: f64,
    /// The per-address rate limit's burst.
    #[arg(long, env = "DROPLINE_ADDRESS_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub address_burst: u32,
    /// Proxies (addresses or CIDR blocks, comma-separated) whose
    /// X-Forwarded-For names the client for the per-address limit.
    #[arg(long, env = "DROPLINE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = dropline_gateway::parse_trusted_proxy, global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub nats_access: NatsAccess,
}

/// A rate: a finite number of requests per second, 0 to 100,000.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=100_000.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?}: a number of requests per second from 0 to 100000"
        )),
    }
}

/// Resolved settings of one process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub nats_url: String,
    pub http_addr: String,
    /// The processor's ops listener (`dropline processor` only).
    pub metrics_addr: String,
    pub pool: PoolOptions,
    pub bus: BusOptions,
    pub stream: StreamSettings,
    pub gateway: GatewayConfig,
    pub processor: ProcessorConfig,
}

impl Settings {
    /// Defaults for the given services; what tests start from.
    pub fn for_services(database_url: &str, nats_url: &str) -> Self {
        Self {
            database_url: database_url.into(),
            nats_url: nats_url.into(),
            http_addr: "127.0.0.1:0".into(),
            metrics_addr: "127.0.0.1:0".into(),
            pool: PoolOptions::default(),
            bus: BusOptions::default(),
            stream: StreamSettings::default(),
            gateway: GatewayConfig::default(),
            processor: ProcessorConfig::default(),
        }
    }
}

impl From<SettingsArgs> for Settings {
    fn from(args: SettingsArgs) -> Self {
        let mut settings = Settings::for_services(&args.database_url, &args.nats_url);
        settings.http_addr = args.http_addr;
        settings.metrics_addr = args.metrics_addr;
        settings.bus.access = args.nats_access;
        settings.pool.connections_max = args.db_connections_max;
        settings.stream.replicas = args.stream_replicas as usize;
        settings.gateway.wait_default_ms = args.wait_default_s * 1_000;
        settings.gateway.requests_in_flight_max = args.requests_in_flight_max as usize;
        settings.gateway.publishes_in_flight_per_sku = args.publishes_in_flight_per_sku as usize;
        settings.gateway.publishes_in_flight_max = args.publishes_in_flight_max as usize;
        settings.gateway.hold_max_ms = args.hold_max_ms;
        settings.gateway.admission_refresh_ms = args.admission_refresh_ms;
        settings.gateway.header_read_timeout_ms = args.header_read_timeout_ms;
        settings.gateway.cors_origins = args.cors_origins;
        settings.gateway.user_rate_per_s = args.user_rate_per_s;
        settings.gateway.user_burst = args.user_burst;
        settings.gateway.address_rate_per_s = args.address_rate_per_s;
        settings.gateway.address_burst = args.address_burst;
        settings.gateway.trusted_proxies = TrustedProxies::new(args.trusted_proxies);
        settings.processor.batch_len_max = args.batch_len_max as usize;
        settings.processor.lease_ms = args.lease_ms;
        if let Some(id) = args.instance_id {
            settings.gateway.instance_id = format!("{id}-gateway");
            settings.processor.instance_id = id;
        }
        settings.processor.consumer = ConsumerSettings {
            ack_wait_ms: args.ack_wait_ms,
            ..ConsumerSettings::default()
        };
        settings
    }
}
