//! Writes per installation under GitHub's documented secondary rate limits: "no more than 80
//! content-generating requests per minute and no more than 500 content-generating requests per
//! hour", and "no more than 100 concurrent requests" (held by the HTTP stack, see `stack`).
//!
//! Writes wait by class. The acknowledgement (👀 and the first progress comment) goes ahead of
//! every other queued write of the installation, progress edits go last, and each class may fill
//! only its share of a window (edits three quarters, other writes nine tenths), so that an
//! acknowledgement always finds room even when earlier runs used the rest. Replies to refused
//! requesters go after everything and fill at most a quarter. Within a class,
//! writes go in the order they asked. The window arithmetic is a pure function
//! ([`next_slot`]); [`WritePacer`] applies it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a write is, for its place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteClass {
    /// The one reply to someone who may not start runs: yields to every other write and fills
    /// at most [`REFUSAL_SHARE`] of a window, so that a flood of refused commands over many
    /// issues never spends the writes a maintainer's run needs.
    Refusal,
    /// A progress edit: coalesced by its writer, and yields to every other write.
    Edit,
    /// A reply, a pull request, a final state, a closing reaction.
    Normal,
    /// 👀 and the first progress comment: what tells the requester the command was heard.
    Ack,
}

/// The share of each window that replies to refused requesters may fill.
pub const REFUSAL_SHARE: f64 = 0.25;

#[derive(Debug, Clone, PartialEq)]
pub struct PacingLimits {
    /// Content-creating requests allowed per window: GitHub's 80 a minute and 500 an hour.
    pub windows: Vec<(Duration, usize)>,
    /// Requests in flight at once (all of them, reads too): GitHub allows 100.
    pub concurrent: usize,
    /// The share of each window that progress edits may fill.
    pub edit_share: f64,
    /// The share of each window that writes other than the acknowledgement may fill.
    pub normal_share: f64,
}

impl Default for PacingLimits {
    fn default() -> Self {
        PacingLimits {
            windows: vec![
                (Duration::from_secs(60), 80),
                (Duration::from_secs(3600), 500),
            ],
            concurrent: 100,
            edit_share: 0.75,
            normal_share: 0.9,
        }
    }
}

impl PacingLimits {
    /// How many writes of `class` a window of capacity `cap` takes (at least one).
    pub fn cap(&self, cap: usize, class: WriteClass) -> usize {
        let share = match class {
            WriteClass::Ack => 1.0,
            WriteClass::Normal => self.normal_share,
            WriteClass::Edit => self.edit_share,
            WriteClass::Refusal => REFUSAL_SHARE.min(self.edit_share),
        };
        ((cap as f64 * share.clamp(0.0, 1.0)).floor() as usize).max(1)
    }

    fn longest_window(&self) -> Duration {
        self.windows
            .iter()
            .map(|(w, _)| *w)
            .max()
            .unwrap_or_default()
    }
}

/// The earliest instant at which one more write of `class` fits, given the instants of past
/// writes (oldest first).
pub fn next_slot(
    history: &VecDeque<Instant>,
    now: Instant,
    limits: &PacingLimits,
    class: WriteClass,
) -> Instant {
    let mut at = now;
    for (window, cap) in &limits.windows {
        let cap = limits.cap(*cap, class);
        let in_window: Vec<&Instant> = history.iter().filter(|t| **t + *window > now).collect();
        if in_window.len() >= cap {
            // The write that has to leave the window first for one more to fit.
            let oldest_blocking = in_window[in_window.len() - cap];
            at = at.max(*oldest_blocking + *window);
        }
    }
    at
}

type Ticket = (Reverse<WriteClass>, u64);

#[derive(Debug, Default)]
struct State {
    history: VecDeque<Instant>,
    /// Writers waiting, the one to go next first: the highest class, then the oldest ticket.
    waiting: BTreeSet<Ticket>,
    next_ticket: u64,
}

/// The pacer of one installation.
#[derive(Debug)]
pub struct WritePacer {
    limits: PacingLimits,
    state: Mutex<State>,
    changed: Notify,
}

/// Takes a writer out of the queue if it stops waiting (its task was cancelled).
struct Queued<'a> {
    pacer: &'a WritePacer,
    ticket: Option<Ticket>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.pacer.lock().waiting.remove(&t);
            self.pacer.changed.notify_waiters();
        }
    }
}

