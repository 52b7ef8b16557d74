//! The first phase of every job that needs it: may the requester start it? Only people with
//! write, maintain or admin permission (GitHub's permission API is the authority, failing
//! closed). A refused human gets one short reply per issue (posted by the denial lane), worded
//! the same for every kind of job; a bot gets none.

use crate::github::{GateDecision, RepoClient};
use crate::store::Job;
use crate::trigger::{self, Denial};

use super::worker::JobEnd;
use super::Services;

/// The reply to someone who may not use Backspace here.
pub fn denied_reply(requester: &str) -> String {
    format!(
        "Sorry @{requester}, only people with write access to this repository can use Backspace."
    )
}

/// Why the job was refused, for its result.
pub fn refusal_reason(decision: &GateDecision) -> String {
    match decision {
        GateDecision::Denied(p) => format!("the requester's permission is {p}"),
        GateDecision::Unknown(r) => format!("the requester's permission could not be read: {r}"),
        GateDecision::Allowed(p) => format!("the requester's permission is {p}"),
    }
}

/// Passes the job on, or ends it (its requester's one reply per issue is left to the denial
/// lane).
pub(crate) async fn check(svc: &Services, job: &Job, client: &RepoClient) -> Result<(), JobEnd> {
    if !trigger::needs_permission(job.kind(), job.source) {
        return Ok(());
    }
    let decision = client.may_start_run(&job.requester).await;
    if decision.is_allowed() {
        return Ok(());
    }
    Err(refuse(svc, job, &decision).await)
}

/// A refused job: recorded for its requester's one reply (none for a bot), and its end.
pub(crate) async fn refuse(svc: &Services, job: &Job, decision: &GateDecision) -> JobEnd {
    tracing::info!(requester = %job.requester, ?decision, "refused: no write permission");
    if let (Some(number), false) = (job.number, job.requester.ends_with("[bot]")) {
        let denial = Denial {
            installation_id: job.installation_id,
            repository: job.repository.clone(),
            number,
            requester: job.requester.clone(),
        };
        let reason = refusal_reason(decision);
        if let Err(e) = svc.store.record_denial(&denial, &reason).await {
            tracing::warn!(error = %e, "could not record a refusal for its reply");
        }
    }
    JobEnd::failed(refusal_reason(decision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::Permission;

    #[test]
    fn the_reply_names_the_requester_and_what_is_needed() {
        assert_eq!(
            denied_reply("octocat"),
            "Sorry @octocat, only people with write access to this repository can use Backspace."
        );
    }

    #[test]
    fn the_reason_says_what_permission_was_found_or_why_none_was() {
        assert_eq!(
            refusal_reason(&GateDecision::Denied(Permission::Read)),
            "the requester's permission is read"
        );
        assert_eq!(
            refusal_reason(&GateDecision::Unknown("timed out".into())),
            "the requester's permission could not be read: timed out"
        );
    }
}
