//! What a purchase meets before the line: is the drop there, is it open,
//! and is it finally sold out. A drop that is not open answers a key from
//! the store (a recorded answer is forever) or refuses it `409` with its
//! state; a finally sold-out one answers from the sell-out's memory.
//!
//! Must not publish, decide nor record: a purchase either passes to the
//! line untouched or gets an answer the line already gave (or, for a new
//! key of a finally sold-out drop, the one it would give to anyone).

use axum::response::Response;
use chrono::{DateTime, Utc};
use dropline_core::wire::IntentPayload;
use dropline_core::Sku;

use super::answers::{answer_decision, answer_sold_out_at_once};
use super::prefer::Wait;
use super::recorded::recorded;
use crate::admission::{Gate, NotOpen};
use crate::problem::ApiError;
use crate::sell_out::FastAnswer;
use crate::AppState;

/// `Ok(None)`: the purchase goes to the line; `Ok(Some(answer))`: it is
/// answered here.
pub async fn before_line(
    state: &AppState,
    sku: &Sku,
    intent: &IntentPayload,
    wait: &Wait,
) -> Result<Option<Response>, ApiError> {
    let now = Utc::now();
    let gate = state.admissions.gate(sku, now).await.map_err(|_| {
        // Logged where the store failed.
        ApiError::internal()
    })?;
    match gate {
        None => Err(ApiError::not_found(format!("no drop {sku}"))),
        Some(Gate::NotOpen(why)) => not_open(state, sku, intent, wait, why, now).await.map(Some),
        Some(Gate::Open) => match state.sell_outs.answer(sku, &intent.key) {
            None => Ok(None),
            Some(FastAnswer::Recorded(decision)) => {
                answer_decision(sku, intent, decision, wait).map(Some)
            }
            Some(FastAnswer::SoldOut) => Ok(Some(answer_sold_out_at_once(sku, intent))),
        },
    }
}

/// A drop that takes no new key still answers a key it has recorded.
async fn not_open(
    state: &AppState,
    sku: &Sku,
    intent: &IntentPayload,
    wait: &Wait,
    why: NotOpen,
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    if let Some(decision) = recorded(state, sku, &intent.key).await? {
        return answer_decision(sku, intent, decision, wait);
    }
    Err(refusal(sku, why, now))
}

/// `409` naming the state; a scheduled drop adds when it opens and, in
/// `Retry-After`, the whole seconds until then (at least 1).
fn refusal(sku: &Sku, why: NotOpen, now: DateTime<Utc>) -> ApiError {
    let state = why.state();
    match why {
        NotOpen::Scheduled {
            opens_at: Some(opens_at),
        } => ApiError::drop_not_open(
            format!(
                "drop {sku} is {state}: it opens at {}",
                opens_at.to_rfc3339()
            ),
            state,
            Some(opens_at),
            Some(seconds_until(opens_at, now)),
        ),
        _ => ApiError::drop_not_open(format!("drop {sku} is {state}"), state, None, None),
    }
}

/// Whole seconds from `now` until `then`, rounded up, at least 1.
fn seconds_until(then: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = (then - now).num_milliseconds().max(0) as u64;
    millis.div_ceil(1_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let later = |ms| now + chrono::Duration::milliseconds(ms);
        assert_eq!(seconds_until(later(2_001), now), 3);
        assert_eq!(seconds_until(later(2_000), now), 2);
        assert_eq!(seconds_until(later(1), now), 1);
        assert_eq!(seconds_until(later(0), now), 1);
        assert_eq!(seconds_until(later(-5_000), now), 1);
    }
}
