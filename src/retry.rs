//! Retrying calls to GitHub and to the model: one policy type and one loop. Each client says
//! which answers are worth another attempt and what wait the server asked for (GitHub's
//! `retry-after` and rate-limit reset, Anthropic's `retry-after-ms`); this module decides how
//! long to wait and when to stop: bounded exponential backoff with "equal jitter" (half fixed,
//! half random, so that clients retrying together spread out), a bound on attempts, on the wait
//! a server may ask for, and on the total time spent waiting, so that a `retry-after: 3600`
//! fails fast instead of hanging a run.
//!
//! The decisions are pure ([`RetryPolicy::decide`]) and tested without a server.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

/// The bounds of retrying. Tests shrink them ([`RetryPolicy::fast`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff step when the server gives no hint.
    pub base_delay: Duration,
    /// The largest backoff step when the server gives no hint.
    pub max_delay: Duration,
    /// A wait the server asks for that is longer than this is cut to it.
    pub max_hint: Duration,
    /// The most time spent waiting between attempts of one call; a wait that would pass it ends
    /// the call with its last error instead.
    pub max_total_wait: Duration,
    /// The time limit of one attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// GitHub's bounds: a server's hint is honoured whole, within two minutes of waiting.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_hint: Duration::MAX,
            max_total_wait: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The model's bounds: a `retry-after` longer than a minute is cut to one (an overloaded
    /// model API asks for long waits it does not need), and a model call may take ten minutes.
    pub fn model() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_secs(30),
            max_hint: Duration::from_secs(60),
            max_total_wait: Duration::from_secs(300),
            request_timeout: Duration::from_secs(600),
        }
    }

    /// Bounds for tests: a few attempts, milliseconds apart.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_hint: Duration::from_secs(10),
            max_total_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// The backoff step after `attempt` failed attempts (1-based) when the server gave no hint:
    /// exponential from `base_delay`, capped at `max_delay`, with equal jitter (`jitter` in
    /// [0, 1]: 0 gives half the step, 1 the whole step).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let step = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        step / 2 + step.mul_f64(jitter) / 2
    }

    /// What to do after `attempts` attempts (the one just made included) that waited `waited`
    /// in all, when the last one failed in a way worth retrying, with the server's `hint`.
    pub fn decide(
        &self,
        hint: Option<Duration>,
        attempts: u32,
        waited: Duration,
        jitter: f64,
    ) -> RetryDecision {
        if attempts >= self.max_attempts {
            return RetryDecision::OutOfAttempts;
        }
        let wait = match hint {
            Some(h) => h.min(self.max_hint),
            None => self.backoff(attempts, jitter),
        };
        if waited.saturating_add(wait) > self.max_total_wait {
            return RetryDecision::WaitTooLong(wait);
        }
        RetryDecision::RetryAfter(wait)
    }
}

/// What to do after a failed attempt worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop: the attempts are used up.
    OutOfAttempts,
    /// Stop: waiting this long would pass the total bound.
    WaitTooLong(Duration),
}

/// How one attempt went, as the client classifies it.
#[derive(Debug)]
pub enum Attempt<T, E> {
    Done(T),
    /// A failure that retrying cannot fix.
    Failed(E),
    /// A failure worth another attempt, after the server's hint if it gave one.
    Retry {
        error: E,
        hint: Option<Duration>,
    },
}

/// Why the loop stopped without a success.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// The answer was final.
    Final(E),
    /// Every attempt failed; the last error.
    OutOfAttempts(E),
    /// The server asked for a wait past the total bound; the last error and that wait.
    WaitTooLong { error: E, wait: Duration },
}

impl<E> GaveUp<E> {
    pub fn into_error(self) -> E {
        match self {
            GaveUp::Final(e) | GaveUp::OutOfAttempts(e) | GaveUp::WaitTooLong { error: e, .. } => e,
        }
    }
}

/// The end of a retried call, and how many attempts it took.
#[derive(Debug)]
pub struct Tried<T, E> {
    pub result: Result<T, GaveUp<E>>,
    pub attempts: u32,
}

