//! When to retry a GitHub call and how long to wait: pure functions of the status, the headers
//! and the attempts so far, so they are tested without a server. 5xx, 429 and secondary rate
//! limits (403/429 with `retry-after`, or `x-ratelimit-remaining: 0` with `x-ratelimit-reset`)
//! are retried, honouring those headers; other 4xx are not. Waits are bounded per attempt, in
//! number of attempts, and in total, so a `retry-after: 3600` fails fast instead of hanging a run.

use std::time::Duration;

use http::HeaderMap;

/// The bounds of retrying. Tests shrink them; production uses [`RetryPolicy::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff step when GitHub gives no hint.
    pub base_delay: Duration,
    /// The largest backoff step when GitHub gives no hint.
    pub max_delay: Duration,
    /// The most time spent waiting between attempts of one call; a wait that would pass it
    /// ends the call with an error instead.
    pub max_total_wait: Duration,
    /// The time limit of one attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What an answer means for retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success, or a failure that retrying cannot fix.
    Final,
    /// Worth another attempt, after GitHub's hint if it gave one.
    Retryable { hint: Option<Duration> },
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop: the answer is final, or a bound is reached.
    Stop,
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

/// The backoff step after `attempt` failed attempts (1-based) when GitHub gave no hint:
/// exponential from `base_delay`, capped at `max_delay`, with "equal jitter" (half fixed, half
/// random, `jitter` in [0, 1]) so that clients retrying together spread out.
pub fn backoff_delay(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let step = policy
        .base_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    let jitter = jitter.clamp(0.0, 1.0);
    step / 2 + step.mul_f64(jitter) / 2
}

/// Decides after `attempts` attempts (the one just made included) that waited `waited` in all.
pub fn decide(
    policy: &RetryPolicy,
    outcome: Outcome,
    attempts: u32,
    waited: Duration,
    jitter: f64,
) -> RetryDecision {
    let hint = match outcome {
        Outcome::Final => return RetryDecision::Stop,
        Outcome::Retryable { hint } => hint,
    };
    if attempts >= policy.max_attempts {
        return RetryDecision::Stop;
    }
    let wait = hint.unwrap_or_else(|| backoff_delay(policy, attempts, jitter));
    if waited.saturating_add(wait) > policy.max_total_wait {
        return RetryDecision::Stop;
    }
    RetryDecision::RetryAfter(wait)
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

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(backoff_delay(&p, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&p, 10, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff_delay(&p, 100, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn retries_stop_at_the_attempt_bound() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let r = Outcome::Retryable { hint: None };
        assert!(matches!(
            decide(&p, r, 2, Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(decide(&p, r, 3, Duration::ZERO, 0.5), RetryDecision::Stop);
    }

    #[test]
    fn a_retry_after_beyond_the_total_budget_stops_instead_of_sleeping() {
        let p = RetryPolicy {
            max_total_wait: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let long = Outcome::Retryable {
            hint: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            decide(&p, long, 1, Duration::ZERO, 0.5),
            RetryDecision::Stop
        );
        let short = Outcome::Retryable {
            hint: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            decide(&p, short, 1, Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            decide(&p, short, 1, Duration::from_secs(59), 0.5),
            RetryDecision::Stop
        );
    }

    proptest::proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(attempt in 0u32..1000, jitter in -1.0f64..2.0) {
            let p = RetryPolicy::default();
            proptest::prop_assert!(backoff_delay(&p, attempt, jitter) <= p.max_delay);
        }
    }
}
