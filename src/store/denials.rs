//! Denials: commands refused because their requester may not start runs, one row per requester
//! and issue. The first refusal makes the row; an instance takes the reply on by setting
//! `replied_at` before it posts, so each requester gets at most one reply per issue, across
//! every instance on the store. A reply GitHub did not take is given back, to be taken again
//! after a pause, a few times at most.

use std::time::Duration;

use sqlx::Row;

use super::{opt_u64, to_i64, Store, StoreError};
use crate::job::JobResult;
use crate::trigger::Denial;

pub(super) async fn insert_denial<'c, E>(exec: E, d: &Denial, now: i64) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let n = sqlx::query(
        "INSERT INTO denials (installation_id, repository, number, requester, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (repository, number, requester) DO NOTHING",
    )
    .bind(d.installation_id.map(to_i64))
    .bind(d.repository.to_ascii_lowercase())
    .bind(to_i64(d.number))
    .bind(d.requester.to_ascii_lowercase())
    .bind(now)
    .execute(exec)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// How often a refusal reply is tried in all, at most.
pub const MAX_REPLY_ATTEMPTS: u32 = 5;

/// A refusal taken on by one caller, and how many times its reply was tried before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenDenial {
    pub denial: Denial,
    pub attempts_before: u32,
}

impl Store {
    /// Records a refusal (the gate's: the permission API said no), and ends the requester's
    /// other commands waiting on the same issue with it, so that a flood of them costs one
    /// permission call per issue and no worker slot. `true` when it is the first refusal for
    /// this requester and issue.
    pub async fn record_denial(&self, d: &Denial, reason: &str) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut tx = self.pool.begin().await?;
        let first = insert_denial(&mut *tx, d, now).await?;
        let result = JobResult::failed(reason).to_json().to_string();
        sqlx::query(
            "UPDATE jobs SET state = 'failed', result = $1, finished_at = $2, updated_at = $2
             WHERE repository = $3 AND number = $4 AND LOWER(requester) = $5 AND state = 'queued'
                 AND source NOT IN ('closed', 'api', 'cli')",
        )
        .bind(&result)
        .bind(now)
        .bind(&d.repository)
        .bind(to_i64(d.number))
        .bind(d.requester.to_ascii_lowercase())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(first)
    }

    /// Up to `limit` refusals nobody has answered yet (and not waiting to be tried again), each
    /// taken on by this caller (no other caller gets it): the caller posts their replies.
    pub async fn take_unanswered_denials(
        &self,
        limit: u32,
    ) -> Result<Vec<TakenDenial>, StoreError> {
        let rows = sqlx::query(
            "SELECT installation_id, repository, number, requester, reply_attempts FROM denials
             WHERE replied_at IS NULL AND retry_at <= $1 ORDER BY created_at LIMIT $2",
        )
        .bind(self.now_ms())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for r in rows {
            let d = Denial {
                installation_id: opt_u64(&r, "installation_id")?,
                repository: r.try_get("repository")?,
                number: opt_u64(&r, "number")?.unwrap_or_default(),
                requester: r.try_get("requester")?,
            };
            let attempts: i64 = r.try_get("reply_attempts")?;
            let n = sqlx::query(
                "UPDATE denials SET replied_at = $1
                 WHERE repository = $2 AND number = $3 AND requester = $4 AND replied_at IS NULL",
            )
            .bind(self.now_ms())
            .bind(&d.repository)
            .bind(to_i64(d.number))
            .bind(&d.requester)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if n == 1 {
                taken.push(TakenDenial {
                    denial: d,
                    attempts_before: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(taken)
    }

    /// Gives back a refusal whose reply did not go through, to be taken again `after` from now,
    /// unless it was tried [`MAX_REPLY_ATTEMPTS`] times. `true` when it will be tried again.
    pub async fn give_back_denial(&self, d: &Denial, after: Duration) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let retry_at = now.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        let n = sqlx::query(
            "UPDATE denials SET replied_at = NULL, reply_attempts = reply_attempts + 1,
                 retry_at = $1
             WHERE repository = $2 AND number = $3 AND requester = $4
                 AND replied_at IS NOT NULL AND reply_attempts + 1 < $5",
        )
        .bind(retry_at)
        .bind(&d.repository)
        .bind(to_i64(d.number))
        .bind(&d.requester)
        .bind(i64::from(MAX_REPLY_ATTEMPTS))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
