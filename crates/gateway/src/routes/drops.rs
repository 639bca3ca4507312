//! `GET /v1/drops/{sku}`: a drop's state, read from the store, with its
//! status as buyers meet it (a scheduled drop past its opening time is
//! open). Must not use the admission view: `remaining` and `won` move with
//! every commit.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use dropline_core::Sku;
use dropline_store::DropStatusRow;
use serde_json::{json, Value};

use crate::problem::ApiError;
use crate::AppState;

pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let status = status_of(&state, path).await?;
    Ok(Json(public_view(&status)))
}

/// The drop named by the path, with its partition's progress; `404` for
/// a SKU without a drop.
pub(super) async fn status_of(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<DropStatusRow, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sku = Sku::parse(raw)?;
    let statuses = state.store.drop_statuses(Some(&sku)).await.map_err(|err| {
        tracing::error!(%sku, %err, "read drop");
        ApiError::internal()
    })?;
    statuses
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no drop {sku}")))
}

/// What anyone may read of a drop.
pub(super) fn public_view(status: &DropStatusRow) -> Value {
    let d = &status.drop;
    let effective = d.status_at(chrono::Utc::now());
    let mut view = json!({
        "sku": d.sku,
        "name": d.name,
        "status": effective.as_str(),
        "initial_stock": d.initial_stock,
        "restocked": d.restocked,
        "remaining": d.remaining,
        "won": d.won_units,
        "per_user_limit": d.per_user_limit,
        "decided": status.decided,
        "applied_seq": status.applied_seq,
        "created_at": d.created_at,
    });
    if let Some(opens_at) = d.opens_at {
        view["opens_at"] = json!(opens_at);
    }
    view
}
