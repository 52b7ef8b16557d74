//! The job store: deliveries, jobs and run events in SQLite (default) or Postgres, through sqlx's
//! `Any` driver so that one set of queries and one set of migrations serves both.

mod batch;
mod chores;
mod deliveries;
mod denials;
mod events;
mod jobs;
mod retention;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::clock::Clock;

pub use deliveries::{
    DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery, REPLAY_OUTCOME,
};
pub use denials::{TakenDenial, MAX_REPLY_ATTEMPTS};
pub use events::StoredEvent;
pub use jobs::{Job, JobCounts};
pub use retention::Pruned;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The migrations this build applies (the doctor compares them with a store's).
pub fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the job store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("job store query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("migrating the job store failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is not readable ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("DATABASE_URL must start with sqlite: or postgres:")]
    UnknownScheme,
    #[error("storing a batch of deliveries failed: {detail}")]
    Batch { detail: String, unavailable: bool },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            other => StoreError::Query(other),
        }
    }
}

impl StoreError {
    /// Whether the store itself is down (as opposed to a bad query or row): ingress answers 503
    /// so that GitHub redelivers later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Batch {
                    unavailable: true,
                    ..
                }
        )
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    deliveries: batch::DeliveryBatcher,
    /// What "now" is for every stored time (a manual clock in tests).
    clock: Clock,
}

impl Store {
    /// Connects, creating a SQLite file if needed, and applies the migrations.
    pub async fn connect(url: &SecretString) -> Result<Store, StoreError> {
        Self::connect_with(url, Duration::from_secs(3)).await
    }

    pub async fn connect_with(
        url: &SecretString,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let (backend, url) = if raw.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(raw))
        } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            (Backend::Postgres, raw.to_owned())
        } else {
            return Err(StoreError::UnknownScheme);
        };
        let options = AnyPoolOptions::new().acquire_timeout(acquire_timeout);
        let options = match backend {
            // SQLite has one writer: one connection queues writers fairly in the pool instead of
            // spinning in SQLite's busy handler. It is never closed, so `sqlite::memory:` lives.
            // A local file has no connection to go stale: no round trip to test it before each
            // use (sqlx still tests it when it goes back to the pool).
            Backend::Sqlite => options
                .test_before_acquire(false)
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => options.max_connections(10),
        };
        let pool = options
            .connect(&url)
            .await
            .map_err(StoreError::Unavailable)?;
        MIGRATOR.run(&pool).await?;
        let deliveries = batch::DeliveryBatcher::start(pool.clone());
        Ok(Store {
            pool,
            backend,
            deliveries,
            clock: Clock::system(),
        })
    }

    /// The same store reading time from `clock` (tests age rows and expire leases with a manual
    /// clock instead of sleeping).
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Unix time in milliseconds, by the store's clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers when the store answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://backspace.db` → the same with `mode=rwc`, so a missing file is created.
fn sqlite_url(raw: &str) -> String {
    if raw.contains(":memory:") || raw.contains("mode=") {
        return raw.to_owned();
    }
    let sep = if raw.contains('?') { '&' } else { '?' };
    format!("{raw}{sep}mode=rwc")
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_u64(row: &AnyRow, col: &str) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_missing_files() {
        assert_eq!(
            sqlite_url("sqlite://backspace.db"),
            "sqlite://backspace.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://x.db?cache=shared"),
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
    }
}
