//! Group commit for deliveries that cause nothing (most of them): requests that arrive together
//! are written by one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`, so the store's
//! round trips, not the requests, set the pace. Under light load a batch is one delivery and
//! waits for nothing; under heavy load batches grow and throughput with them.
//!
//! While deliveries keep coming the writer keeps its pooled connection: sqlx tests a connection
//! with a round trip every time one goes back to the pool, which on SQLite (one connection, its
//! own thread) cost as much as the write. It gives the connection back once no delivery came for
//! [`LINGER`], and at least every [`HOLD`], so the rest of the store waits for it no longer.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{to_i64, NewDelivery, StoreError};

/// The most deliveries in one statement (7 parameters each, far under SQLite's 32,766).
const MAX_BATCH: usize = 256;

/// How long the writer keeps its connection waiting for the next delivery.
const LINGER: Duration = Duration::from_millis(1);

/// The longest the writer keeps its connection while deliveries keep coming.
const HOLD: Duration = Duration::from_millis(10);

struct Pending {
    delivery: NewDelivery,
    outcome: String,
    received_at: i64,
    /// `true` when this request's row was written; `false` for a duplicate id.
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The handle requests send their deliveries through.
#[derive(Clone, Debug)]
pub(super) struct DeliveryBatcher {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("delivery", &self.delivery.delivery_id)
            .finish()
    }
}

impl DeliveryBatcher {
    pub(super) fn start(pool: AnyPool) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let writer = write_loop(pool, rx).instrument(tracing::info_span!("delivery_batcher"));
        tokio::spawn(writer);
        DeliveryBatcher { tx }
    }

    /// Stores one delivery; `Ok(false)` when its id was stored before.
    pub(super) async fn insert(
        &self,
        delivery: NewDelivery,
        outcome: String,
        received_at: i64,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Batch {
            detail: "the delivery writer stopped".into(),
            unavailable: true,
        };
        self.tx
            .send(Pending {
                delivery,
                outcome,
                received_at,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn write_loop(pool: AnyPool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                answer(&mut batch, Err(e.into()));
                continue;
            }
        };
        let held_since = Instant::now();
        loop {
            let result = write(&mut conn, &batch).await;
            let failed = result.is_err();
            answer(&mut batch, result);
            // After a failure the connection goes back to the pool, which tests it on the way.
            if failed || held_since.elapsed() >= HOLD {
                break;
            }
            match tokio::time::timeout(LINGER, rx.recv_many(&mut batch, MAX_BATCH)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// Tells every request of the batch what became of its delivery, and empties the batch.
fn answer(batch: &mut Vec<Pending>, result: Result<HashSet<String>, StoreError>) {
    match result {
        Ok(mut inserted) => {
            for p in batch.drain(..) {
                // Two copies of one id in a batch: the first is stored, the rest are duplicates.
                let stored = inserted.remove(&p.delivery.delivery_id);
                let _ = p.reply.send(Ok(stored));
            }
        }
        Err(e) => {
            let unavailable = e.is_unavailable();
            let detail = e.to_string();
            for p in batch.drain(..) {
                let _ = p.reply.send(Err(StoreError::Batch {
                    detail: detail.clone(),
                    unavailable,
                }));
            }
        }
    }
}

async fn write(conn: &mut AnyConnection, batch: &[Pending]) -> Result<HashSet<String>, StoreError> {
    let mut sql = String::from(
        "INSERT INTO deliveries (delivery_id, event, action, installation_id, repository, received_at, outcome) VALUES ",
    );
    for i in 0..batch.len() {
        let b = i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    sql.push_str(" ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id");
    let mut q = sqlx::query(&sql);
    for p in batch {
        let d = &p.delivery;
        q = q
            .bind(&d.delivery_id)
            .bind(&d.event)
            .bind(d.action.as_deref())
            .bind(d.installation_id.map(to_i64))
            .bind(d.repository.as_deref())
            .bind(p.received_at)
            .bind(&p.outcome);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>("delivery_id")
                .map_err(StoreError::from)
        })
        .collect()
}
