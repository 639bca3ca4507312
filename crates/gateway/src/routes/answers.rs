//! How a purchase's answer looks on the wire: a decision (`201`/`409`, or
//! `422` for a key reused with another body), `202` pending, and the
//! sold-out fast path's `409` without `seq`; and the counters of answers.
//!
//! Must not decide what to answer nor read anything: the handlers and the
//! gate choose, this module only renders and counts.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dropline_core::wire::IntentPayload;
use dropline_core::{Decision, IdempotencyKey, Outcome, Quantity, Sku, UserId};
use metrics::Counter;
use serde::Serialize;
use uuid::Uuid;

use super::encode_segment;
use super::prefer::Wait;
use crate::problem::ApiError;

/// The purchase path's counters, looked up once: `metrics::counter!` looks
/// its counter up in the recorder's registry on every call, which cost about
/// 4% of the gateway's CPU in a burst. A counter is bound to the recorder
/// installed when it is first looked up, so this must be first used after
/// the process installed its recorder: it is, since a request comes only
/// after `AppState::new`, which takes the installed recorder's handle.
static METERS: LazyLock<Meters> = LazyLock::new(Meters::new);

struct Meters {
    accepted: Counter,
    won: Counter,
    sold_out: Counter,
    limit_reached: Counter,
    closed: Counter,
    pending: Counter,
    /// New keys of a finally sold-out drop answered without the line.
    fast_path: Counter,
}

impl Meters {
    fn new() -> Self {
        let answers = |outcome: &'static str| metrics::counter!("dropline_gateway_answers_total", "outcome" => outcome);
        Self {
            accepted: metrics::counter!("dropline_gateway_accepted_total"),
            won: answers(Outcome::Won.as_str()),
            sold_out: answers(Outcome::SoldOut.as_str()),
            limit_reached: answers(Outcome::LimitReached.as_str()),
            closed: answers(Outcome::Closed.as_str()),
            pending: answers("pending"),
            fast_path: metrics::counter!("dropline_gateway_fast_path_total"),
        }
    }

    fn answered(&self, outcome: Outcome) -> &Counter {
        match outcome {
            Outcome::Won => &self.won,
            Outcome::SoldOut => &self.sold_out,
            Outcome::LimitReached => &self.limit_reached,
            Outcome::Closed => &self.closed,
        }
    }
}

/// Counts a purchase accepted (its PubAck is back).
pub fn count_accepted() {
    METERS.accepted.increment(1);
}

fn key_reused(sku: &Sku, key: &IdempotencyKey) -> ApiError {
    ApiError::key_reused(format!(
        "Idempotency-Key {key} was already used on {sku} with another user_id or quantity"
    ))
}

/// `201` for a win, `409` otherwise; `422` if the key's recorded decision is
/// for a different request.
pub fn answer_decision(
    sku: &Sku,
    intent: &IntentPayload,
    decision: Decision,
    wait: &Wait,
) -> Result<Response, ApiError> {
    if decision.user_id != intent.user_id || decision.quantity != intent.quantity {
        return Err(key_reused(sku, &intent.key));
    }
    let status = match decision.outcome {
        Outcome::Won => StatusCode::CREATED,
        Outcome::SoldOut | Outcome::LimitReached | Outcome::Closed => StatusCode::CONFLICT,
    };
    METERS.answered(decision.outcome).increment(1);
    let mut response = (status, Json(decision_body(sku, &decision))).into_response();
    apply_preference(&mut response, wait);
    Ok(response)
}

/// `409 sold_out` for a new key of a finally sold-out drop: what the line
/// would decide, said without standing in it, so without a `seq`.
pub fn answer_sold_out_at_once(sku: &Sku, intent: &IntentPayload) -> Response {
    METERS.sold_out.increment(1);
    METERS.fast_path.increment(1);
    let body = PurchaseView {
        idempotency_key: &intent.key,
        order_id: None,
        outcome: Outcome::SoldOut.as_str(),
        quantity: intent.quantity,
        seq: None,
        sku,
        user_id: &intent.user_id,
    };
    (StatusCode::CONFLICT, Json(body)).into_response()
}

pub fn answer_pending(sku: &Sku, intent: &IntentPayload, seq: u64, wait: &Wait) -> Response {
    METERS.pending.increment(1);
    let location = format!(
        "/v1/drops/{}/purchases/{}",
        sku,
        encode_segment(intent.key.as_str())
    );
    let body = PurchaseView {
        idempotency_key: &intent.key,
        order_id: None,
        outcome: "pending",
        quantity: intent.quantity,
        seq: Some(seq),
        sku,
        user_id: &intent.user_id,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    apply_preference(&mut response, wait);
    response
}

/// A purchase as the API shows it. Typed rather than a `json!` value: it
/// is written once per purchase on the hot path, and a value map costs an
/// allocation per field. Fields in alphabetical order, as the map wrote them.
#[derive(Serialize)]
pub struct PurchaseView<'a> {
    idempotency_key: &'a IdempotencyKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<Uuid>,
    /// An [`Outcome`], or `pending`.
    outcome: &'static str,
    quantity: Quantity,
    /// Absent only from a fast-path `sold_out`: it never stood in line.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    sku: &'a Sku,
    user_id: &'a UserId,
}

pub fn decision_body<'a>(sku: &'a Sku, d: &'a Decision) -> PurchaseView<'a> {
    PurchaseView {
        idempotency_key: &d.key,
        order_id: d.order_id,
        outcome: d.outcome.as_str(),
        quantity: d.quantity,
        seq: Some(d.seq),
        sku,
        user_id: &d.user_id,
    }
}

pub fn apply_preference(response: &mut Response, wait: &Wait) {
    if let Some(applied) = wait
        .applied
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        response.headers_mut().insert("preference-applied", applied);
    }
}
