//! Retention: deliveries, finished jobs with their run events, replay keys and denials older
//! than a cut-off are deleted, a bounded batch of each table per call, so that a sweep never
//! holds SQLite's one writer (or a Postgres lock) for long. Queued and running jobs are never
//! deleted, nor the deliveries they came from.

use super::{Store, StoreError};

/// Rows deleted by one call, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub run_events: u64,
    pub jobs: u64,
    pub deliveries: u64,
    pub replay_keys: u64,
    pub denials: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.run_events + self.jobs + self.deliveries + self.replay_keys + self.denials
    }

    pub fn add(&mut self, other: Pruned) {
        self.run_events += other.run_events;
        self.jobs += other.jobs;
        self.deliveries += other.deliveries;
        self.replay_keys += other.replay_keys;
        self.denials += other.denials;
    }
}

/// One batch of each table, in an order that leaves no dangling row: events before their job,
/// jobs before their delivery. `$1` is the cut-off (Unix ms), `$2` the batch.
const BATCHES: [&str; 5] = [
    "DELETE FROM run_events WHERE (run_id, seq) IN (
         SELECT e.run_id, e.seq FROM run_events e JOIN jobs j ON j.id = e.run_id
         WHERE j.finished_at < $1 AND j.state IN ('succeeded', 'failed', 'cancelled') LIMIT $2)",
    "DELETE FROM jobs WHERE id IN (
         SELECT j.id FROM jobs j
         WHERE j.finished_at < $1 AND j.state IN ('succeeded', 'failed', 'cancelled')
             AND NOT EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = j.id)
         LIMIT $2)",
    "DELETE FROM deliveries WHERE delivery_id IN (
         SELECT d.delivery_id FROM deliveries d WHERE d.received_at < $1
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id)
         LIMIT $2)",
    "DELETE FROM replay_keys WHERE replay_key IN (
         SELECT replay_key FROM replay_keys WHERE created_at < $1 LIMIT $2)",
    "DELETE FROM denials WHERE (repository, number, requester) IN (
         SELECT repository, number, requester FROM denials WHERE created_at < $1 LIMIT $2)",
];

impl Store {
    /// Deletes up to `batch` rows of each table older than `cutoff_ms` (Unix ms).
    pub async fn prune_before(&self, cutoff_ms: i64, batch: u32) -> Result<Pruned, StoreError> {
        let mut n = [0u64; BATCHES.len()];
        for (count, sql) in n.iter_mut().zip(BATCHES) {
            *count = self.delete(sql, cutoff_ms, i64::from(batch)).await?;
        }
        let [run_events, jobs, deliveries, replay_keys, denials] = n;
        Ok(Pruned {
            run_events,
            jobs,
            deliveries,
            replay_keys,
            denials,
        })
    }

    async fn delete(&self, sql: &str, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql)
            .bind(cutoff_ms)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
