//! Liveness, readiness and the Prometheus exposition, for the HTTP listener
//! of every role: the gateway's router answers them on the API address, and
//! [`Probes::router`] answers them alone on a processor's ops listener, so
//! both say the same thing the same way.
//!
//! Must stay cheap and must not install a recorder: the process that runs a
//! role installs the one recorder, once for every role, and hands its
//! handle here to render.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dropline_bus::Bus;
use dropline_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::OperatorAccess;

/// The Prometheus text format's content type.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `200 {"status": "ok"}` while the process runs.
pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `200` when NATS and Postgres both answer within `bound`, else `503`; the
/// body says which one did not (`connecting` before the first connection
/// to NATS is made).
pub async fn readiness(store: &Store, bus: Option<&Bus>, bound: Duration) -> Response {
    let nats = match bus {
        Some(bus) => match tokio::time::timeout(bound, bus.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "unreachable",
        },
        None => "connecting",
    };
    let postgres = match tokio::time::timeout(bound, store.ping()).await {
        Ok(Ok(())) => "ok",
        _ => "unreachable",
    };
    let status = if nats == "ok" && postgres == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "nats": nats, "postgres": postgres }))).into_response()
}

/// The process's metrics in the Prometheus text format.
pub fn exposition(metrics: &PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)],
        without_released_series(metrics.render()),
    )
        .into_response()
}

/// Drops the samples whose value is NaN. The `metrics` facade cannot remove
/// a series, so a processor that lets a partition go sets that SKU's gauges
/// to NaN (`dropline_processor::meters`); the series must then be absent,
/// not NaN, or dashboards would show SKUs this instance no longer owns.
/// Nothing else records NaN: counters and histograms cannot hold it.
fn without_released_series(text: String) -> String {
    if !text.contains(" NaN\n") {
        return text;
    }
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('#') || !line.ends_with(" NaN") {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// What a listener that serves only the probes needs. Cheap to clone.
#[derive(Clone)]
pub struct Probes(Arc<ProbesInner>);

struct ProbesInner {
    store: Store,
    /// Set once the process has connected to NATS; until then the process
    /// is alive but not ready.
    bus: OnceLock<Bus>,
    metrics: PrometheusHandle,
    ready_timeout: Duration,
}

impl Probes {
    /// Probes of a process whose NATS connection is not made yet: call
    /// [`Probes::connected`] once it is.
    pub fn new(store: Store, metrics: PrometheusHandle, ready_timeout: Duration) -> Self {
        Self(Arc::new(ProbesInner {
            store,
            bus: OnceLock::new(),
            metrics,
            ready_timeout,
        }))
    }

    /// The process is connected to NATS: readiness now asks it.
    pub fn connected(&self, bus: Bus) {
        // A second connection would be a wiring mistake; the first stays.
        let _ = self.0.bus.set(bus);
    }

    /// `GET /healthz`, `/readyz` and `/metrics` (for `operators` only, as
    /// on a gateway), and `404` for anything else. Serve it with connect
    /// info: without an operator token, `/metrics` answers loopback only.
    pub fn router(&self, operators: &OperatorAccess) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route_layer(axum::middleware::from_fn_with_state(
                operators.clone(),
                crate::operator::guard_with,
            ))
            .route("/healthz", get(health))
            .route("/readyz", get(ready))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(self.clone())
    }
}

async fn ready(State(probes): State<Probes>) -> Response {
    let inner = &probes.0;
    readiness(&inner.store, inner.bus.get(), inner.ready_timeout).await
}

async fn metrics(State(probes): State<Probes>) -> Response {
    exposition(&probes.0.metrics)
}

#[cfg(test)]
mod tests {
    use super::without_released_series;

    #[test]
    fn released_series_are_left_out_of_the_exposition_and_the_rest_is_kept() {
        let text = "# HELP g a gauge\n# TYPE g gauge\ng{sku=\"a\"} 3\ng{sku=\"b\"} NaN\n\n\
                    # TYPE c counter\nc_total 1\n\n"
            .to_string();
        assert_eq!(
            without_released_series(text),
            "# HELP g a gauge\n# TYPE g gauge\ng{sku=\"a\"} 3\n\n# TYPE c counter\nc_total 1\n\n"
        );
        let untouched = "# TYPE c counter\nc_total 1\n\n".to_string();
        assert_eq!(without_released_series(untouched.clone()), untouched);
    }
}
