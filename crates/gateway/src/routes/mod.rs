//! The routes of HTTP API v1, which of them admission control covers, and
//! the traffic meter over all of them. Must not hold handler logic: each
//! route's handler lives in its module.

mod answers;
#[cfg(test)]
mod contract;
mod drops;
mod gate;
mod ops;
mod ops_page;
mod prefer;
mod purchases;
mod recorded;
mod traffic;

use axum::routing::get;
use axum::Router;

use crate::problem::ApiError;
use crate::AppState;

pub(crate) use traffic::accepted;

/// The purchase route's template: routed here, and told apart by the
/// traffic meter, which times its decided answers.
const PURCHASES: &str = "/v1/drops/{sku}/purchases";

pub fn router(state: AppState) -> Router {
    // Bodies larger than the limit are refused by the `Bytes` extractor,
    // which the purchase handler turns into a 413 problem.
    let body_limit = axum::extract::DefaultBodyLimit::max(state.config.body_bytes_max);
    // Admission control covers the API, not the probes: an overloaded
    // gateway must still answer /healthz and /metrics.
    let api = Router::new()
        .route(PURCHASES, axum::routing::post(purchases::create))
        .route(
            "/v1/drops/{sku}/purchases/{idempotency_key}",
            get(purchases::read),
        )
        .route("/v1/drops/{sku}", get(drops::read))
        // Only when configured: a middleware costs every purchase its
        // boxed future even when it lets everything through.
        .route_layer(tower::util::option_layer(
            state.address_rate.is_some().then(|| {
                axum::middleware::from_fn_with_state(state.clone(), crate::limits::limit_address)
            }),
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::admit,
        ));
    // The operator surfaces take the operator credential (`operator.rs`).
    // The live page is behind the same cap on requests in flight as the
    // API (a page left open in many tabs must not crowd out buyers);
    // /metrics is not, like the probes.
    let operators = Router::new()
        .route("/ops/drops/{sku}", get(ops_page::page))
        .route("/ops/drops/{sku}/stats", get(ops_page::stats))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::admit,
        ))
        .route("/metrics", get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::operator::guard,
        ));
    Router::new()
        .merge(api)
        .merge(operators)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::not_found("no such resource; see /openapi.json") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(body_limit)
        // Around the whole router: a preflight (`OPTIONS`) is answered
        // before routing, which would refuse the method; outside admission
        // control, since it costs nothing to answer. No origins configured,
        // no layer: a purchase pays nothing for CORS it does not use.
        .layer(tower::util::option_layer(
            (!state.config.cors_origins.is_empty())
                .then(|| crate::cors::layer(&state.config.cors_origins)),
        ))
        // Outermost, so it counts every answer, the 429s of admission
        // control and the fallback's 404s included; `Router::layer` wraps
        // each route, so the matched template is known to it.
        .layer(axum::middleware::from_fn(traffic::meter))
        .with_state(state)
}

/// Percent-encodes a path segment (keys may hold `/`, `?`, `%`, ...).
pub(crate) fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_segment("a/b?c%d e"), "a%2Fb%3Fc%25d%20e");
    }
}
