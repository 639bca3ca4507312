//! The HTTP contract of the real gateway, as far as the load generator uses
//! it, in front of a reference design: `POST /v1/drops/{sku}/purchases`,
//! `GET /v1/drops/{sku}`, `GET /v1/drops/{sku}/purchases/{key}`. Errors are
//! problem+json; a design's failure is a `503` with `Retry-After`. Buyers
//! authenticate as at the gateway (a bearer token verified by
//! `dropline_identity`, its `sub` the buyer), so every design pays the same
//! verification per request.

use std::sync::Arc;

use axum::extract::{Path, State as Extract};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{db, purchase, redis_lua, Answer, Design, State};

/// Longest idempotency key or user id accepted, in bytes (as the gateway).
const KEY_BYTES_MAX: usize = 255;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/drops/{sku}", get(drop_view))
        .route("/v1/drops/{sku}/purchases", post(buy))
        .route("/v1/drops/{sku}/purchases/{key}", get(read_purchase))
        .with_state(state)
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or_default(),
            "status": status.as_u16(),
            "detail": detail,
        })
        .to_string(),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

fn unavailable(err: &anyhow::Error) -> Response {
    eprintln!("reference design: {err:#}");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "try again with the same key",
    )
}

async fn buy(
    Extract(state): Extract<Arc<State>>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !state.skus.contains(&sku) {
        return problem(StatusCode::NOT_FOUND, "unknown SKU");
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && k.len() <= KEY_BYTES_MAX);
    let Some(key) = key else {
        return problem(StatusCode::BAD_REQUEST, "Idempotency-Key is missing");
    };
    let user = match buyer(&state, &headers) {
        Ok(user) => user,
        Err(why) => return problem(StatusCode::UNAUTHORIZED, &why),
    };
    let claimed = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["user_id"].as_str().map(str::to_owned));
    if claimed.is_some_and(|claimed| claimed != user) {
        return problem(StatusCode::FORBIDDEN, "user_id is not the token's buyer");
    }
    match purchase(&state, &sku, &key, &user).await {
        Ok(Answer::Won { order_id, seq }) => (
            StatusCode::CREATED,
            Json(json!({
                "outcome": "won", "order_id": order_id, "seq": seq,
                "sku": sku, "idempotency_key": key, "user_id": user, "quantity": 1,
            })),
        )
            .into_response(),
        Ok(Answer::SoldOut) => (
            StatusCode::CONFLICT,
            Json(json!({
                "outcome": "sold_out", "sku": sku, "idempotency_key": key,
                "user_id": user, "quantity": 1,
            })),
        )
            .into_response(),
        Ok(Answer::Busy(why)) => problem(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(err) => unavailable(&err),
    }
}

async fn drop_view(Extract(state): Extract<Arc<State>>, Path(sku): Path<String>) -> Response {
    if !state.skus.contains(&sku) {
        return problem(StatusCode::NOT_FOUND, "unknown SKU");
    }
    let view = match db::drop_view(&state.pool, &sku).await {
        Ok(Some(view)) => view,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "unknown SKU"),
        Err(err) => return unavailable(&err),
    };
    let (initial, mut remaining, won) = view;
    if state.design == Design::RedisLua {
        // This design keeps its stock in Redis; Postgres only has orders.
        remaining = match redis_lua::remaining(&state, &sku).await {
            Ok(remaining) => remaining,
            Err(err) => return unavailable(&err),
        };
    }
    Json(json!({
        "sku": sku, "initial_stock": initial, "restocked": 0,
        "remaining": remaining, "won": won,
    }))
    .into_response()
}

async fn read_purchase(
    Extract(state): Extract<Arc<State>>,
    Path((sku, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = buyer(&state, &headers) {
        return problem(StatusCode::UNAUTHORIZED, &why);
    }
    if !state.skus.contains(&sku) {
        return problem(StatusCode::NOT_FOUND, "unknown SKU");
    }
    match db::order_for_key(&state.pool, &sku, &key).await {
        Ok(Some((order_id, seq))) => Json(json!({
            "outcome": "won", "order_id": order_id, "seq": seq,
            "sku": sku, "idempotency_key": key, "quantity": 1,
        }))
        .into_response(),
        // Sold-out answers are not recorded by these designs.
        Ok(None) => problem(StatusCode::NOT_FOUND, "no order for this key"),
        Err(err) => unavailable(&err),
    }
}

/// The buyer the request's bearer token names, or why there is none (a
/// `401`).
fn buyer(state: &State, headers: &HeaderMap) -> Result<String, String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(dropline_identity::bearer_token)
        .ok_or("send Authorization: Bearer <JWT>")?;
    let buyer = state
        .verifier
        .verify(token)
        .map_err(|why| why.to_string())?;
    if buyer.subject.len() > KEY_BYTES_MAX {
        return Err("the token's sub is too long".into());
    }
    Ok(buyer.subject)
}
