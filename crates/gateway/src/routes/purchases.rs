//! `POST /v1/drops/{sku}/purchases` and `GET .../purchases/{key}`.
//!
//! A purchase is accepted the moment JetStream acks its intent; the answer
//! is the decision if it comes back within the wait, else `202` with a
//! `Location` to read it from later. Must not decide, nor answer a
//! purchase as accepted before its PubAck.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dropline_bus::PublishError;
use dropline_core::wire::IntentPayload;
use dropline_core::{Decision, DropStatus, IdempotencyKey, Outcome, Quantity, Sku, UserId};
use metrics::Counter;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use uuid::Uuid;

use super::encode_segment;
use super::prefer::{wait_preference, Wait};
use crate::problem::ApiError;
use crate::AppState;

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

/// The request body as sent; parsed into domain types right after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    user_id: String,
    #[serde(default = "one")]
    quantity: i64,
}

fn one() -> i64 {
    1
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
    let request = parse_purchase(&state, path, &headers, body)?;
    let PurchaseRequest { sku, intent } = request;

    let drop = state.drops.get(&sku).await.map_err(|err| {
        tracing::error!(%sku, %err, "read drop");
        ApiError::internal()
    })?;
    let Some(drop) = drop else {
        return Err(ApiError::not_found(format!("no drop {sku}")));
    };
    if drop.status != DropStatus::Open {
        return Err(ApiError::drop_not_open(format!(
            "drop {sku} is {}",
            drop.status.as_str()
        )));
    }

    let wait = wait_preference(
        &headers,
        std::time::Duration::from_millis(state.config.wait_default_ms),
        std::time::Duration::from_millis(state.config.wait_max_ms),
    );
    // Register before publishing, so a fast decision cannot slip past; with
    // no wait asked for (`respond-async`) the answer is 202 at the PubAck,
    // and nothing waits.
    let mut ticket = (!wait.duration.is_zero()).then(|| state.waiters.register(&sku, &intent.key));
    // The same key sent again is published again: the processor answers it
    // with the key's recorded decision, which reaches this ticket.
    let (intent, seq) = match state.publisher.publish(&sku, intent).await {
        Ok(placed) => placed,
        // Logged once per message by the publisher, not once per purchase.
        Err(PublishError::Unavailable(_)) => {
            return Err(ApiError::broker_unavailable(state.config.retry_after_s));
        }
    };
    METERS.accepted.increment(1);
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

pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    let raw: PurchaseBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let user_id = UserId::parse(raw.user_id)?;
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

async fn recorded(
    state: &AppState,
    sku: &Sku,
    key: &IdempotencyKey,
) -> Result<Option<Decision>, ApiError> {
    state.store.purchase(sku, key).await.map_err(|err| {
        tracing::error!(%sku, %key, %err, "read purchase");
        ApiError::internal()
    })
}

/// Waits up to `wait` for the decision of (sku, key): from the decision
/// feed, and from the store every `store_recheck_ms` and at the end, since a
/// broadcast can be lost (a processor that died between commit and
/// announce, a reconnect). A store that cannot answer counts as "not yet":
/// the intent is accepted either way.
async fn wait_for_decision(
    state: &AppState,
    ticket: &mut crate::waiters::Ticket,
    sku: &Sku,
    key: &IdempotencyKey,
    wait: std::time::Duration,
) -> Option<Decision> {
    let deadline = tokio::time::Instant::now() + wait;
    let recheck = std::time::Duration::from_millis(state.config.store_recheck_ms);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Some(decision) = ticket.wait(left.min(recheck)).await {
            return Some(decision);
        }
        if let Some(decision) = recorded_if_reachable(state, sku, key).await {
            return Some(decision);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// Like [`recorded`], for a purchase already accepted: a failed read is
/// logged and treated as "not decided yet".
async fn recorded_if_reachable(
    state: &AppState,
    sku: &Sku,
    key: &IdempotencyKey,
) -> Option<Decision> {
    recorded(state, sku, key).await.ok().flatten()
}

fn key_reused(sku: &Sku, key: &IdempotencyKey) -> ApiError {
    ApiError::key_reused(format!(
        "Idempotency-Key {key} was already used on {sku} with another user_id or quantity"
    ))
}

/// `201` for a win, `409` otherwise; `422` if the key's recorded decision is
/// for a different request.
fn answer_decision(
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

fn answer_pending(sku: &Sku, intent: &IntentPayload, seq: u64, wait: &Wait) -> Response {
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
        seq,
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
struct PurchaseView<'a> {
    idempotency_key: &'a IdempotencyKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<Uuid>,
    /// An [`Outcome`], or `pending`.
    outcome: &'static str,
    quantity: Quantity,
    seq: u64,
    sku: &'a Sku,
    user_id: &'a UserId,
}

fn decision_body<'a>(sku: &'a Sku, d: &'a Decision) -> PurchaseView<'a> {
    PurchaseView {
        idempotency_key: &d.key,
        order_id: d.order_id,
        outcome: d.outcome.as_str(),
        quantity: d.quantity,
        seq: d.seq,
        sku,
        user_id: &d.user_id,
    }
}

fn apply_preference(response: &mut Response, wait: &Wait) {
    if let Some(applied) = wait
        .applied
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        response.headers_mut().insert("preference-applied", applied);
    }
}
