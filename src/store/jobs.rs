//! Jobs: queued → running (under a lease the worker renews) → succeeded | failed | cancelled.
//! Claims are one UPDATE over a sub-select (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite has one
//! writer), and a partial unique index keeps one run at a time per issue or pull request.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_u64, to_i64, Backend, Store, StoreError};
use crate::job::{CancelReport, JobKind, JobRequest, JobResult, JobSource, JobSpec, JobState};

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// What the job is asked to do (its `kind` column and `context` JSON, typed).
    pub spec: JobSpec,
    pub source: JobSource,
    pub state: JobState,
    pub installation_id: Option<u64>,
    pub repository: String,
    pub clone_url: Option<String>,
    pub default_branch: Option<String>,
    pub number: Option<u64>,
    pub is_pull_request: bool,
    pub comment_id: Option<u64>,
    pub requester: String,
    pub prompt: String,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub result: Option<JobResult>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        self.spec.kind()
    }
}

/// Jobs by state (metrics, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

pub(super) const COLUMNS: &str = "id, kind, source, state, installation_id, repository, clone_url, default_branch, number, \
    is_pull_request, comment_id, requester, prompt, context, attempts, lease_owner, lease_expires_at, \
    cancel_requested, result, created_at, started_at, finished_at";

/// Kinds that run the agent, and so take the one-per-target slot.
const AGENT_KINDS: &str = "('run', 'iterate')";

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

