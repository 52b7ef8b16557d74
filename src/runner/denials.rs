//! The denial lane: the one reply a requester without write access gets on an issue, posted
//! beside the workers (never in a worker slot, never delaying a run). Refusals are recorded in
//! the store by ingress (a plain `author_association`) and by the gate (the permission API
//! said no); the store hands each requester and issue to one instance, once.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::github::{IssueNumber, RepoName, DENIED_REPLY_MARKER};
use crate::trigger::Denial;

use super::gate::denied_reply;
use super::Services;

/// How often the lane looks for refusals to answer.
const POLL: Duration = Duration::from_millis(250);
/// Replies on their way at once, at most.
const BATCH: u32 = 20;

/// Runs the lane until `stop`. Replies wait in the pacer's lowest class, each in a task of its
/// own, at most [`BATCH`] at once, so that one installation's full window does not hold up
/// another's replies.
pub(crate) async fn lane(svc: Services, stop: CancellationToken) {
    let mut replies = JoinSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
        while replies.try_join_next().is_some() {}
        let room = BATCH.saturating_sub(u32::try_from(replies.len()).unwrap_or(BATCH));
        if room == 0 {
            continue;
        }
        match svc.store.take_unanswered_denials(room).await {
            Ok(denials) => {
                for d in denials {
                    let span = tracing::info_span!("refusal_reply", repo = %d.repository, number = d.number);
                    let svc = svc.clone();
                    replies.spawn(async move { reply(&svc, &d).await }.instrument(span));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for refusals to answer"),
        }
    }
}

/// Posts the reply (taken on already: a failure is logged, not retried, so that no requester
/// gets two).
async fn reply(svc: &Services, d: &Denial) {
    let repo: RepoName = match d.repository.parse() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(repo = %d.repository, error = %e, "a refusal names no repository");
            return;
        }
    };
    let installation = match d.installation_id {
        Some(id) => crate::github::InstallationId(id),
        None => match svc.github.installation_for_repo(&repo).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "no installation to answer a refusal with");
                return;
            }
        },
    };
    let client = svc.github.repo(installation, repo);
    let text = format!("{}\n\n{DENIED_REPLY_MARKER}", denied_reply(&d.requester));
    match client.reply_refused(IssueNumber(d.number), &text).await {
        Ok(_) => {
            tracing::info!(requester = %d.requester, number = d.number, "answered a refused requester")
        }
        Err(e) => tracing::warn!(error = %e, "could not reply to a refused requester"),
    }
}
