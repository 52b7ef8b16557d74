//! Deliveries: each verified delivery is written once, with what it caused (a job, an
//! installation change, or nothing), in one transaction, before ingress answers.

use std::collections::BTreeSet;

use sqlx::Row;

use super::{jobs, to_i64, Store, StoreError};
use crate::job::JobRequest;
use crate::trigger::Denial;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository: Option<String>,
    /// What makes this delivery's request the same one again under another delivery id (its
    /// body's digest, the comment's id and body, the label event): if any was stored before,
    /// the delivery is recorded as a replay and causes nothing.
    pub replay_keys: Vec<String>,
}

/// The outcome stored for a replayed delivery.
pub const REPLAY_OUTCOME: &str = "ignored: a replay of an earlier delivery";

/// An installation created, deleted, suspended or unsuspended, or repositories added or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationChange {
    pub id: u64,
    pub account: String,
    /// `active`, `suspended` or `deleted`; `None` keeps the stored state.
    pub state: Option<&'static str>,
    /// The whole list (on `created`), replacing what was stored.
    pub repositories: Option<Vec<String>>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// What a delivery causes besides being recorded.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryEffect<'a> {
    /// Recorded only; the reason is kept in `outcome`.
    Nothing {
        reason: &'a str,
    },
    Job(&'a JobRequest),
    Installation(&'a InstallationChange),
    /// A command its requester plainly may not give: recorded for their one reply, no job.
    Denied(&'a Denial),
}

/// The outcome stored for a command refused at the door.
pub const DENIED_OUTCOME: &str = "ignored: the requester has no write access";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Stored {
        job_id: Option<String>,
        /// Jobs cancelled because their installation went away.
        cancelled_jobs: u64,
    },
    /// This delivery id was stored before: nothing new was written.
    Duplicate,
    /// A new delivery id, but a request seen before: recorded, and nothing else.
    Replay,
}

impl Store {
    /// Stores a delivery and its effect in one transaction. A delivery id seen before writes
    /// nothing and answers `Duplicate`, also when many copies race.
    pub async fn record_delivery(
        &self,
        d: &NewDelivery,
        effect: DeliveryEffect<'_>,
    ) -> Result<DeliveryOutcome, StoreError> {
        let now = self.now_ms();
        let outcome = match effect {
            DeliveryEffect::Nothing { reason } => format!("ignored: {reason}"),
            DeliveryEffect::Job(_) => "queued".to_owned(),
            DeliveryEffect::Installation(_) => "recorded".to_owned(),
            DeliveryEffect::Denied(_) => DENIED_OUTCOME.to_owned(),
        };
        let insert = sqlx::query(
            "INSERT INTO deliveries (delivery_id, event, action, installation_id, repository, received_at, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(&d.delivery_id)
        .bind(&d.event)
        .bind(d.action.as_deref())
        .bind(d.installation_id.map(to_i64))
        .bind(d.repository.as_deref())
        .bind(now)
        .bind(&outcome);
        // Most deliveries cause nothing: they are written in groups (see `batch`).
        if let DeliveryEffect::Nothing { .. } = effect {
            let stored = self.deliveries.insert(d.clone(), outcome, now).await?;
            return Ok(if stored {
                DeliveryOutcome::Stored {
                    job_id: None,
                    cancelled_jobs: 0,
                }
            } else {
                DeliveryOutcome::Duplicate
            });
        }
        let mut tx = self.pool.begin().await?;
        let inserted = insert.execute(&mut *tx).await?.rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(DeliveryOutcome::Duplicate);
        }
        if is_replay(&mut tx, d, now).await? {
            sqlx::query("UPDATE deliveries SET outcome = $1 WHERE delivery_id = $2")
                .bind(REPLAY_OUTCOME)
                .bind(&d.delivery_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(DeliveryOutcome::Replay);
        }
        let mut job_id = None;
        let mut cancelled_jobs = 0;
        match effect {
            DeliveryEffect::Nothing { .. } => {}
            DeliveryEffect::Job(job) => {
                job_id = Some(jobs::insert_job(&mut *tx, job, Some(&d.delivery_id), now).await?);
            }
            DeliveryEffect::Installation(change) => {
                cancelled_jobs = apply_installation_change(&mut tx, change, now).await?;
            }
            DeliveryEffect::Denied(denial) => {
                super::denials::insert_denial(&mut *tx, denial, now).await?;
            }
        }
        tx.commit().await?;
        Ok(DeliveryOutcome::Stored {
            job_id,
            cancelled_jobs,
        })
    }

    /// The stored state of an installation (`active`, `suspended`, `deleted`) and its
    /// repositories.
    pub async fn installation(&self, id: u64) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let row = sqlx::query("SELECT state, repositories FROM installations WHERE id = $1")
            .bind(to_i64(id))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let state: String = r.try_get("state")?;
            let repos: String = r.try_get("repositories")?;
            let repos = serde_json::from_str(&repos).map_err(|e| StoreError::Corrupt {
                what: "installations.repositories",
                detail: e.to_string(),
            })?;
            Ok((state, repos))
        })
        .transpose()
    }

    /// The active installation whose recorded repositories include `repository` (`owner/name`,
    /// compared without case), for runs that do not come from a webhook (the HTTP API).
    pub async fn installation_for_repository(
        &self,
        repository: &str,
    ) -> Result<Option<u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, repositories FROM installations WHERE state = 'active' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let repos: String = r.try_get("repositories")?;
            let repos: Vec<String> = serde_json::from_str(&repos).unwrap_or_default();
            if repos.iter().any(|x| x.eq_ignore_ascii_case(repository)) {
                let id: i64 = r.try_get("id")?;
                return Ok(u64::try_from(id).ok());
            }
        }
        Ok(None)
    }

    /// How many deliveries are stored (tests and metrics).
    pub async fn delivery_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// Stores the delivery's replay keys; `true` when one was stored before (by another delivery).
