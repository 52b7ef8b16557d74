//! The retention sweep: every [`EVERY`], rows older than `BACKSPACE_RETENTION_DAYS` are deleted
//! (deliveries, finished jobs and their run events, replay keys, denials), in bounded batches
//! with a pause between them so that deliveries and claims keep their turn at the store. Queued
//! and running jobs, and the deliveries they came from, are kept whatever their age.

use std::time::Duration;

use tracing::Instrument as _;

use crate::store::{Pruned, Store, StoreError};

/// Time between sweeps.
pub const EVERY: Duration = Duration::from_secs(3600);
/// The first sweep, after the server starts.
const FIRST_AFTER: Duration = Duration::from_secs(60);
/// Rows of each table deleted per batch.
pub const BATCH: u32 = 500;
/// The pause between two batches.
const PAUSE: Duration = Duration::from_millis(50);
/// Batches per sweep at most (the next sweep goes on where this one stopped).
const MAX_BATCHES: usize = 200;

/// Deletes what is older than `days` by the store's clock, batch after batch, until nothing is
/// left to delete or [`MAX_BATCHES`] ran.
pub async fn sweep(store: &Store, days: u32, batch: u32) -> Result<Pruned, StoreError> {
    let cutoff = store.clock().unix_ms() - i64::from(days) * 86_400_000;
    let mut total = Pruned::default();
    for _ in 0..MAX_BATCHES {
        let pruned = store.prune_before(cutoff, batch).await?;
        total.add(pruned);
        if pruned.total() == 0 {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(total)
}

/// Sweeps in the background for as long as the process runs.
pub fn spawn(store: Store, days: u32) {
    let task = async move {
        tokio::time::sleep(FIRST_AFTER).await;
        loop {
            match sweep(&store, days, BATCH).await {
                Ok(p) if p.total() > 0 => tracing::info!(
                    deliveries = p.deliveries,
                    jobs = p.jobs,
                    run_events = p.run_events,
                    replay_keys = p.replay_keys,
                    denials = p.denials,
                    days,
                    "pruned old rows"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the retention sweep failed; trying again later")
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    tokio::spawn(task.instrument(tracing::info_span!("retention")));
}
