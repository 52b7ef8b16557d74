//! The denial lane: the one reply a requester without write access gets on an issue, posted
//! beside the workers (never in a worker slot, never delaying a run). Refusals are recorded in
//! the store by ingress (a plain `author_association`) and by the gate (the permission API
//! said no); the store hands each requester and issue to one instance, once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::github::{IssueNumber, RepoName, DENIED_REPLY_MARKER};
use crate::trigger::Denial;

use super::gate::denied_reply;
use super::Services;

/// How often the lane looks for refusals to answer.
const POLL: Duration = Duration::from_millis(250);
/// Replies taken on per look.
const BATCH: u32 = 20;

/// Runs the lane until `stop`.
pub(crate) async fn lane(svc: Services, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
        match svc.store.take_unanswered_denials(BATCH).await {
            Ok(denials) => {
                for d in denials {
                    reply(&svc, &d).await;
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
    match client.create_comment(IssueNumber(d.number), &text).await {
        Ok(_) => {
            tracing::info!(requester = %d.requester, number = d.number, "answered a refused requester")
        }
        Err(e) => tracing::warn!(error = %e, "could not reply to a refused requester"),
    }
}
