//! What a verified token says about its bearer.

use serde::Deserialize;

/// The buyer a token names: its `sub`, as the identity provider spells it.
/// The edge still checks it is a valid user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    pub subject: String,
}

/// The claims dropline reads; `exp`, `nbf`, `iss` and `aud` are checked by
/// the JWT crate before these are looked at.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub sub: Option<String>,
}
