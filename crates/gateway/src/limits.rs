//! Admission control for the API: a bound on requests in flight (beyond it,
//! `429` + `Retry-After` at once instead of a queue that grows until memory
//! runs out) and a bound on how long any request may take. Must not queue
//! requests: past the bound a request is refused at once, never made to wait.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
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
