//! A small pool of warm containers: created, started and idle, with an empty `/workspace`, so
//! a run's sandbox skips container creation and start-up. Each container serves one run only
//! and is never given back; stale ones are replaced, so none outlives the reaper's age limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warm containers older than this are removed instead of handed out.
pub const MAX_WARM_AGE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
struct Warm {
    id: String,
    born: Instant,
}

/// The warm containers of one [`super::Sandboxes`] (one image, one set of limits).
#[derive(Debug, Default)]
pub struct Pool {
    warm: Mutex<Vec<Warm>>,
}

impl Pool {
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn put(&self, id: String) {
        self.lock().push(Warm {
            id,
            born: Instant::now(),
        });
    }

    /// A fresh warm container, and the stale ones met on the way (for the caller to remove).
    pub fn take(&self) -> (Option<String>, Vec<String>) {
        let mut warm = self.lock();
        let mut stale = Vec::new();
        while let Some(w) = warm.pop() {
            if w.born.elapsed() < MAX_WARM_AGE {
                return (Some(w.id), stale);
            }
            stale.push(w.id);
        }
        (None, stale)
    }

    /// Everything in the pool, emptying it.
    pub fn drain(&self) -> Vec<String> {
        self.lock().drain(..).map(|w| w.id).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.warm
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_hands_out_each_container_once() {
        let pool = Pool::default();
        pool.put("a".into());
        pool.put("b".into());
        let (first, _) = pool.take();
        let (second, _) = pool.take();
        let (third, _) = pool.take();
        assert_ne!(first, second);
        assert!(first.is_some() && second.is_some());
        assert_eq!(third, None);
    }

    #[test]
    fn drain_empties_the_pool() {
        let pool = Pool::default();
        pool.put("a".into());
        assert_eq!(pool.drain(), vec!["a".to_string()]);
        assert_eq!(pool.count(), 0);
    }
}
