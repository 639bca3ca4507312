//! Who is buying: the buyer a request's bearer token names, or nobody in
//! particular when buyer authentication is off (`--insecure-no-auth`, then
//! the body's `user_id` is believed).
//!
//! Must not verify tokens itself (`dropline_identity` does, the same way
//! for the load test's reference designs) nor read anything per request
//! but the configured keys.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use dropline_core::UserId;
use dropline_identity::Verifier;

use crate::problem::ApiError;

/// How a gateway knows its buyers.
#[derive(Clone)]
pub enum BuyerAuth {
    /// Anyone may buy as anyone: development and trusted networks only.
    Off,
    /// A buyer is the `sub` of a valid bearer token.
    Tokens(Arc<Verifier>),
}

impl std::fmt::Debug for BuyerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuyerAuth::Off => "Off",
            BuyerAuth::Tokens(_) => "Tokens",
        })
    }
}

impl BuyerAuth {
    /// The buyer the request's token names; `None` when authentication is
    /// off. A missing or invalid token is a `401`.
    pub(crate) fn buyer(&self, headers: &HeaderMap) -> Result<Option<UserId>, ApiError> {
        let BuyerAuth::Tokens(verifier) = self else {
            return Ok(None);
        };
        let token = bearer_token(headers)?;
        let buyer = verifier
            .verify(token)
            .map_err(|why| ApiError::unauthorized(Some(&why.to_string())))?;
        let user = UserId::parse(buyer.subject).map_err(|refused| {
            ApiError::unauthorized(Some(&format!(
                "the token's sub is not a user id: {refused}"
            )))
        })?;
        Ok(Some(user))
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(None));
    };
    value
        .to_str()
        .ok()
        .and_then(dropline_identity::bearer_token)
        .ok_or_else(|| {
            ApiError::unauthorized(Some("the Authorization header must be `Bearer <JWT>`"))
        })
}

/// The user a purchase is for: the token's buyer, whom a body `user_id`
/// (optional then) must name too; with authentication off, the body's.
/// A `user_id` that is no user id is a `400` either way.
pub(crate) fn purchaser(
    buyer: Option<UserId>,
    body_user: Option<String>,
) -> Result<UserId, ApiError> {
    let claimed = body_user.map(UserId::parse).transpose()?;
    match (buyer, claimed) {
        (Some(buyer), None) => Ok(buyer),
        (Some(buyer), Some(claimed)) if claimed == buyer => Ok(buyer),
        (Some(_), Some(_)) => Err(ApiError::forbidden(
            "user_id must be the buyer the token names (or left out)",
        )),
        (None, Some(claimed)) => Ok(claimed),
        (None, None) => Err(ApiError::bad_request("body: missing field `user_id`")),
    }
}