async fn is_replay(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    d: &NewDelivery,
    now: i64,
) -> Result<bool, StoreError> {
    let mut seen = false;
    for key in &d.replay_keys {
        let inserted = sqlx::query(
            "INSERT INTO replay_keys (replay_key, delivery_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (replay_key) DO NOTHING",
        )
        .bind(key)
        .bind(&d.delivery_id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        seen |= inserted == 0;
    }
    Ok(seen)
}

async fn apply_installation_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    change: &InstallationChange,
    now: i64,
) -> Result<u64, StoreError> {
    let id = to_i64(change.id);
    let stored = sqlx::query("SELECT state, repositories FROM installations WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let (old_state, old_repos) = match stored {
        Some(r) => {
            let repos: String = r.try_get("repositories")?;
            (
                r.try_get::<String, _>("state")?,
                serde_json::from_str::<Vec<String>>(&repos).unwrap_or_default(),
            )
        }
        None => ("active".to_owned(), Vec::new()),
    };
    let mut repos: BTreeSet<String> = match &change.repositories {
        Some(all) => all.iter().cloned().collect(),
        None => old_repos.into_iter().collect(),
    };
    repos.extend(change.added.iter().cloned());
    for r in &change.removed {
        repos.remove(r);
    }
    let state = change.state.unwrap_or(old_state.as_str()).to_owned();
    let repos_json = serde_json::to_string(&repos.into_iter().collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO installations (id, account, state, repositories, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET account = excluded.account, state = excluded.state,
             repositories = excluded.repositories, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(&change.account)
    .bind(&state)
    .bind(&repos_json)
    .bind(now)
    .execute(&mut **tx)
    .await?;

    let mut cancelled = 0;
    if state != "active" {
        let reason =
            serde_json::json!({ "reason": format!("the installation was {state}") }).to_string();
        cancelled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', result = $1, finished_at = $2, updated_at = $2
             WHERE installation_id = $3 AND state = 'queued'",
        )
        .bind(&reason)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE installation_id = $2 AND state = 'running'")
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    // Removed repositories lose their queued jobs too.
    for repo in &change.removed {
        cancelled += sqlx::query(
            "UPDATE jobs SET state = 'cancelled', result = $1, finished_at = $2, updated_at = $2
             WHERE installation_id = $3 AND repository = $4 AND state = 'queued'",
        )
        .bind(
            serde_json::json!({ "reason": "the repository was removed from the installation" })
                .to_string(),
        )
        .bind(now)
        .bind(id)
        .bind(repo)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(cancelled)
}
