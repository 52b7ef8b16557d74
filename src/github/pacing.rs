//! Spacing of writes per installation, under GitHub's content-creation limits (80 per minute, 500
//! per hour) and its advice to leave a pause between writes. The window arithmetic is a pure
//! function; [`WritePacer`] applies it, making writers wait their turn in order.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingLimits {
    pub per_minute: usize,
    pub per_hour: usize,
    /// The sustained pace: one write per `min_interval`, GitHub's advice for many writes…
    pub min_interval: Duration,
    /// …after a burst of this many back to back (at most `burst` writes in any window of
    /// `burst × min_interval`), so the few writes that start a run (👀, the progress comment)
    /// do not queue behind each other. 1 spaces every write.
    pub burst: usize,
}

impl Default for PacingLimits {
    fn default() -> Self {
        PacingLimits {
            per_minute: 80,
            per_hour: 500,
            min_interval: Duration::from_secs(1),
            burst: 5,
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The earliest instant at which one more write fits, given the instants of past writes (oldest
/// first).
pub fn next_slot(history: &VecDeque<Instant>, now: Instant, limits: &PacingLimits) -> Instant {
    let mut at = now;
    let burst = limits.burst.max(1);
    let burst_window = limits.min_interval * burst as u32;
    for (window, cap) in [
        (burst_window, burst),
        (MINUTE, limits.per_minute),
        (HOUR, limits.per_hour),
    ] {
        let cap = cap.max(1);
        let in_window: Vec<&Instant> = history.iter().filter(|t| **t + window > now).collect();
        if in_window.len() >= cap {
            // The write that has to leave the window first for one more to fit.
            let oldest_blocking = in_window[in_window.len() - cap];
            at = at.max(*oldest_blocking + window);
        }
    }
    at
}

/// The pacer of one installation.
#[derive(Debug)]
pub struct WritePacer {
    limits: PacingLimits,
    history: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl WritePacer {
    pub fn new(limits: PacingLimits) -> Self {
        WritePacer {
            limits,
            history: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more write fits, and counts it. Holding the lock while waiting makes
    /// writers go in the order they asked.
    pub async fn acquire(&self) {
        let mut history = self.history.lock().await;
        let now = Instant::now();
        while history.front().is_some_and(|t| *t + HOUR <= now) {
            history.pop_front();
        }
        let at = next_slot(&history, now, &self.limits);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        history.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_spaced_by_the_minimum_interval() {
        let now = Instant::now();
        let limits = PacingLimits {
            burst: 1,
            ..PacingLimits::default()
        };
        let h: VecDeque<Instant> = [now].into_iter().collect();
        assert_eq!(next_slot(&h, now, &limits), now + Duration::from_secs(1));
        assert_eq!(next_slot(&VecDeque::new(), now, &limits), now);
    }

    #[test]
    fn a_burst_goes_at_once_then_writes_are_spaced() {
        let now = Instant::now();
        let limits = PacingLimits::default();
        let four: VecDeque<Instant> = (0..4).map(|_| now).collect();
        assert_eq!(
            next_slot(&four, now, &limits),
            now,
            "the fifth write of a burst"
        );
        let five: VecDeque<Instant> = (0..5).map(|_| now).collect();
        assert_eq!(
            next_slot(&five, now, &limits),
            now + Duration::from_secs(5),
            "the sixth waits until the burst's first leaves its 5 s window"
        );
        // Sustained: one a second.
        let steady: VecDeque<Instant> = (0..5).map(|i| now + Duration::from_secs(i)).collect();
        let later = now + Duration::from_secs(4);
        assert_eq!(
            next_slot(&steady, later, &limits),
            now + Duration::from_secs(5)
        );
    }

    #[test]
    fn the_81st_write_in_a_minute_waits_for_the_first_to_leave_the_window() {
        let start = Instant::now();
        let limits = PacingLimits {
            min_interval: Duration::ZERO,
            ..PacingLimits::default()
        };
        let h: VecDeque<Instant> = (0..80)
            .map(|i| start + Duration::from_millis(100 * i))
            .collect();
        let now = start + Duration::from_secs(10);
        assert_eq!(next_slot(&h, now, &limits), start + MINUTE);
    }

    #[test]
    fn the_hourly_cap_holds_even_when_each_minute_is_under_its_cap() {
        let start = Instant::now();
        let limits = PacingLimits {
            min_interval: Duration::ZERO,
            ..PacingLimits::default()
        };
        // 500 writes spread over 50 minutes: 10 a minute.
        let h: VecDeque<Instant> = (0..500)
            .map(|i| start + Duration::from_secs(6 * i))
            .collect();
        let now = start + Duration::from_secs(3000);
        assert_eq!(next_slot(&h, now, &limits), start + HOUR);
    }

    #[tokio::test]
    async fn the_pacer_spaces_writes_by_the_minimum_interval() {
        let pacer = WritePacer::new(PacingLimits {
            min_interval: Duration::from_millis(50),
            burst: 1,
            ..PacingLimits::default()
        });
        let t0 = Instant::now();
        pacer.acquire().await;
        pacer.acquire().await;
        pacer.acquire().await;
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
    }
}
