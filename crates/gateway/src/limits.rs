//! Admission control for the API: a bound on requests in flight (beyond it,
//! `429` + `Retry-After` at once instead of a queue that grows until memory
//! runs out), a bound on how long any request may take, and the optional
//! rate limit per client address. Must not queue
//! requests: past the bound a request is refused at once, never made to wait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::problem::ApiError;
use crate::AppState;

/// Permits for requests in flight.
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }
}

pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.0.clone().try_acquire_owned() else {
        return ApiError::too_many_requests(state.config.retry_after_s).into_response();
    };
    // Every await inside is bounded already (waits, publish and statement
    // timeouts); this is the backstop that guarantees no request hangs.
    let bound = Duration::from_millis(state.config.wait_max_ms + state.config.request_slack_ms);
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(
                bound_ms = bound.as_millis() as u64,
                "request exceeded its time bound"
            );
            ApiError::internal().into_response()
        }
    }
}

/// The per-address rate limit (when configured): a client address beyond
/// its rate gets `429` + `Retry-After`, and its request goes no further.
pub async fn limit_address(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // The layer is there only when the limit is configured (`routes`).
    let Some(rate) = &state.address_rate else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let client = state
            .config
            .trusted_proxies
            .client_of(peer, request.headers());
        if let Err(retry_after_s) = rate.take(&client.to_string(), std::time::Instant::now()) {
            return ApiError::address_rate_limited(retry_after_s).into_response();
        }
    }
    next.run(request).await
}
