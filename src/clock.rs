//! The one wall clock: Unix time for what is stored (job times, leases, retention), signed (run
//! links) or compared with GitHub's (rate-limit resets, JWT times). Everything reads it through
//! a [`Clock`], which is the system's in production and a manual one in tests, so a test can
//! expire a lease or age a row without sleeping.
//!
//! Durations measured inside the process (timeouts, backoff, pacing) use `tokio::time::Instant`
//! and are not this clock's business.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of Unix time; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock's milliseconds, shared by its clones.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `unix_ms` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(unix_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(unix_ms))),
        }
    }

    /// A manual clock at the system's time now.
    pub fn manual_now() -> Clock {
        Clock::manual(system_unix_ms())
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            ms.fetch_add(duration_ms(by), Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, unix_ms: i64) {
        if let Some(ms) = &self.manual {
            ms.store(unix_ms, Ordering::SeqCst);
        }
    }

    /// Unix time in milliseconds.
    pub fn unix_ms(&self) -> i64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => system_unix_ms(),
        }
    }

    /// Unix time in whole seconds.
    pub fn unix_secs(&self) -> u64 {
        u64::try_from(self.unix_ms() / 1000).unwrap_or(0)
    }
}

/// A duration in milliseconds, saturating (for adding to Unix milliseconds).
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

/// The system clock's Unix seconds, for code with no [`Clock`] at hand (JWT claims, a
/// container's creation label).
pub fn unix_secs() -> u64 {
    Clock::system().unix_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let c = Clock::manual(1_000);
        let seen_by_another_part = c.clone();
        assert_eq!(c.unix_ms(), 1_000);
        c.advance(Duration::from_secs(61));
        assert_eq!(seen_by_another_part.unix_ms(), 62_000);
        assert_eq!(seen_by_another_part.unix_secs(), 62);
        c.set(5);
        assert_eq!(seen_by_another_part.unix_ms(), 5);
    }

    #[test]
    fn the_system_clock_is_now() {
        let before = system_unix_ms();
        let t = Clock::system().unix_ms();
        assert!(t >= before && t - before < 5_000);
        // A system clock cannot be moved.
        Clock::system().advance(Duration::from_secs(3600));
        assert!(Clock::system().unix_ms() - before < 5_000);
    }
}
