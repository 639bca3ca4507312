//! `POST /v1/drops/{sku}/purchases` and `GET .../purchases/{key}`.
//!
//! A purchase passes the gate (`gate.rs`: drop open, not finally sold out)
//! or is answered there; past it, it is accepted the moment JetStream acks
//! its intent, and the answer is the decision if it comes back within the
//! wait, else `202` with a `Location` to read it from later. Must not
//! decide, nor answer a purchase as accepted before its PubAck.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dropline_bus::PublishError;
use dropline_core::wire::IntentPayload;
use dropline_core::{IdempotencyKey, Quantity, Sku, UserId};
use serde::Deserialize;

use super::answers::{
    answer_decision, answer_pending, apply_preference, count_accepted, decision_body,
};
use super::gate::before_line;
use super::prefer::{wait_preference, Wait};
use super::recorded::{recorded, wait_for_decision};
use crate::auth::purchaser;
use crate::problem::ApiError;
use crate::publisher::Sent;
use crate::waiters::Ticket;
use crate::AppState;

/// The request body as sent; parsed into domain types right after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    /// Optional with buyer authentication (the token names the buyer).
    user_id: Option<String>,
    #[serde(default = "one", deserialize_with = "whole_number")]
    quantity: i64,
}

fn one() -> i64 {
    1
}

/// The body, if it is the contract's JSON object. serde reads a struct from
/// a JSON array as well, field by field (`[null]` was taken as a purchase
/// of one, found by `just fuzz-api`): anything but an object is refused.
fn purchase_body(body: &[u8]) -> Result<PurchaseBody, String> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("body: a purchase is a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("body: {e}"))
}

/// A JSON integer as JSON Schema means it (the OpenAPI document's `integer`):
/// `2` and `2.0` alike; `2.5` is refused.
fn whole_number<'de, D: serde::Deserializer<'de>>(value: D) -> Result<i64, D::Error> {
    /// Beyond 2^53 a JSON number is no longer a whole number for certain.
    const EXACT_MAX: f64 = 9_007_199_254_740_992.0;
    let number = serde_json::Number::deserialize(value)?;
    number
        .as_i64()
        .or_else(|| {
            let float = number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT_MAX);
            float.map(|f| f as i64)
        })
        .ok_or_else(|| {
            serde::de::Error::custom(format!("quantity must be a whole number, not {number}"))
        })
}

/// A purchase request past the edge: nothing below re-checks it.
struct PurchaseRequest {
    sku: Sku,
    intent: IntentPayload,
}

pub async fn create(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    // Who asks comes first: an unauthenticated client learns nothing more.
    let buyer = state.config.auth.buyer(&headers)?;
    let request = parse_purchase(&state, path, &headers, body, buyer)?;
    let PurchaseRequest { sku, intent } = request;
    if let Some(rate) = &state.user_rate {
        rate.take(intent.user_id.as_str(), started)
            .map_err(ApiError::user_rate_limited)?;
    }
    let wait = wait_preference(
        &headers,
        std::time::Duration::from_millis(state.config.wait_default_ms),
        std::time::Duration::from_millis(state.config.wait_max_ms),
    );
    // Register before publishing, so a fast decision cannot slip past; with
    // no wait asked for (`respond-async`) the answer is 202 at the PubAck,
    // and nothing waits.
    let mut ticket = None;
    let (intent, seq) = match to_line(&state, &sku, intent, &wait, &mut ticket).await? {
        ToLine::Placed(intent, seq) => (intent, seq),
        ToLine::Answered(response) => return Ok(response),
    };
    count_accepted();
    super::accepted(started);

    let decision = match ticket.as_mut() {
        Some(ticket) => wait_for_decision(&state, ticket, &sku, &intent.key, wait.duration).await,
        // A fresh intent cannot have been decided yet: no store read either.
        None => None,
    };
    match decision {
        Some(decision) => answer_decision(&sku, &intent, decision, &wait),
        None => Ok(answer_pending(&sku, &intent, seq, &wait)),
    }
}

enum ToLine {
    Placed(IntentPayload, u64),
    /// Answered before the line (the gate), as it is or once its lane
    /// handed it back.
    Answered(Response),
}

