//! What the background chores ask of the store: named leases (one instance at a time sweeps
//! for lost deliveries, on SQLite and Postgres alike), the delivery ids already stored (a lost
//! delivery is one GitHub recorded and this store never saw), and the acknowledgement of queued
//! jobs (👀 and the progress comment of a job that waits for a worker, made once).

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;

use super::jobs::{job_from_row, COLUMNS};
use super::{Store, StoreError};
use crate::store::Job;

/// Ids asked about at once (well under every database's limit on bound parameters).
const IDS_PER_QUERY: usize = 100;

impl Store {
    /// Takes (or keeps) the lease `name` for `owner` until `ttl` from now, when it is free,
    /// expired, or already `owner`'s. `false`: another owner holds it.
    pub async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let until = now + crate::clock::duration_ms(ttl);
        let taken = sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4 OR leases.owner = excluded.owner",
        )
        .bind(name)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// Which of `ids` are stored deliveries.
    pub async fn stored_deliveries(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut known = HashSet::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT delivery_id FROM deliveries WHERE delivery_id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                known.insert(row.try_get::<String, _>("delivery_id")?);
            }
        }
        Ok(known)
    }

    /// Queued agent jobs on an issue or pull request, oldest first, waiting longer than
    /// `waited` and not yet acknowledged.
    pub async fn unacknowledged_jobs(
        &self,
        waited: Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let before = self.now_ms() - crate::clock::duration_ms(waited);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs
             WHERE state = 'queued' AND acknowledged_at IS NULL AND kind IN ('run', 'iterate')
                 AND number IS NOT NULL AND created_at <= $1
             ORDER BY created_at, id LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Marks job `id` acknowledged; `true` for the one caller that did, `false` for every
    /// later one (whoever made the acknowledgement, the others must not make it again). A job
    /// left to its worker ([`Store::pass_acknowledgement`]) is still acknowledged once.
    pub async fn acknowledge(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET acknowledged_at = $1
             WHERE id = $2 AND (acknowledged_at IS NULL OR acknowledged_at < 0)",
        )
        .bind(self.now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Marks job `id` as looked at and left to its worker (`acknowledged_at` -1): the
    /// acknowledgement lane does not ask about it again; the worker's announce still
    /// acknowledges it.
    pub async fn pass_acknowledgement(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET acknowledged_at = -1 WHERE id = $1 AND acknowledged_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