impl WritePacer {
    pub fn new(limits: PacingLimits) -> Self {
        WritePacer {
            limits,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until one more write of `class` fits and it is this writer's turn, and counts it.
    pub async fn acquire(&self, class: WriteClass) {
        let ticket = {
            let mut s = self.lock();
            s.next_ticket += 1;
            let t = (Reverse(class), s.next_ticket);
            s.waiting.insert(t);
            t
        };
        let mut queued = Queued {
            pacer: self,
            ticket: Some(ticket),
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change made meanwhile is not missed.
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.lock();
                let now = Instant::now();
                let keep = self.limits.longest_window();
                while s.history.front().is_some_and(|t| *t + keep <= now) {
                    s.history.pop_front();
                }
                if s.waiting.first() == Some(&ticket) {
                    let at = next_slot(&s.history, now, &self.limits, class);
                    if at <= now {
                        s.history.push_back(now);
                        s.waiting.remove(&ticket);
                        queued.ticket = None;
                        drop(s);
                        self.changed.notify_waiters();
                        return;
                    }
                    Some(at)
                } else {
                    None
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Writes counted in the longest window (tests, metrics).
    pub fn recent_writes(&self) -> usize {
        self.lock().history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_documented_limits_are_the_defaults() {
        let l = PacingLimits::default();
        assert_eq!(l.windows, vec![(MINUTE, 80), (HOUR, 500)]);
        assert_eq!(l.concurrent, 100);
        assert_eq!(
            (
                l.cap(80, WriteClass::Ack),
                l.cap(80, WriteClass::Normal),
                l.cap(80, WriteClass::Edit),
                l.cap(80, WriteClass::Refusal)
            ),
            (80, 72, 60, 20)
        );
    }

    #[test]
    fn writes_go_at_once_until_a_window_is_full() {
        let now = Instant::now();
        let limits = PacingLimits::default();
        let h: VecDeque<Instant> = (0..59).map(|_| now).collect();
        assert_eq!(next_slot(&h, now, &limits, WriteClass::Edit), now);
        assert_eq!(
            next_slot(&VecDeque::new(), now, &limits, WriteClass::Ack),
            now
        );
    }

    #[test]
    fn the_81st_write_in_a_minute_waits_for_the_first_to_leave_the_window() {
        let start = Instant::now();
        let limits = PacingLimits::default();
        let h: VecDeque<Instant> = (0..80)
            .map(|i| start + Duration::from_millis(100 * i))
            .collect();
        let now = start + Duration::from_secs(10);
        assert_eq!(next_slot(&h, now, &limits, WriteClass::Ack), start + MINUTE);
    }

    #[test]
    fn an_acknowledgement_fits_where_edits_and_other_writes_do_not() {
        let start = Instant::now();
        let limits = PacingLimits::default();
        let h: VecDeque<Instant> = (0..72).map(|_| start).collect();
        let now = start + Duration::from_secs(1);
        assert_eq!(next_slot(&h, now, &limits, WriteClass::Ack), now);
        assert_eq!(
            next_slot(&h, now, &limits, WriteClass::Normal),
            start + MINUTE
        );
        assert_eq!(
            next_slot(&h, now, &limits, WriteClass::Edit),
            start + MINUTE
        );
    }

    #[test]
    fn the_hourly_cap_holds_even_when_each_minute_is_under_its_cap() {
        let start = Instant::now();
        let limits = PacingLimits::default();
        // 500 writes spread over 50 minutes: 10 a minute.
        let h: VecDeque<Instant> = (0..500)
            .map(|i| start + Duration::from_secs(6 * i))
            .collect();
        let now = start + Duration::from_secs(3000);
        assert_eq!(next_slot(&h, now, &limits, WriteClass::Ack), start + HOUR);
    }

    fn small(window: Duration, cap: usize) -> PacingLimits {
        PacingLimits {
            windows: vec![(window, cap)],
            edit_share: 0.5,
            normal_share: 0.5,
            ..PacingLimits::default()
        }
    }

    #[tokio::test]
    async fn a_full_window_makes_the_next_write_wait() {
        let pacer = WritePacer::new(small(Duration::from_millis(200), 2));
        let t0 = Instant::now();
        pacer.acquire(WriteClass::Ack).await;
        pacer.acquire(WriteClass::Ack).await;
        assert!(t0.elapsed() < Duration::from_millis(100));
        pacer.acquire(WriteClass::Ack).await;
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn the_acknowledgement_goes_ahead_of_queued_edits() {
        // One edit fits per window; three are queued; the acknowledgement asked last goes first.
        let pacer = Arc::new(WritePacer::new(small(Duration::from_millis(300), 2)));
        pacer.acquire(WriteClass::Edit).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, class) in [
            (1, WriteClass::Edit),
            (2, WriteClass::Edit),
            (3, WriteClass::Ack),
        ] {
            let (pacer, order) = (pacer.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                pacer.acquire(class).await;
                order.lock().expect("order").push((i, Instant::now()));
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("order").clone();
        let ids: Vec<u32> = order.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, vec![3, 1, 2], "{order:?}");
    }

    #[tokio::test]
    async fn a_cancelled_writer_leaves_the_queue() {
        let pacer = Arc::new(WritePacer::new(small(Duration::from_millis(300), 1)));
        pacer.acquire(WriteClass::Ack).await;
        let waiting = {
            let p = pacer.clone();
            tokio::spawn(async move { p.acquire(WriteClass::Normal).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        assert!(pacer.lock().waiting.is_empty());
    }
}
