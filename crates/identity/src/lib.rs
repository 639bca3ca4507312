//! Who is buying: a buyer's bearer token (a JWT) verified into the buyer's
//! identity, its `sub`.
//!
//! Keys come from one place each process is configured with ([`KeyConfig`]):
//! a shared secret (HS256), a public key in PEM (RS256 or ES256, by the key's
//! type), or a JWKS file of an identity provider's keys, chosen by the
//! token's `kid` and read again when the file changes. Each key verifies
//! only its own algorithm, so a token cannot pick how it is checked
//! (`alg: none`, or an RSA public key used as an HMAC secret, both refused).
//! `exp` is required; `nbf`, `iss` and `aud` are checked (the last two when
//! configured).
//!
//! Used by the gateway and by the load test's reference designs, so both
//! accept exactly the same tokens. Must not do I/O beyond reading the
//! configured key files, and must not know HTTP: the edge turns a
//! [`TokenError`] into its answer.

mod claims;
mod config;
mod jwks;
mod verifier;

pub use claims::Buyer;
pub use config::{ConfigError, KeyConfig};
pub use verifier::{TokenError, Verifier};

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1;
/// the scheme in any case), or `None` for any other value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
