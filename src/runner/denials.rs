//! The denial lane: the one reply a requester without write access gets on an issue, posted
//! beside the workers (never in a worker slot, never delaying a run). Refusals are recorded in
//! the store by ingress (a plain `author_association`) and by the gate (the permission API
//! said no); the store hands each requester and issue to one instance at a time. A reply GitHub
//! did not take (a 5xx, a rate limit, no connection: after the client's own retries) is given
//! back and tried again after a pause that doubles, up to `store::MAX_REPLY_ATTEMPTS` tries; a
//! try after the first looks for the reply by its marker first, so a reply that went through
//! behind an error is not posted twice.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::github::{GithubError, IssueNumber, RepoName, DENIED_REPLY_MARKER};
use crate::store::TakenDenial;
use crate::trigger::Denial;

use super::gate::denied_reply;
use super::Services;

/// How often the lane looks for refusals to answer.
const POLL: Duration = Duration::from_millis(250);
/// Replies on their way at once, at most.
const BATCH: u32 = 20;
/// The pause before a reply is tried again for the first time; it doubles with each try.
const FIRST_PAUSE: Duration = Duration::from_secs(5);

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
                for taken in denials {
                    let d = &taken.denial;
                    let span = tracing::info_span!("refusal_reply", repo = %d.repository, number = d.number, attempt = taken.attempts_before + 1);
                    let svc = svc.clone();
                    replies.spawn(async move { answer(&svc, &taken).await }.instrument(span));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for refusals to answer"),
        }
    }
}

/// Posts one refusal's reply; gives it back to be tried again when GitHub did not take it.
async fn answer(svc: &Services, taken: &TakenDenial) {
    let d = &taken.denial;
    let Err(e) = reply(svc, taken).await else {
        tracing::info!(requester = %d.requester, number = d.number, "answered a refused requester");
        return;
    };
    if !e.may_succeed_later() {
        tracing::warn!(error = %e, "could not reply to a refused requester; not trying again");
        return;
    }
    let pause = FIRST_PAUSE.saturating_mul(1 << taken.attempts_before.min(10));
    match svc.store.give_back_denial(d, pause).await {
        Ok(true) => {
            tracing::warn!(error = %e, retry_in = ?pause, "could not reply to a refused requester; trying again later")
        }
        Ok(false) => {
            tracing::warn!(error = %e, "could not reply to a refused requester; that was the last try")
        }
        Err(store) => {
            tracing::warn!(error = %e, store_error = %store, "could not reply to a refused requester, nor give it back")
        }
    }
}

/// The hidden marker of the reply to this requester on this issue: a later try finds the reply
/// by it.
fn reply_marker(d: &Denial) -> String {
    format!(
        "<!-- backspace:denied-for:{} -->",
        d.requester.to_ascii_lowercase()
    )
}

/// Posts the reply (taken on already), unless a try before this one posted it after all.
async fn reply(svc: &Services, taken: &TakenDenial) -> Result<(), GithubError> {
    let d = &taken.denial;
    let repo: RepoName = d
        .repository
        .parse()
        .map_err(|e| GithubError::Invalid(format!("a refusal names no repository: {e}")))?;
    let installation = match d.installation_id {
        Some(id) => crate::github::InstallationId(id),
        None => svc.github.installation_for_repo(&repo).await?,
    };
    let client = svc.github.repo(installation, repo);
    let marker = reply_marker(d);
    if taken.attempts_before > 0
        && client
            .find_bot_comment_with_marker(IssueNumber(d.number), &marker)
            .await?
            .is_some()
    {
        return Ok(());
    }
    let text = format!(
        "{}\n\n{DENIED_REPLY_MARKER}\n{marker}",
        denied_reply(&d.requester)
    );
    client
        .reply_refused(IssueNumber(d.number), &text)
        .await
        .map(|_| ())
}
