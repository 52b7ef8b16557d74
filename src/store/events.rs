//! Run events: the ordered stream of one run (DESIGN §3), appended by the runner and read by
//! every view (progress comment, SSE, run page).

use sqlx::Row;

use super::{Store, StoreError};
use crate::run_event::RunEvent;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// 1, 2, 3, … per run; the SSE `id:`.
    pub seq: i64,
    pub event: RunEvent,
    pub created_at: i64,
}

impl Store {
    /// Appends an event to a run; returns its sequence number. One writer per run (its worker),
    /// so the next number is read and written in one transaction.
    pub async fn append_event(&self, run_id: &str, event: &RunEvent) -> Result<i64, StoreError> {
        let payload = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            what: "run event",
            detail: e.to_string(),
        })?;
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM run_events WHERE run_id = $1")
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await?;
        let seq: i64 = row.try_get::<i64, _>("last")? + 1;
        sqlx::query("INSERT INTO run_events (run_id, seq, type, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(run_id)
            .bind(seq)
            .bind(event.kind())
            .bind(&payload)
            .bind(self.now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The events of a run after `after_seq` (0 for all), in order.
    pub async fn events_after(
        &self,
        run_id: &str,
        after_seq: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query("SELECT seq, payload, created_at FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id)
            .bind(after_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(StoredEvent {
                    seq: r.try_get("seq")?,
                    event: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
                        what: "run_events.payload",
                        detail: e.to_string(),
                    })?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
