//! Pure: a token bucket per API key. A key may start `burst` runs at once, then one every
//! `60 / per_minute` seconds; a refusal says when the next token comes (`retry-after`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limit's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_minute: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 5,
            per_minute: 10,
        }
    }
}

/// One bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let capacity = f64::from(limit.burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(limit.per_minute) / 60.0,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.per_sec <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }
}

/// Buckets by key id (a digest of the key, never the key).
#[derive(Debug, Default)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key_id: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(key_id.to_owned())
            .or_insert_with(|| TokenBucket::new(self.limit, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_a_token_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                burst: 2,
                per_minute: 6,
            },
            t0,
        );
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Ok(()));
        let wait = b.try_take(t0).unwrap_err();
        assert_eq!(wait.as_secs(), 10);
        assert!(b.try_take(t0 + Duration::from_secs(5)).is_err());
        assert_eq!(b.try_take(t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn refilling_never_exceeds_the_burst() {
        let t0 = Instant::now();
        let limit = RateLimit {
            burst: 1,
            per_minute: 60,
        };
        let mut b = TokenBucket::new(limit, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.try_take(later), Ok(()));
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l = RateLimiter::new(RateLimit {
            burst: 1,
            per_minute: 1,
        });
        let t = Instant::now();
        assert!(l.check("a", t).is_ok());
        assert!(l.check("a", t).is_err());
        assert!(l.check("b", t).is_ok());
    }
}
