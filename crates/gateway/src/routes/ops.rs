//! Liveness, readiness, metrics and the API description.
//!
//! Must stay cheap and outside admission control: an overloaded gateway
//! still answers these. Renders the process's metrics but must not install
//! a recorder: the process that runs the gateway does, once for every role.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::AppState;

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
        state.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}
