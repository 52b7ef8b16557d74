//! Which GitHub answers are worth another attempt, and the wait GitHub asked for: pure
//! functions of the status and the headers, so they are tested without a server. 5xx, 429 and
//! secondary rate limits (403/429 with `retry-after`, or `x-ratelimit-remaining: 0` with
//! `x-ratelimit-reset`) are retried, honouring those headers; other 4xx are not. How long to wait
//! and when to stop is the crate's one [`crate::retry::RetryPolicy`].

use std::time::Duration;

use http::HeaderMap;

/// What an answer means for retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success, or a failure that retrying cannot fix.
    Final,
    /// Worth another attempt, after GitHub's hint if it gave one.
    Retryable { hint: Option<Duration> },
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub's wait hint: `retry-after` (seconds), else the primary limit's reset time when the
/// remaining count is 0.
pub fn rate_limit_hint(headers: &HeaderMap, now_unix: u64) -> Option<Duration> {
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        if let Some(reset) = header_u64(headers, "x-ratelimit-reset") {
            // At least a second: a reset time already past means "now", and clocks drift.
            return Some(Duration::from_secs(reset.saturating_sub(now_unix).max(1)));
        }
    }
    None
}

/// Classifies an HTTP answer.
pub fn classify(status: u16, headers: &HeaderMap, now_unix: u64) -> Outcome {
    let hint = rate_limit_hint(headers, now_unix);
    match status {
        429 => Outcome::Retryable { hint },
        // A 403 is a secondary rate limit only when GitHub says when to come back; otherwise it
        // is a real refusal and retrying would not help.
        403 if hint.is_some() => Outcome::Retryable { hint },
        500..=599 => Outcome::Retryable { hint },
        _ => Outcome::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn server_errors_and_429_are_retryable() {
        for s in [500, 502, 503, 504, 429] {
            assert!(matches!(
                classify(s, &HeaderMap::new(), NOW),
                Outcome::Retryable { hint: None }
            ));
        }
    }

    #[test]
    fn other_client_errors_are_final() {
        for s in [400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(classify(s, &HeaderMap::new(), NOW), Outcome::Final, "{s}");
        }
        assert_eq!(classify(200, &HeaderMap::new(), NOW), Outcome::Final);
    }

    #[test]
    fn secondary_rate_limit_403_with_retry_after_is_retried_after_it() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            classify(403, &h, NOW),
            Outcome::Retryable {
                hint: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn exhausted_primary_limit_waits_until_reset() {
        let reset = (NOW + 42).to_string();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            classify(403, &h, NOW),
            Outcome::Retryable {
                hint: Some(Duration::from_secs(42))
            }
        );
        // Remaining quota means a 403 is a real refusal.
        let h = headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(classify(403, &h, NOW), Outcome::Final);
    }
}
