//! Who may use the operator surfaces (`/ops/…`, `/metrics`): whoever
//! presents the operator token, distinct from any buyer's, as
//! `Authorization: Bearer <token>` (scripts, Prometheus) or HTTP Basic with
//! the token as the password (a browser on the live page asks for it).
//! Without a token configured, only a client on this machine (loopback) is
//! let in, so a gateway reachable from the internet does not show its
//! operator pages to the internet by default.
//!
//! Must not know buyers: a buyer's token opens nothing here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::problem::ApiError;
use crate::AppState;

/// The shortest operator token taken.
pub const OPERATOR_TOKEN_BYTES_MIN: usize = 32;

/// How operators prove who they are.
#[derive(Clone)]
pub enum OperatorAccess {
    /// No token configured: clients on this machine only.
    LoopbackOnly,
    Token(Arc<str>),
}

impl std::fmt::Debug for OperatorAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperatorAccess::LoopbackOnly => "LoopbackOnly",
            OperatorAccess::Token(_) => "Token(<secret>)",
        })
    }
}

impl OperatorAccess {
    /// A token of at least [`OPERATOR_TOKEN_BYTES_MIN`] bytes, or why not.
    pub fn token(token: &str) -> Result<Self, String> {
        if token.len() < OPERATOR_TOKEN_BYTES_MIN {
            return Err(format!(
                "the operator token is {} bytes; at least {OPERATOR_TOKEN_BYTES_MIN} are needed",
                token.len()
            ));
        }
        Ok(Self::Token(token.into()))
    }

    fn admits(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        match self {
            OperatorAccess::LoopbackOnly => peer.is_some_and(|p| p.ip().is_loopback()),
            OperatorAccess::Token(token) => {
                presented(headers).is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
            }
        }
    }
}

/// The paths the operator surfaces are served on (`routes/mod.rs`).
pub(crate) fn is_operator_path(path: &str) -> bool {
    path.starts_with("/ops/") || path == "/metrics"
}

/// The middleware in front of the gateway's operator routes.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    admit_operator(&state.config.operators, request, next).await
}

/// The middleware in front of a processor's `/metrics`.
pub(crate) async fn guard_with(
    State(operators): State<OperatorAccess>,
    request: Request,
    next: Next,
) -> Response {
    admit_operator(&operators, request, next).await
}

async fn admit_operator(operators: &OperatorAccess, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    if operators.admits(peer, request.headers()) {
        return next.run(request).await;
    }
    let detail = match operators {
        OperatorAccess::LoopbackOnly => {
            "operator surfaces answer this machine only until DROPLINE_OPERATOR_TOKEN is set"
        }
        OperatorAccess::Token(_) => "send the operator token (Bearer, or Basic as the password)",
    };
    ApiError::operator_unauthorized(detail).into_response()
}

/// The token in `Authorization`: a Bearer token, or a Basic password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        return pair
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

/// Equal bytes, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn the_token_opens_as_bearer_or_basic_password_and_nothing_else_does() {
        let token = "an-operator-token-of-at-least-32-bytes";
        let access = OperatorAccess::token(token).unwrap();
        let basic = |pair: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        let far: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        assert!(access.admits(Some(far), &with(&format!("Bearer {token}"))));
        assert!(access.admits(Some(far), &with(&basic(&format!("ops:{token}")))));
        assert!(!access.admits(Some(far), &with(&basic(&format!("{token}:x")))));
        assert!(!access.admits(
            Some(far),
            &with("Bearer an-operator-token-of-at-least-32-bytez")
        ));
        assert!(!access.admits(Some(far), &HeaderMap::new()));
        // A token configured: being on this machine is not enough.
        let near: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(!access.admits(Some(near), &HeaderMap::new()));
    }

    #[test]
    fn without_a_token_only_this_machine_gets_in() {
        let access = OperatorAccess::LoopbackOnly;
        assert!(access.admits(Some("127.0.0.1:1".parse().unwrap()), &HeaderMap::new()));
        assert!(access.admits(Some("[::1]:1".parse().unwrap()), &HeaderMap::new()));
        assert!(!access.admits(Some("10.0.0.7:1".parse().unwrap()), &HeaderMap::new()));
        assert!(!access.admits(None, &HeaderMap::new()));
    }

    #[test]
    fn the_operator_paths_are_the_ops_pages_and_metrics() {
        for path in ["/ops/drops/x", "/ops/drops/x/stats", "/metrics"] {
            assert!(is_operator_path(path), "{path}");
        }
        for path in ["/v1/drops/x/purchases", "/healthz", "/metrics/x", "/opsx"] {
            assert!(!is_operator_path(path), "{path}");
        }
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(OperatorAccess::token("short").is_err());
    }
}
