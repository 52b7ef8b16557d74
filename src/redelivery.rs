//! Lost deliveries, asked for again. GitHub does not redeliver a webhook by itself: a delivery
//! that found the server stopped (no answer) or its store down (503) is only recorded in the
//! app's delivery log. On start and every [`SweepSettings::every`], one instance (a store lease,
//! so several instances on one Postgres sweep once between them) reads that log as the app
//! (`GET /app/hook/deliveries`, newest first, following the cursor), looking back at most
//! [`SweepSettings::look_back`] (72 hours), and asks GitHub to send again
//! (`POST /app/hook/deliveries/{id}/attempts`) every event that no attempt delivered with a 2xx
//! and whose id (`X-GitHub-Delivery`, kept by a redelivery) this store never saw, at most
//! [`SweepSettings::max_redeliveries`] per sweep. The redelivery comes back through the front
//! door like any delivery, and the store's dedupe on the delivery id makes it run once.
//!
//! [`pick`] is the pure decision; [`sweep`] does one round; [`spawn`] keeps sweeping.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tracing::Instrument as _;

use crate::github::{GithubApp, GithubError, HookDelivery};
use crate::store::{Store, StoreError};

/// The lease's name in the store.
const LEASE: &str = "redelivery-sweep";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// The first sweep, after the server starts (long enough for it to be listening when
    /// GitHub sends the redeliveries).
    pub first_after: Duration,
    /// Time between sweeps.
    pub every: Duration,
    /// How far back the log is read (GitHub keeps three days of deliveries).
    pub look_back: Duration,
    /// Redeliveries asked for in one sweep, at most.
    pub max_redeliveries: usize,
    /// Pages of the log read in one sweep, at most.
    pub max_pages: usize,
    pub per_page: u8,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            first_after: Duration::from_secs(3),
            every: Duration::from_secs(300),
            look_back: Duration::from_secs(72 * 3600),
            max_redeliveries: 25,
            max_pages: 20,
            per_page: 100,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Another instance holds the sweep's lease: this one did nothing.
    pub skipped: bool,
    /// Delivery attempts read from the log.
    pub listed: usize,
    /// Events asked for again (their GUIDs).
    pub redelivered: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading or redelivering GitHub's deliveries failed: {0}")]
    Github(#[from] GithubError),
    #[error("the store could not say which deliveries it has: {0}")]
    Store(#[from] StoreError),
}

/// Pure: the attempts to redeliver, one per event (its newest attempt), newest events first:
/// events with no 2xx attempt, not in `stored`, delivered within `look_back` of `now_unix`, at
/// most `max`.
pub fn pick(
    attempts: &[HookDelivery],
    stored: &HashSet<String>,
    now_unix: u64,
    look_back: Duration,
    max: usize,
) -> Vec<HookDelivery> {
    let oldest = now_unix.saturating_sub(look_back.as_secs());
    let mut delivered: HashSet<&str> = HashSet::new();
    let mut newest: HashMap<&str, &HookDelivery> = HashMap::new();
    for a in attempts {
        if a.succeeded() {
            delivered.insert(&a.guid);
        }
        let keep = newest
            .get(a.guid.as_str())
            .is_none_or(|n| a.delivered_at_unix > n.delivered_at_unix);
        if keep {
            newest.insert(&a.guid, a);
        }
    }
    let mut lost: Vec<&HookDelivery> = newest
        .into_values()
        .filter(|a| !delivered.contains(a.guid.as_str()))
        .filter(|a| !stored.contains(&a.guid))
        .filter(|a| a.delivered_at_unix >= oldest)
        .collect();
    lost.sort_by(|a, b| {
        b.delivered_at_unix
            .cmp(&a.delivered_at_unix)
            .then(b.id.cmp(&a.id))
    });
    lost.into_iter().take(max).cloned().collect()
}

/// One sweep, as `owner`.
pub async fn sweep(
    app: &GithubApp,
    store: &Store,
    owner: &str,
    settings: &SweepSettings,
) -> Result<SweepReport, SweepError> {
    // Held for a little less than the time between sweeps: the next sweep, by whichever
    // instance, comes once it has run out.
    let ttl = settings.every.mul_f64(0.9);
    if !store.try_lease(LEASE, owner, ttl).await? {
        return Ok(SweepReport {
            skipped: true,
            ..SweepReport::default()
        });
    }
    let now = store.clock().unix_secs();
    let oldest = now.saturating_sub(settings.look_back.as_secs());
    let mut attempts = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..settings.max_pages {
        let page = app
            .hook_deliveries(cursor.as_deref(), settings.per_page)
            .await?;
        let past_window = page.deliveries.iter().any(|d| d.delivered_at_unix < oldest);
        attempts.extend(page.deliveries);
        match page.next_cursor {
            Some(next) if !past_window => cursor = Some(next),
            _ => break,
        }
    }
    let guids: Vec<String> = attempts
        .iter()
        .filter(|a| !a.succeeded())
        .map(|a| a.guid.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let stored = store.stored_deliveries(&guids).await?;
    let lost = pick(
        &attempts,
        &stored,
        now,
        settings.look_back,
        settings.max_redeliveries,
    );
    let mut report = SweepReport {
        listed: attempts.len(),
        ..SweepReport::default()
    };
    for a in lost {
        match app.redeliver(a.id).await {
            Ok(()) => {
                tracing::info!(guid = %a.guid, event = %a.event, status_code = a.status_code, "asked GitHub to redeliver a lost delivery");
                report.redelivered.push(a.guid);
            }
            // One refused redelivery (GitHub no longer has it) does not stop the others.
            Err(e) => tracing::warn!(guid = %a.guid, error = %e, "GitHub would not redeliver"),
        }
    }
    Ok(report)
}

/// Sweeps shortly after start, then every `settings.every`, for as long as the process runs.
pub fn spawn(
    app: GithubApp,
    store: Store,
    owner: String,
    settings: SweepSettings,
) -> tokio::task::JoinHandle<()> {
    let sweeping = async move {
        tokio::time::sleep(settings.first_after).await;
        loop {
            match sweep(&app, &store, &owner, &settings).await {
                Ok(r) if r.skipped => tracing::debug!("another instance sweeps"),
                Ok(r) => tracing::info!(
                    listed = r.listed,
                    redelivered = r.redelivered.len(),
                    "swept GitHub's delivery log"
                ),
                Err(e) => tracing::warn!(error = %e, "the lost-delivery sweep failed; next time"),
            }
            tokio::time::sleep(settings.every).await;
        }
    };
    tokio::spawn(sweeping.instrument(tracing::info_span!("redelivery")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn attempt(id: u64, guid: &str, at: u64, status_code: u16) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at_unix: at,
            redelivery: false,
            status: if status_code == 0 {
                "failed to connect".into()
            } else {
                "OK".into()
            },
            status_code,
            event: "issue_comment".into(),
            action: Some("created".into()),
            installation_id: Some(1),
        }
    }

    fn ids(picked: &[HookDelivery]) -> Vec<u64> {
        picked.iter().map(|a| a.id).collect()
    }

    #[test]
    fn only_events_no_attempt_delivered_and_the_store_never_saw_come_back() {
        let log = vec![
            attempt(1, "ok", NOW - 60, 202),
            attempt(2, "down", NOW - 50, 0),
            attempt(3, "store-down", NOW - 40, 503),
            attempt(4, "stored", NOW - 30, 502),
            attempt(5, "retried-ok", NOW - 20, 503),
            attempt(6, "retried-ok", NOW - 10, 202),
        ];
        let stored: HashSet<String> = ["stored".to_string()].into();
        let picked = pick(&log, &stored, NOW, Duration::from_secs(3 * DAY), 10);
        assert_eq!(ids(&picked), vec![3, 2]);
    }

    #[test]
    fn an_event_is_asked_for_once_by_its_newest_attempt() {
        let log = vec![
            attempt(10, "lost", NOW - 300, 0),
            attempt(11, "lost", NOW - 100, 503),
        ];
        let picked = pick(&log, &HashSet::new(), NOW, Duration::from_secs(DAY), 10);
        assert_eq!(ids(&picked), vec![11]);
    }

    #[test]
    fn the_window_and_the_bound_hold() {
        let mut log = vec![attempt(1, "too-old", NOW - 4 * DAY, 0)];
        for i in 0..30 {
            log.push(attempt(100 + i, &format!("lost-{i}"), NOW - 1000 + i, 0));
        }
        let picked = pick(&log, &HashSet::new(), NOW, Duration::from_secs(3 * DAY), 5);
        assert_eq!(ids(&picked), vec![129, 128, 127, 126, 125]);
    }
}