pub(super) fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let kind: String = row.try_get("kind")?;
    let source: String = row.try_get("source")?;
    let state: String = row.try_get("state")?;
    let context: String = row.try_get("context")?;
    let result: Option<String> = row.try_get("result")?;
    let kind: JobKind = kind.parse().map_err(|e| corrupt("jobs.kind", e))?;
    Ok(Job {
        id: row.try_get("id")?,
        spec: JobSpec::from_stored(kind, &context).map_err(|e| corrupt("jobs.context", e))?,
        source: source.parse().map_err(|e| corrupt("jobs.source", e))?,
        state: state.parse().map_err(|e| corrupt("jobs.state", e))?,
        installation_id: opt_u64(row, "installation_id")?,
        repository: row.try_get("repository")?,
        clone_url: row.try_get("clone_url")?,
        default_branch: row.try_get("default_branch")?,
        number: opt_u64(row, "number")?,
        is_pull_request: row.try_get::<i64, _>("is_pull_request")? != 0,
        comment_id: opt_u64(row, "comment_id")?,
        requester: row.try_get("requester")?,
        prompt: row.try_get("prompt")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        result: result
            .map(|r| JobResult::from_stored(&r).map_err(|e| corrupt("jobs.result", e)))
            .transpose()?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub(super) async fn insert_job<'c, E>(
    exec: E,
    job: &JobRequest,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<String, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    // Time-ordered ids (UUIDv7, monotonic within the process): jobs queued in the same
    // millisecond are still claimed in the order they came.
    let id = uuid::Uuid::now_v7().simple().to_string();
    sqlx::query(
        "INSERT INTO jobs (id, delivery_id, kind, source, state, installation_id, repository, clone_url,
             default_branch, number, is_pull_request, comment_id, requester, prompt, context, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
    )
    .bind(&id)
    .bind(delivery_id)
    .bind(job.kind().as_str())
    .bind(job.source.as_str())
    .bind(job.installation_id.map(to_i64))
    .bind(&job.repository)
    .bind(job.clone_url.as_deref())
    .bind(job.default_branch.as_deref())
    .bind(job.number.map(to_i64))
    .bind(i64::from(job.is_pull_request))
    .bind(job.comment_id.map(to_i64))
    .bind(&job.requester)
    .bind(&job.prompt)
    .bind(job.spec.context_json())
    .bind(now)
    .execute(exec)
    .await?;
    Ok(id)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Queues a job that came from elsewhere than a webhook (the HTTP API, the CLI).
    pub async fn insert_job(&self, job: &JobRequest) -> Result<String, StoreError> {
        insert_job(&self.pool, job, None, self.now_ms()).await
    }

    pub async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Every job of an issue or pull request, oldest first.
    pub async fn jobs_for(&self, repository: &str, number: u64) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE repository = $1 AND number = $2 ORDER BY created_at, id"
        ))
        .bind(repository)
        .bind(to_i64(number))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Claims the oldest queued job that may start now, for `owner`, under a lease. Agent runs
    /// wait while another agent run of the same issue or pull request is running.
    pub async fn claim_next(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Job>, StoreError> {
        self.claim_next_in(owner, lease, None).await
    }

    /// [`Store::claim_next`] among agent runs only (`Some(true)`) or the other kinds only
    /// (`Some(false)`: cancels, closes, help, usage errors, which the control lane answers
    /// without waiting for a run slot).
    pub async fn claim_next_in(
        &self,
        owner: &str,
        lease: Duration,
        agent: Option<bool>,
    ) -> Result<Option<Job>, StoreError> {
        let kinds = match agent {
            None => "",
            Some(true) => "AND j.kind IN ('run', 'iterate')",
            Some(false) => "AND j.kind NOT IN ('run', 'iterate')",
        };
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE state = 'queued' AND id = (
                 SELECT j.id FROM jobs j
                 WHERE j.state = 'queued' {kinds} AND (j.kind NOT IN {AGENT_KINDS} OR NOT EXISTS (
                     SELECT 1 FROM jobs r WHERE r.state = 'running' AND r.kind IN {AGENT_KINDS}
                         AND r.repository = j.repository AND r.number = j.number))
                 ORDER BY j.created_at, j.id
                 LIMIT 1 {lock})
             RETURNING {COLUMNS}"
        );
        // A concurrent claim of the same target loses on the unique index: try again, a few
        // times, so that another eligible job is still found.
        for _ in 0..5 {
            let now = self.now_ms();
            let res = sqlx::query(&sql)
                .bind(owner)
                .bind(now + crate::clock::duration_ms(lease))
                .bind(now)
                .fetch_optional(&self.pool)
                .await;
            match res {
                Ok(row) => return row.as_ref().map(job_from_row).transpose(),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Extends the lease of a job this owner holds. `false`: the lease was lost (expired and
    /// taken, or the job was finished elsewhere), so the worker must stop.
    pub async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        )
        .bind(now + crate::clock::duration_ms(lease))
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends a running job held by `owner` in a final state with its result.
    pub async fn finish(
        &self,
        id: &str,
        owner: &str,
        state: JobState,
        result: &JobResult,
    ) -> Result<bool, StoreError> {
        debug_assert!(state.is_final());
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET state = $1, result = $2, finished_at = $3, updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(result.to_json().to_string())
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends a job that never started (refused while it waited) in its result's state. `false`:
    /// it is not queued any more (a worker took it).
    pub async fn end_queued(&self, id: &str, result: &JobResult) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET state = $1, result = $2, finished_at = $3, updated_at = $3
             WHERE id = $4 AND state = 'queued'",
        )
        .bind(result.state().as_str())
        .bind(result.to_json().to_string())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives a running job back to the queue (graceful shutdown): another worker starts it again.
    pub async fn release(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(self.now_ms())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Cancels the agent jobs of an issue or pull request: queued ones at once, running ones by
    /// flag (their worker sees it and stops). Returns (cancelled queued, flagged running).
    pub async fn request_cancel(
        &self,
        repository: &str,
        number: u64,
        reason: &str,
    ) -> Result<(u64, u64), StoreError> {
        let now = self.now_ms();
        let mut tx = self.pool.begin().await?;
        let queued = sqlx::query(&format!(
            "UPDATE jobs SET state = 'cancelled', result = $1, finished_at = $2, updated_at = $2
             WHERE repository = $3 AND number = $4 AND state = 'queued' AND kind IN {AGENT_KINDS}"
        ))
        .bind(
            JobResult::Cancelled(CancelReport {
                reason: Some(reason.to_owned()),
                ..CancelReport::default()
            })
            .to_json()
            .to_string(),
        )
        .bind(now)
        .bind(repository)
        .bind(to_i64(number))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let running = sqlx::query(&format!(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1
             WHERE repository = $2 AND number = $3 AND state = 'running' AND kind IN {AGENT_KINDS}"
        ))
        .bind(now)
        .bind(repository)
        .bind(to_i64(number))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((queued, running))
    }

    /// Whether cancellation was asked for a job.
    pub async fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT cancel_requested FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("cancel_requested")? != 0,
            None => false,
        })
    }

    /// Running jobs whose lease expired (their worker crashed): queued again if they have
    /// attempts left, else returned so the caller can fail them with a comment.
    pub async fn recover_expired(
        &self,
        max_attempts: u32,
    ) -> Result<(Vec<Job>, Vec<Job>), StoreError> {
        let now = self.now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND lease_expires_at < $1"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut requeued = Vec::new();
        let mut exhausted = Vec::new();
        for row in &rows {
            let job = job_from_row(row)?;
            let owner = job.lease_owner.clone().unwrap_or_default();
            if job.attempts < max_attempts {
                if self.release(&job.id, &owner).await? {
                    requeued.push(job);
                }
            } else {
                exhausted.push(job);
            }
        }
        Ok((requeued, exhausted))
    }

    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = JobCounts::default();
        for r in rows {
            let state: String = r.try_get("state")?;
            let n: i64 = r.try_get("n")?;
            match state.as_str() {
                "queued" => c.queued = n,
                "running" => c.running = n,
                "succeeded" => c.succeeded = n,
                "failed" => c.failed = n,
                "cancelled" => c.cancelled = n,
                _ => {}
            }
        }
        Ok(c)
    }
}
