//! What every handler shares, built once per gateway. Must not hold
//! per-request state: it is cloned into every request.

use std::sync::Arc;
use std::time::Duration;

use dropline_bus::Bus;
use dropline_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::drop_cache::DropCache;
use crate::limits::InFlight;
use crate::publisher::Publisher;
use crate::waiters::{spawn_feed, Waiters};
use crate::GatewayConfig;

/// What every request handler shares. Cloned per request (and per layer),
/// so it is one `Arc`: cloning the NATS client and the pool field by field
/// showed up in profiles of the purchase path.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) drops: Arc<DropCache>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) publisher: Arc<Publisher>,
    /// Renders the process-wide recorder for `GET /metrics`.
    pub(crate) metrics: PrometheusHandle,
}

impl AppState {
    /// Builds the state and starts the gateway's one decision subscription.
    /// `metrics` is the handle of the recorder the process installed before
    /// anything counted (early counts are lost otherwise).
    pub async fn new(
        store: Store,
        bus: Bus,
        config: GatewayConfig,
        metrics: PrometheusHandle,
    ) -> Result<Self, dropline_bus::BusError> {
        let waiters = Arc::new(Waiters::default());
        spawn_feed(bus.decision_feed().await?, waiters.clone());
        let drops = Arc::new(DropCache::new(
            store.clone(),
            Duration::from_millis(config.drop_cache_ttl_ms),
            Duration::from_millis(config.drop_cache_miss_ttl_ms),
        ));
        let in_flight = Arc::new(InFlight::new(config.requests_in_flight_max));
        let publisher = Publisher::new(bus.clone(), config.publishes_in_flight_per_sku);
        Ok(Self(Arc::new(Shared {
            in_flight,
            publisher,
            store,
            bus,
            config: Arc::new(config),
            waiters,
            drops,
            metrics,
        })))
    }
}
