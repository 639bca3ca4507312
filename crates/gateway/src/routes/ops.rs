//! Liveness, readiness, metrics and the API description.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::AppState;

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; ours then stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when both NATS and Postgres answer within the probe's bound.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let bound = Duration::from_millis(state.config.ready_timeout_ms);
    let nats = matches!(
        tokio::time::timeout(bound, state.bus.ping()).await,
        Ok(Ok(()))
    );
    let postgres = matches!(
        tokio::time::timeout(bound, state.store.ping()).await,
        Ok(Ok(()))
    );
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let status = if nats && postgres {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "nats": word(nats), "postgres": word(postgres) })),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("dropline_gateway_waiting_requests").set(state.waiters.len() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}
