//! What every handler shares, built once per gateway. Must not hold
//! per-request state: it is cloned into every request.

use std::sync::Arc;
use std::time::Duration;

use dropline_bus::Bus;
use dropline_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::admission::Admissions;
use crate::limits::InFlight;
use crate::publisher::{PublishLimits, Publisher};
use crate::rate_limit::RateLimit;
use crate::refresh::Refresher;
use crate::sell_out::SellOuts;
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
    pub(crate) admissions: Arc<Admissions>,
    pub(crate) sell_outs: Arc<SellOuts>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) publisher: Arc<Publisher>,
    /// The per-user rate limit, when configured.
    pub(crate) user_rate: Option<Arc<RateLimit>>,
    pub(crate) address_rate: Option<Arc<RateLimit>>,
    /// Renders the process-wide recorder for `GET /metrics`.
    pub(crate) metrics: PrometheusHandle,
    /// The refresh and the drop events, stopped with the last handle.
    _background: Background,
}

/// Tasks that live as long as the gateway's state: aborted when it is
/// dropped, so that a gateway stopped inside a longer-lived process (tests,
/// `serve`) stops refreshing and reporting a heartbeat.
struct Background(Vec<tokio::task::AbortHandle>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl AppState {
    /// Builds the state and starts the gateway's one decision subscription,
    /// its drop events subscription and the admission refresh.
    /// `metrics` is the handle of the recorder the process installed before
    /// anything counted (early counts are lost otherwise).
    pub async fn new(
        store: Store,
        bus: Bus,
        config: GatewayConfig,
        metrics: PrometheusHandle,
    ) -> Result<Self, dropline_bus::BusError> {
        let waiters = Arc::new(Waiters::default());
        let sell_outs = Arc::new(SellOuts::default());
        let admissions = Arc::new(Admissions::new(
            store.clone(),
            Duration::from_millis(config.drop_cache_miss_ttl_ms),
        ));
        let publisher = Publisher::new(
            bus.clone(),
            store.clone(),
            admissions.clone(),
            sell_outs.clone(),
            PublishLimits::of(&config),
        );
        spawn_feed(
            bus.decision_feed().await?,
            waiters.clone(),
            publisher.clone(),
        );
        let nudge = Arc::new(tokio::sync::Notify::new());
        let events = tokio::spawn(crate::drop_events::run(
            bus.drop_events().await?,
            sell_outs.clone(),
            publisher.clone(),
            nudge.clone(),
        ));
        let refresher = Refresher {
            store: store.clone(),
            admissions: admissions.clone(),
            sell_outs: sell_outs.clone(),
            publisher: publisher.clone(),
            instance_id: config.instance_id.clone(),
            every: Duration::from_millis(config.admission_refresh_ms.max(1)),
            nudge,
        };
        let refresh = tokio::spawn(refresher.run());
        let mut background = Background(vec![events.abort_handle(), refresh.abort_handle()]);
        let user_rate = RateLimit::new(config.user_rate_per_s, config.user_burst).map(Arc::new);
        let address_rate =
            RateLimit::new(config.address_rate_per_s, config.address_burst).map(Arc::new);
        for rate in [&user_rate, &address_rate].into_iter().flatten() {
            let sweep = tokio::spawn(crate::rate_limit::sweep_forever(rate.clone()));
            background.0.push(sweep.abort_handle());
        }
        let in_flight = Arc::new(InFlight::new(config.requests_in_flight_max));
        Ok(Self(Arc::new(Shared {
            in_flight,
            publisher,
            user_rate,
            address_rate,
            store,
            bus,
            config: Arc::new(config),
            waiters,
            admissions,
            sell_outs,
            metrics,
            _background: background,
        })))
    }
}
