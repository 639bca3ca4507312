//! Liveness, readiness, metrics and the API description, on the API
//! address.
//!
//! Must stay cheap and outside admission control: an overloaded gateway
//! still answers these. The probes themselves are `crate::probes`, shared
//! with a processor's ops listener; this module only feeds them the
//! gateway's state.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::probes;
use crate::AppState;

pub async fn healthz() -> Response {
    probes::health().await
}

/// Ready when both NATS and Postgres answer within the probe's bound.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let bound = Duration::from_millis(state.config.ready_timeout_ms);
    probes::readiness(&state.store, Some(&state.bus), bound).await
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // Read at the scrape rather than kept up to date on every request: the
    // purchase path stays free of it.
    metrics::gauge!("dropline_gateway_waiting_requests").set(state.waiters.len() as f64);
    probes::exposition(&state.metrics)
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}
