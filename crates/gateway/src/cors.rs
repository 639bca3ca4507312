//! Browsers on other origins (a shop's web front calling the gateway):
//! CORS for the configured origins only. Preflights (`OPTIONS`) are
//! answered for every API route; only a configured origin gets
//! `Access-Control-Allow-Origin`, so a browser on any other origin is
//! refused by the browser itself. Credentials travel in `Authorization`,
//! never in cookies, so none are allowed.
//!
//! Must not decide who may buy: tokens do (`auth.rs`).

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

pub(crate) fn layer(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("prefer"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("preference-applied"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// An origin as configured (`https://shop.example`, `http://localhost:3000`):
/// a scheme and a host, an optional port, nothing else.
pub fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?}: an origin starts with https:// or http://"))?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return Err(format!(
            "{text:?}: an origin is a scheme and a host with an optional port, no path"
        ));
    }
    HeaderValue::from_str(text).map_err(|err| format!("{text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_a_scheme_and_a_host() {
        for good in [
            "https://shop.example",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(parse_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "shop.example",
            "https://",
            "https://shop.example/",
            "https://a b",
            "ftp://x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
