//! Which model answers are worth another attempt (429, 529, 5xx, connection errors) and what
//! wait the server asked for (`retry-after-ms` / `retry-after`, `x-should-retry`). The policy and
//! the loop are the crate's one [`crate::retry`]. Pure, so it is tested without a server.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Whether an HTTP status is worth retrying: 408, 409, 429, 529 and other 5xx.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The server's requested delay: `retry-after-ms` (milliseconds, may be fractional) first, then
/// `retry-after` in seconds. An HTTP-date `retry-after` is ignored (backoff applies).
pub fn server_delay(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    get("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// `x-should-retry: true|false` overrides the status-based decision when present.
pub fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_ms_wins_over_retry_after_and_both_are_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(server_delay(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250.5"));
        assert_eq!(server_delay(&h), Some(Duration::from_micros(250_500)));
        let p = crate::retry::RetryPolicy::model();
        assert_eq!(
            p.decide(Some(Duration::from_secs(3600)), 1, Duration::ZERO, 0.5),
            crate::retry::RetryDecision::RetryAfter(p.max_hint)
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        h.remove("retry-after-ms");
        assert_eq!(server_delay(&h), None);
    }

    #[test]
    fn statuses_worth_retrying() {
        for s in [429, 500, 502, 503, 529] {
            assert!(retryable_status(s));
        }
        for s in [400, 401, 403, 404, 413] {
            assert!(!retryable_status(s));
        }
    }
}
