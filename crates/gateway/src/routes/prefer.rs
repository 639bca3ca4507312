//! `Prefer` (RFC 7240): `wait=N` and `respond-async`. Must not refuse a
//! request for a preference it cannot read: preferences are optional.

use std::time::Duration;

use axum::http::HeaderMap;

/// How long to wait for a decision, and what to echo in `Preference-Applied`.
pub struct Wait {
    pub duration: Duration,
    pub applied: Option<String>,
}

/// Reads `Prefer` from every `Prefer` header; unknown preferences are
/// ignored, as RFC 7240 asks. `wait` is capped at `max`.
pub fn wait_preference(headers: &HeaderMap, default: Duration, max: Duration) -> Wait {
    let mut wait = Wait {
        duration: default,
        applied: None,
    };
    let preferences = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for preference in preferences {
        let (name, value) = match preference.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (preference, None),
        };
        if name.eq_ignore_ascii_case("respond-async") {
            wait = Wait {
                duration: Duration::ZERO,
                applied: Some("respond-async".into()),
            };
            return wait;
        }
        if name.eq_ignore_ascii_case("wait") {
            if let Some(seconds) = value.and_then(|v| v.parse::<u64>().ok()) {
                let asked = Duration::from_secs(seconds);
                let used = asked.min(max);
                wait = Wait {
                    duration: used,
                    applied: Some(format!("wait={}", used.as_secs())),
                };
            }
        }
    }
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("prefer", value.parse().unwrap());
        h
    }

    #[test]
    fn wait_is_read_capped_and_echoed() {
        let d = Duration::from_secs(3);
        let m = Duration::from_secs(30);
        let w = wait_preference(&headers("wait=10"), d, m);
        assert_eq!(w.duration, Duration::from_secs(10));
        assert_eq!(w.applied.as_deref(), Some("wait=10"));
        let w = wait_preference(&headers("handling=lenient, wait=999"), d, m);
        assert_eq!(w.duration, m);
        assert_eq!(w.applied.as_deref(), Some("wait=30"));
        let w = wait_preference(&HeaderMap::new(), d, m);
        assert_eq!((w.duration, w.applied), (d, None));
        let w = wait_preference(&headers("respond-async, wait=5"), d, m);
        assert_eq!(w.duration, Duration::ZERO);
    }
}