/// Takes the purchase through the gate to the line: accepted with its place
/// in line, or answered by the gate (at once, or after its lane held it
/// until the drop was finally sold out).
async fn to_line(
    state: &AppState,
    sku: &Sku,
    mut intent: IntentPayload,
    wait: &Wait,
    ticket: &mut Option<Ticket>,
) -> Result<ToLine, ApiError> {
    loop {
        if let Some(answered) = before_line(state, sku, &intent, wait).await? {
            return Ok(ToLine::Answered(answered));
        }
        if ticket.is_none() && !wait.duration.is_zero() {
            *ticket = Some(state.waiters.register(sku, &intent.key));
        }
        // The same key sent again is published again: the processor answers
        // it with the key's recorded decision, which reaches the ticket.
        match state.publisher.publish(sku, intent).await {
            Ok(Sent::Placed(intent, seq)) => return Ok(ToLine::Placed(intent, seq)),
            // A repeat of a key the line decided meanwhile gets that
            // recorded answer; a new key, the gate's `sold_out`.
            Ok(Sent::SoldOutMeanwhile(back, Some(decision))) => {
                return answer_decision(sku, &back, decision, wait).map(ToLine::Answered);
            }
            Ok(Sent::SoldOutMeanwhile(back, None)) => intent = back,
            // Logged once per message by the publisher, not once per purchase.
            Err(PublishError::Unavailable(_)) => {
                return Err(ApiError::broker_unavailable(state.config.retry_after_s));
            }
        }
    }
}

pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let buyer = state.config.auth.buyer(&headers)?;
    let Path((raw_sku, raw_key)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sku = Sku::parse(raw_sku)?;
    let key = IdempotencyKey::parse(raw_key)?;
    let wait = wait_preference(
        &headers,
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(state.config.wait_max_ms),
    );
    let mut ticket = state.waiters.register(&sku, &key);
    let mut decision = recorded(&state, &sku, &key).await?;
    if decision.is_none() && !wait.duration.is_zero() {
        decision = wait_for_decision(&state, &mut ticket, &sku, &key, wait.duration).await;
    }
    // Another buyer's purchase is not there for this one, as if unknown.
    let decision = decision.filter(|d| buyer.as_ref().is_none_or(|b| *b == d.user_id));
    let Some(decision) = decision else {
        return Err(ApiError::not_found(format!(
            "no decision for key {key} of {sku} (not decided yet, or never accepted)"
        )));
    };
    let mut response = (StatusCode::OK, Json(decision_body(&sku, &decision))).into_response();
    apply_preference(&mut response, &wait);
    Ok(response)
}

fn parse_purchase(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    buyer: Option<UserId>,
) -> Result<PurchaseRequest, ApiError> {
    let Path(raw_sku) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sku = Sku::parse(raw_sku)?;
    let key = match headers.get("idempotency-key") {
        None => {
            return Err(ApiError::bad_request(
                "the Idempotency-Key header is required",
            ))
        }
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key: visible ASCII only"))?;
            IdempotencyKey::from_header(text)?
        }
    };
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(state.config.body_bytes_max)
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    if !is_json(headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let raw = purchase_body(&body).map_err(ApiError::bad_request)?;
    let user_id = purchaser(buyer, raw.user_id)?;
    let quantity = Quantity::parse(raw.quantity)?;
    Ok(PurchaseRequest {
        sku,
        intent: IntentPayload {
            key,
            user_id,
            quantity,
        },
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::purchase_body;

    fn quantity(body: &str) -> Result<i64, String> {
        purchase_body(body.as_bytes()).map(|b| b.quantity)
    }

    #[test]
    fn only_a_json_object_is_a_purchase() {
        for body in ["[null]", "[]", "[1, \"u\"]", "null", "1", "\"{}\"", ""] {
            assert_eq!(
                quantity(body),
                Err("body: a purchase is a JSON object".into()),
                "{body}"
            );
        }
        assert_eq!(quantity(" \n{}"), Ok(1));
    }

    #[test]
    fn a_quantity_is_a_whole_number_however_it_is_written() {
        assert_eq!(quantity(r#"{"quantity": 2}"#), Ok(2));
        assert_eq!(quantity(r#"{"quantity": 2.0}"#), Ok(2));
        assert_eq!(quantity(r#"{"quantity": -3.0}"#), Ok(-3));
        assert_eq!(quantity("{}"), Ok(1));
        assert!(quantity(r#"{"quantity": 2.5}"#).is_err());
        assert!(quantity(r#"{"quantity": 1e300}"#).is_err());
        assert!(quantity(r#"{"quantity": "2"}"#).is_err());
    }
}
