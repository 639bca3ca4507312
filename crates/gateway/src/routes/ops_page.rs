//! The live page of a drop for operators: `GET /ops/drops/{sku}` (the page,
//! which draws its charts in the browser) and `GET /ops/drops/{sku}/stats`
//! (what it polls: the drop with its partition's progress as the owner
//! records it, one store read per poll).
//!
//! An operator surface: `operator.rs` lets only operators in (README, "The
//! live page of a drop"). Must not decide or change anything, nor read NATS: the
//! figures are the owner's, from the store.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::drops::{public_view, status_of};
use super::encode_segment;
use crate::problem::ApiError;
use crate::AppState;

const PAGE: &str = include_str!("ops_page.html");

/// The page runs its own inline script, fetches only from this gateway and
/// is never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

pub async fn page(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    // The drop must exist: a mistyped SKU gets a 404, not a page that
    // polls for ever.
    let status = status_of(&state, path).await?;
    let sku = status.drop.sku.as_str();
    // SKUs are letters, digits, `-` and `_`: safe in HTML as they are.
    let stats_url = format!("/ops/drops/{}/stats", encode_segment(sku));
    let html = PAGE
        .replace("{{SKU}}", sku)
        .replace("{{STATS_URL}}", &stats_url);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        html,
    )
        .into_response())
}

pub async fn stats(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let status = status_of(&state, path).await?;
    let mut view = public_view(&status);
    let progress = json!({
        "waiting_intents": status.waiting_intents,
        "lag_s": status.lag_s,
        "decisions_per_s": status.decisions_per_s,
        "owner": status.owner,
        "epoch": status.epoch,
        "lease_live": status.lease_live,
        "halted": status.halted,
        "progress_at": status.progress_at,
        "closed_seq": status.drop.closed_seq,
    });
    merge(&mut view, progress);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}

fn merge(view: &mut Value, more: Value) {
    if let (Value::Object(view), Value::Object(more)) = (view, more) {
        view.extend(more);
    }
}
