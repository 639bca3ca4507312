//! What the gateway's traffic looks like from outside: every answer counted
//! by route template and status, and a purchase's two latencies: to its
//! acceptance (the PubAck) and to a decided answer.
//!
//! Labels come from the matched route's template (`/v1/drops/{sku}`), never
//! from the raw path: a label value per SKU or key would grow the series
//! without bound. Must not change a request or its answer.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

use super::PURCHASES;

/// The route label of a request no route matched (a 404 from the fallback).
const UNMATCHED: &str = "unmatched";

/// Handles looked up once: `metrics::counter!` looks its counter up in the
/// recorder's registry on every call (a few allocations for the labels and a
/// hash), which costs on a path taken tens of thousands of times a second.
/// Like the purchase path's counters, these are bound to the recorder
/// installed when first used, which is after the process installed its own
/// (a request comes only after `AppState::new`, which takes its handle).
static METERS: LazyLock<Meters> = LazyLock::new(Meters::new);

struct Meters {
    accept: Histogram,
    decision: Histogram,
    /// Route template → status → counter. Both are bounded: the router's
    /// templates (and `unmatched`), and the statuses the gateway answers.
    requests: RwLock<HashMap<String, HashMap<u16, Counter>>>,
}

impl Meters {
    fn new() -> Self {
        Self {
            accept: metrics::histogram!("dropline_gateway_accept_duration_seconds"),
            decision: metrics::histogram!("dropline_gateway_decision_duration_seconds"),
            requests: RwLock::new(HashMap::new()),
        }
    }

    fn count(&self, route: &str, status: StatusCode) {
        let code = status.as_u16();
        let known = self.requests.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = known.get(route).and_then(|by_status| by_status.get(&code)) {
            counter.increment(1);
            return;
        }
        drop(known);
        let mut known = self
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        known
            .entry(route.to_string())
            .or_default()
            .entry(code)
            .or_insert_with(|| {
                metrics::counter!(
                    "dropline_gateway_requests_total",
                    "route" => route.to_string(),
                    "status" => code.to_string()
                )
            })
            .increment(1);
    }
}

/// Counts the answer by route and status; for a purchase answered with its
/// decision, records how long the buyer waited for it.
pub(crate) async fn meter(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A clone of the template's `Arc<str>`: no allocation per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let is_purchase = request.method() == Method::POST && route == PURCHASES;
    let response = next.run(request).await;
    METERS.count(route, response.status());
    if is_purchase && is_decided(&response) {
        METERS.decision.record(started.elapsed().as_secs_f64());
    }
    response
}

/// Records how long a purchase took to be accepted: from the handler's start
/// (the request read whole) to its intent's PubAck. Called by the purchase
/// handler, the only one that sees the PubAck.
pub(crate) fn accepted(started: Instant) {
    METERS.accept.record(started.elapsed().as_secs_f64());
}

/// A purchase's answer carries its decision: `201` won, or `409` with the
/// purchase as JSON (sold out, limit reached, closed). Every refusal that is
/// not a decision (a drop not open, a key reused, ...) is problem+json.
fn is_decided(response: &Response) -> bool {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/json");
    match response.status() {
        StatusCode::CREATED => true,
        StatusCode::CONFLICT => json,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    fn answer(status: StatusCode, content_type: &'static str) -> Response {
        (status, [(header::CONTENT_TYPE, content_type)], "{}").into_response()
    }

    #[test]
    fn only_answers_carrying_a_decision_count_as_decided() {
        assert!(is_decided(&answer(StatusCode::CREATED, "application/json")));
        assert!(is_decided(&answer(
            StatusCode::CONFLICT,
            "application/json"
        )));
        assert!(!is_decided(&answer(
            StatusCode::CONFLICT,
            "application/problem+json"
        )));
        assert!(!is_decided(&answer(
            StatusCode::ACCEPTED,
            "application/json"
        )));
    }
}
