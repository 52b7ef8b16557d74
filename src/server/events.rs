//! A run's events as Server-Sent Events: the stored events after a sequence number, then the new
//! ones as they are appended, ending after `complete`. Shared by `GET /api/runs/{id}/events`,
//! the stream of `POST /api/code` and the run page.
//!
//! "Live" is a poll of the store every [`POLL_INTERVAL`]: the runner that appends may be another
//! instance on the same Postgres, so an in-process channel alone would miss its events. The SSE
//! `id:` is the event's sequence number, so a client's `Last-Event-ID` resumes exactly.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;

use crate::job::JobState;
use crate::run_event::{RunEvent, RunStatus, Usage};
use crate::store::{Job, Store, StoredEvent};

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// SSE comments keep proxies from closing a quiet stream (a long agent turn).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often, while no event comes, the job itself is checked (a job cancelled before it ran
/// has no `complete` event: the stream must still end).
const JOB_CHECK_EVERY: u32 = 4;

/// `Last-Event-ID`: absent → 0 (from the start); present → a sequence number, or `Err`.
pub fn last_event_id(headers: &HeaderMap) -> Result<i64, ()> {
    match headers.get("last-event-id") {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .and_then(|s| {
                if s.is_empty() {
                    Some(0)
                } else {
                    s.parse().ok()
                }
            })
            .filter(|n: &i64| *n >= 0)
            .ok_or(()),
    }
}

/// The `complete` event of a job that ended without one (cancelled while queued, or failed
/// before its runner could say so).
fn synthetic_complete(job: &Job) -> RunEvent {
    let status = match job.state {
        JobState::Succeeded => RunStatus::Succeeded,
        JobState::Cancelled => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    };
    let duration_ms = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) if f >= s => (f - s) as u64,
        _ => 0,
    };
    RunEvent::Complete {
        run_id: job.id.clone(),
        status,
        duration_ms,
        usage: Usage::default(),
        cost_usd: 0.0,
    }
}

struct Cursor {
    store: Store,
    run_id: String,
    after: i64,
    buffer: VecDeque<StoredEvent>,
    idle_polls: u32,
    done: bool,
}

fn sse_event(seq: Option<i64>, event: &RunEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let e = Event::default().data(data);
    match seq {
        Some(seq) => e.id(seq.to_string()),
        None => e,
    }
}

/// The stream of run `run_id`'s events after `after`, polling every `poll`.
pub fn run_events(
    store: Store,
    run_id: String,
    after: i64,
    poll: Duration,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let cursor = Cursor {
        store,
        run_id,
        after,
        buffer: VecDeque::new(),
        idle_polls: 0,
        done: false,
    };
    futures::stream::unfold(cursor, move |mut c| async move {
        loop {
            if c.done {
                return None;
            }
            if let Some(stored) = c.buffer.pop_front() {
                c.after = stored.seq;
                if stored.event.is_terminal() {
                    c.done = true;
                }
                return Some((Ok(sse_event(Some(stored.seq), &stored.event)), c));
            }
            match c.store.events_after(&c.run_id, c.after).await {
                Ok(events) if !events.is_empty() => {
                    c.idle_polls = 0;
                    c.buffer.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run_id = %c.run_id, error = %e, "run events: the store did not answer; retrying")
                }
            }
            c.idle_polls += 1;
            if c.idle_polls % JOB_CHECK_EVERY == 0 {
                match c.store.job(&c.run_id).await {
                    Ok(Some(job)) if job.state.is_final() => {
                        // The runner appends `complete` before it finishes the job; look once
                        // more so that a `complete` written just now is not missed.
                        if let Ok(events) = c.store.events_after(&c.run_id, c.after).await {
                            if !events.is_empty() {
                                c.buffer.extend(events);
                                continue;
                            }
                        }
                        c.done = true;
                        return Some((Ok(sse_event(None, &synthetic_complete(&job))), c));
                    }
                    Ok(None) => return None,
                    _ => {}
                }
            }
            tokio::time::sleep(poll).await;
        }
    })
}

/// [`run_events`] as an axum SSE answer with keep-alive comments, ended early when `closing`
/// is cancelled (shutdown).
pub fn sse(
    store: Store,
    run_id: String,
    after: i64,
    closing: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let stream =
        run_events(store, run_id, after, POLL_INTERVAL).take_until(closing.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn last_event_id_is_a_sequence_number() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h), Ok(0));
        h.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(last_event_id(&h), Ok(12));
        h.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(last_event_id(&h), Err(()));
        h.insert("last-event-id", HeaderValue::from_static("-1"));
        assert_eq!(last_event_id(&h), Err(()));
    }
}
