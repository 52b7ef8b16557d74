//! When and how long to wait before retrying a model call: 429, 529, 5xx and connection errors,
//! honouring `retry-after-ms` / `retry-after` and `x-should-retry`, otherwise bounded exponential
//! backoff with jitter. Pure, so the policy is tested without a server.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

/// Bounds of the retry loop. Tests shrink them; production keeps the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A server's `retry-after` longer than this is cut to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Fast bounds for tests.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(10),
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 0 for the first try).
    /// A server-given delay wins; otherwise `initial * 2^attempt`, capped, with 50–100 % jitter.
    pub fn delay(&self, attempt: u32, server: Option<Duration>) -> Duration {
        if let Some(d) = server {
            return d.min(self.max_retry_after);
        }
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let factor: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        exp.mul_f64(factor)
    }
}

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
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        h.remove("retry-after-ms");
        assert_eq!(server_delay(&h), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_stays_bounded() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        for attempt in 0..10 {
            let d = p.delay(attempt, None);
            let full = Duration::from_millis(100 * 2u64.pow(attempt)).min(p.max_backoff);
            assert!(d <= full && d >= full / 2, "attempt {attempt}: {d:?}");
        }
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
