//! Finding a key's recorded decision: in the store, and while a request
//! waits, from the decision feed too (with the store read every
//! `store_recheck_ms`, since a broadcast can be lost).
//!
//! Must not publish nor answer: it reads, the handlers answer.

use dropline_core::{Decision, IdempotencyKey, Sku};

use crate::problem::ApiError;
use crate::AppState;

/// The key's recorded decision; a store that cannot answer is a `503`.
pub async fn recorded(
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
pub async fn wait_for_decision(
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
