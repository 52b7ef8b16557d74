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

const FINAL: &str = "('succeeded', 'failed', 'cancelled')";

impl Store {
    /// Deletes up to `batch` rows of each table older than `cutoff_ms` (Unix ms). Events go
    /// before their job, and jobs before their delivery, so each call leaves no dangling row.
    pub async fn prune_before(&self, cutoff_ms: i64, batch: u32) -> Result<Pruned, StoreError> {
        let limit = i64::from(batch);
        let run_events = self
            .delete(
                &format!(
                    "DELETE FROM run_events WHERE (run_id, seq) IN (
                         SELECT e.run_id, e.seq FROM run_events e JOIN jobs j ON j.id = e.run_id
                         WHERE j.finished_at < $1 AND j.state IN {FINAL} LIMIT $2)"
                ),
                cutoff_ms,
                limit,
            )
            .await?;
        let jobs = self
            .delete(
                &format!(
                    "DELETE FROM jobs WHERE id IN (
                         SELECT j.id FROM jobs j WHERE j.finished_at < $1 AND j.state IN {FINAL}
                             AND NOT EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = j.id)
                         LIMIT $2)"
                ),
                cutoff_ms,
                limit,
            )
            .await?;
        let deliveries = self
            .delete(
                "DELETE FROM deliveries WHERE delivery_id IN (
                     SELECT d.delivery_id FROM deliveries d WHERE d.received_at < $1
                         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id)
                     LIMIT $2)",
                cutoff_ms,
                limit,
            )
            .await?;
        let replay_keys = self
            .delete(
                "DELETE FROM replay_keys WHERE replay_key IN (
                     SELECT replay_key FROM replay_keys WHERE created_at < $1 LIMIT $2)",
                cutoff_ms,
                limit,
            )
            .await?;
        let denials = self
            .delete(
                "DELETE FROM denials WHERE (repository, number, requester) IN (
                     SELECT repository, number, requester FROM denials WHERE created_at < $1
                     LIMIT $2)",
                cutoff_ms,
                limit,
            )
            .await?;
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
