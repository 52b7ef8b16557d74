//! The acknowledgement lane: a command is answered within a second even when every worker is
//! busy. A queued agent job that has waited [`WAITED`] without a worker gets what the announce
//! phase would have given it: the permission check (nothing for someone who may not start
//! runs: the gate answers them when the job is claimed), 👀, and its progress comment, showing
//! that it waits for a free worker; a job whose requester may not start runs is ended here, with
//! that one permission call. The store's `acknowledge` makes it once across the lane,
//! the announce phase and every instance on the same store: whoever marks the job first reacts
//! and posts, the others find the comment by its marker.
//!
//! A job acknowledged here that ends without ever starting (cancelled while it waited) gets its
//! comment's last words from the lane too, so that no comment is left saying "queued". A job the
//! lane leaves alone (its requester may not start runs) is marked so, and looked at once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::github::{post_first, with_marker, IssueNumber, ReactionContent, RepoClient};
use crate::job::JobState;
use crate::progress::{Live, Progress};
use crate::run_event::RunEvent;
use crate::store::Job;
use crate::trigger;

use super::announce::react;
use super::worker::JobEnd;
use super::{gate, Services};

/// How long a job waits for a worker before the lane acknowledges it (a free worker claims it
/// sooner, and its announce acknowledges it).
pub(crate) const WAITED: Duration = Duration::from_millis(300);
/// How often the lane looks at the queue.
const POLL: Duration = Duration::from_millis(200);
/// Jobs acknowledged per look.
const BATCH: u32 = 20;
/// How long the lane watches a job it acknowledged for an end before it started.
const WATCH: Duration = Duration::from_secs(3600);
/// How long the announce phase waits for the comment of an acknowledgement made elsewhere.
pub(crate) const COMMENT_WAIT: Duration = Duration::from_secs(5);

/// The comment's last words for a job cancelled while it waited.
const CANCELLED_WAITING: &str =
    "### ⏹️ Backspace run cancelled\n\nCancelled before it started; nothing was run.\n";

/// The progress comment of a job that waits for a worker.
pub(crate) fn queued_body(run_id: &str, live: &Live) -> String {
    let mut progress = Progress::new(run_id);
    progress.apply(&RunEvent::progress("queued", "waiting for a free worker"));
    progress.render(live)
}

/// A job this lane acknowledged, until a worker takes it or it ends.
struct Acked {
    client: RepoClient,
    comment_id: Option<u64>,
    since: Instant,
}

/// Runs the lane until `stop`.
pub(crate) async fn lane(svc: Services, stop: CancellationToken) {
    let mut tasks: JoinSet<(String, Option<Acked>)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut watching: HashMap<String, Acked> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
        while let Some(done) = tasks.try_join_next() {
            if let Ok((id, acked)) = done {
                in_flight.remove(&id);
                if let Some(a) = acked {
                    watching.insert(id, a);
                }
            }
        }
        match svc.store.unacknowledged_jobs(WAITED, BATCH).await {
            Ok(jobs) => {
                for job in jobs {
                    if in_flight.insert(job.id.clone()) {
                        let span = tracing::info_span!("acknowledge", run_id = %job.id, repo = %job.repository);
                        let svc = svc.clone();
                        tasks.spawn(
                            async move {
                                let id = job.id.clone();
                                (id, acknowledge(&svc, &job).await)
                            }
                            .instrument(span),
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for jobs to acknowledge"),
        }
        settle(&svc, &mut watching).await;
    }
}

/// 👀 and the progress comment of a waiting job, unless someone else made them already or the
/// requester may not start runs.
async fn acknowledge(svc: &Services, job: &Job) -> Option<Acked> {
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(_) => return pass(svc, job).await,
    };
    if trigger::needs_permission(job.kind(), job.source) {
        let decision = client.may_start_run(&job.requester).await;
        if !decision.is_allowed() {
            // Ended here, so that the refusal costs this one permission call and no worker slot.
            return refuse_waiting(svc, job, &decision).await;
        }
    }
    match svc.store.acknowledge(&job.id).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not mark a job acknowledged");
            return None;
        }
    }
    react(&client, job, ReactionContent::Eyes).await;
    let live = Live {
        log_url: svc.run_link.as_ref().and_then(|f| f(&job.id)),
        command_word: svc.settings.command_word.clone(),
        ..Live::default()
    };
    let body = queued_body(&job.id, &live);
    let comment_id = match job.number {
        Some(n) => match post_first(&client, IssueNumber(n), &job.id, &body).await {
            Ok(c) => Some(c.id),
            Err(e) => {
                tracing::warn!(error = %e, "could not post the queued comment");
                None
            }
        },
        None => None,
    };
    tracing::info!("acknowledged while it waits for a worker");
    Some(Acked {
        client,
        comment_id,
        since: Instant::now(),
    })
}

/// Leaves a job to its worker's gate and announce (a requester who may not start runs, or a
/// client that could not be made): not looked at again while it waits.
async fn pass(svc: &Services, job: &Job) -> Option<Acked> {
    if let Err(e) = svc.store.pass_acknowledgement(&job.id).await {
        tracing::warn!(error = %e, "could not mark a job left to its worker");
    }
    None
}

/// Ends a waiting job whose requester may not start runs (their reply is left to the denial
/// lane). A worker that took it meanwhile checks again in its gate.
async fn refuse_waiting(
    svc: &Services,
    job: &Job,
    decision: &crate::github::GateDecision,
) -> Option<Acked> {
    let JobEnd::Finished(result) = gate::refuse(svc, job, decision).await else {
        return None;
    };
    match svc.store.end_queued(&job.id, &result).await {
        Ok(true) => tracing::info!("refused while it waited for a worker"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not end a refused job"),
    }
    None
}

/// Lets go of jobs a worker took, and closes the comment of those that ended without starting.
async fn settle(svc: &Services, watching: &mut HashMap<String, Acked>) {
    let ids: Vec<String> = watching.keys().cloned().collect();
    for id in ids {
        let job = match svc.store.job(&id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                watching.remove(&id);
                continue;
            }
            Err(_) => continue,
        };
        let started = job.started_at.is_some() || job.state == JobState::Running;
        let ended = job.state.is_final();
        let stale = watching.get(&id).is_some_and(|a| a.since.elapsed() > WATCH);
        if !(started || ended || stale) {
            continue;
        }
        if let Some(acked) = watching.remove(&id) {
            if ended && !started {
                if let Some(comment) = acked.comment_id {
                    let body = with_marker(CANCELLED_WAITING, &id);
                    if let Err(e) = acked.client.update_comment(comment, &body).await {
                        tracing::warn!(run_id = %id, error = %e, "could not close the queued comment");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_job_says_so_in_its_comment() {
        let body = queued_body("run-1", &Live::default());
        assert!(body.contains("waiting for a free worker"), "{body}");
        assert!(body.contains("Queued"), "{body}");
    }
}