/// Runs `attempt` (given the attempt's number, from 1) until it is done, fails for good, or the
/// policy says stop; waits between attempts as the policy says. `what` names the call in logs.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Tried<T, E>
where
    E: std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let mut attempts = 0u32;
    let mut waited = Duration::ZERO;
    loop {
        attempts += 1;
        let (error, hint) = match attempt(attempts).await {
            Attempt::Done(v) => {
                return Tried {
                    result: Ok(v),
                    attempts,
                }
            }
            Attempt::Failed(e) => {
                return Tried {
                    result: Err(GaveUp::Final(e)),
                    attempts,
                }
            }
            Attempt::Retry { error, hint } => (error, hint),
        };
        let jitter = rand::thread_rng().gen_range(0.0..=1.0);
        let wait = match policy.decide(hint, attempts, waited, jitter) {
            RetryDecision::RetryAfter(wait) => wait,
            RetryDecision::OutOfAttempts => {
                return Tried {
                    result: Err(GaveUp::OutOfAttempts(error)),
                    attempts,
                }
            }
            RetryDecision::WaitTooLong(wait) => {
                return Tried {
                    result: Err(GaveUp::WaitTooLong { error, wait }),
                    attempts,
                }
            }
        };
        let wait_ms = wait.as_millis() as u64;
        tracing::warn!(call = what, attempts, wait_ms, error = %error, "call failed; retrying");
        tokio::time::sleep(wait).await;
        waited = waited.saturating_add(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(1000));
        assert_eq!(p.backoff(100, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_the_whole_step() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::model()
        };
        for attempt in 1..10 {
            let full = Duration::from_millis(100 * 2u64.pow(attempt - 1)).min(p.max_delay);
            for jitter in [0.0, 0.3, 1.0] {
                let d = p.backoff(attempt, jitter);
                assert!(d <= full && d >= full / 2, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn retries_stop_at_the_attempt_bound() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(matches!(
            p.decide(None, 2, Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(None, 3, Duration::ZERO, 0.5),
            RetryDecision::OutOfAttempts
        );
    }

    #[test]
    fn a_hint_beyond_the_total_budget_stops_instead_of_sleeping() {
        let p = RetryPolicy {
            max_total_wait: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(
            p.decide(Some(hour), 1, Duration::ZERO, 0.5),
            RetryDecision::WaitTooLong(hour)
        );
        let two = Duration::from_secs(2);
        assert_eq!(
            p.decide(Some(two), 1, Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(two)
        );
        assert_eq!(
            p.decide(Some(two), 1, Duration::from_secs(59), 0.5),
            RetryDecision::WaitTooLong(two)
        );
    }

    #[test]
    fn the_model_policy_cuts_long_hints_to_a_minute() {
        let p = RetryPolicy::model();
        assert_eq!(
            p.decide(Some(Duration::from_secs(3600)), 1, Duration::ZERO, 0.5),
            RetryDecision::RetryAfter(Duration::from_secs(60))
        );
    }

    #[tokio::test]
    async fn the_loop_retries_until_done_and_counts_attempts() {
        let tried = with_retries(&RetryPolicy::fast(), "test", |n| async move {
            if n < 3 {
                Attempt::Retry {
                    error: format!("attempt {n} failed"),
                    hint: None,
                }
            } else {
                Attempt::Done(n)
            }
        })
        .await;
        assert_eq!((tried.result.ok(), tried.attempts), (Some(3), 3));
    }

    #[tokio::test]
    async fn the_loop_stops_at_a_final_failure_or_the_last_attempt() {
        let tried: Tried<(), String> = with_retries(&RetryPolicy::fast(), "test", |_| async {
            Attempt::Failed("no".to_string())
        })
        .await;
        assert!(matches!(tried.result, Err(GaveUp::Final(_))));
        assert_eq!(tried.attempts, 1);
        let tried: Tried<(), String> = with_retries(&RetryPolicy::fast(), "test", |n| async move {
            Attempt::Retry {
                error: format!("attempt {n}"),
                hint: None,
            }
        })
        .await;
        match tried.result {
            Err(GaveUp::OutOfAttempts(e)) => assert_eq!(e, "attempt 4"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(attempt in 0u32..1000, jitter in -1.0f64..2.0) {
            let p = RetryPolicy::default();
            proptest::prop_assert!(p.backoff(attempt, jitter) <= p.max_delay);
        }
    }
}
