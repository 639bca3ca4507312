//! The one HTTP error type: every error leaves as `application/problem+json`
//! (RFC 9457). 5xx bodies say little; the log says everything. Must not
//! log: an error is logged once, where it is handled, before it gets here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dropline_core::InvalidInput;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    retry_after_s: Option<u64>,
    /// Extension members (RFC 9457 §3.2) of a drop that is not open.
    state: Option<&'static str>,
    opens_at: Option<DateTime<Utc>>,
    /// `WWW-Authenticate` of a `401` (RFC 6750 §3). Boxed: every result
    /// of the request path carries this type, so it stays small.
    challenge: Option<Box<str>>,
    /// The connection ends after this answer (its request's body was not
    /// read): say so, so a keep-alive client does not send on it again.
    closes_connection: bool,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<DateTime<Utc>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after_s: None,
            state: None,
            opens_at: None,
            challenge: None,
            closes_connection: false,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// A new key for a drop in `state` (scheduled, paused, closed): nothing
    /// accepted. A scheduled drop says when it opens, and how long to wait.
    pub fn drop_not_open(
        detail: impl Into<String>,
        state: &'static str,
        opens_at: Option<DateTime<Utc>>,
        retry_after_s: Option<u64>,
    ) -> Self {
        Self {
            state: Some(state),
            opens_at,
            retry_after_s,
            ..Self::new(
                StatusCode::CONFLICT,
                "drop-not-open",
                "Drop not open",
                detail,
            )
        }
    }

    /// No bearer token (`invalid: None`), or one that names nobody: the
    /// challenge says which (RFC 6750 §3: `invalid_token` with a
    /// description, or no error at all when the token is missing).
    pub fn unauthorized(invalid: Option<&str>) -> Self {
        let realm = "Bearer realm=\"dropline\"";
        let (challenge, detail) = match invalid {
            None => (
                realm.to_string(),
                "send the buyer's token as Authorization: Bearer <JWT>".to_string(),
            ),
            Some(why) => {
                // A quoted-string: no quotes or backslashes inside.
                let why = why.replace(['"', '\\'], "'");
                let challenge =
                    format!("{realm}, error=\"invalid_token\", error_description=\"{why}\"");
                (challenge, why)
            }
        };
        Self {
            challenge: Some(challenge.into_boxed_str()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
            )
        }
    }

    /// An operator surface without the operator credential; a browser is
    /// asked for it (HTTP Basic, the token as the password).
    pub fn operator_unauthorized(detail: &str) -> Self {
        Self {
            challenge: Some("Basic realm=\"dropline operators\", charset=\"UTF-8\"".into()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "operator-unauthorized",
                "Unauthorized",
                detail,
            )
        }
    }

    /// The token's buyer may not do this (buy as someone else).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn key_reused(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused with a different request",
            detail,
        )
    }

    /// The body is not read past the limit, so the connection cannot
    /// carry another request: it closes, and the answer says so.
    pub fn payload_too_large(limit: usize) -> Self {
        Self {
            closes_connection: true,
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!("the body must be at most {limit} bytes"),
            )
        }
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "see /openapi.json for the methods of each path",
        )
    }

    /// The broker did not take the intent: nothing accepted, retry is safe.
    pub fn broker_unavailable(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Service unavailable",
                "the purchase was not accepted; retry with the same Idempotency-Key",
            )
        }
    }

    /// Too many requests in flight: shed at once, retry shortly.
    pub fn too_many_requests(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
                "the gateway is at its in-flight limit; nothing was accepted, retry shortly",
            )
        }
    }

    /// This client address sends requests faster than the per-address
    /// rate: nothing done, retry after `Retry-After`.
    pub fn address_rate_limited(retry_after_s: u64) -> Self {
        Self::rate_limited(
            retry_after_s,
            "this address sends requests faster than the gateway's per-address rate; \
             nothing was done, retry after Retry-After",
        )
    }

    /// This buyer sends purchases faster than the per-user rate: nothing
    /// accepted, retry after `Retry-After`.
    pub fn user_rate_limited(retry_after_s: u64) -> Self {
        Self::rate_limited(
            retry_after_s,
            "this buyer sends purchases faster than the gateway's per-user rate; nothing \
             was accepted, retry after Retry-After",
        )
    }

    /// One of the rate limits refused the request (problem type `rate-limited`).
    fn rate_limited(retry_after_s: u64, detail: &'static str) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
        }
    }

    /// Something failed inside; the cause is logged where it happened.
    pub fn internal() -> Self {
        Self {
            retry_after_s: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "try again shortly",
            )
        }
    }
}

/// Input a domain type refused is the client's to fix: `400`, with the
/// refusal (safe to show) as the detail.
impl From<InvalidInput> for ApiError {
    fn from(refused: InvalidInput) -> Self {
        Self::bad_request(refused.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("dropline_gateway_errors_total", "status" => self.status.as_str().to_owned())
            .increment(1);
        let body = ProblemBody {
            kind: format!("urn:dropline:problem:{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            state: self.state,
            opens_at: self.opens_at,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(value) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if self.closes_connection {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dropline_core::Sku;

    #[test]
    fn refused_input_is_a_bad_request_that_shows_the_refusal() {
        let refused = Sku::parse("a.b").unwrap_err();
        let shown = refused.to_string();
        let error = ApiError::from(refused);
        assert_eq!(
            (error.status, error.slug, error.title, error.detail.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                shown.as_str()
            )
        );
        assert_eq!(error.retry_after_s, None);
    }
}
