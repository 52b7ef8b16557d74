//! Jobs whose lease expired (their instance crashed or was killed): queued again while they have
//! attempts left, otherwise failed, with the run's own progress comment saying so.

use crate::github::{IssueNumber, ProgressComment, ReactionContent};
use crate::job::JobResult;
use crate::safe_text::neutralize;
use crate::store::Job;

use super::announce::react;
use super::Services;

/// One pass over the expired leases.
pub(crate) async fn recover(svc: &Services) {
    let (requeued, exhausted) = match svc.store.recover_expired(svc.settings.max_attempts).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for interrupted jobs");
            return;
        }
    };
    for job in &requeued {
        let (run_id, attempts) = (&job.id, job.attempts);
        tracing::warn!(%run_id, attempts, "an interrupted job goes back to the queue");
    }
    if !requeued.is_empty() {
        svc.wake.notify_one();
    }
    for job in exhausted {
        let (run_id, attempts) = (&job.id, job.attempts);
        tracing::warn!(%run_id, attempts, "an interrupted job is given up");
        let owner = job.lease_owner.clone().unwrap_or_default();
        let reason = given_up_reason(job.attempts);
        let result = JobResult::failed(reason.clone());
        match svc
            .store
            .finish(&job.id, &owner, result.state(), &result)
            .await
        {
            Ok(true) => report_given_up(svc, &job, &reason).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not fail an interrupted job"),
        }
    }
}

fn given_up_reason(attempts: u32) -> String {
    format!(
        "the run was interrupted {attempts} times (the server restarted or crashed) \
         and was given up"
    )
}

/// The comment that tells the issue a run was given up, and how to ask again. The prompt is
/// the requester's text: quoted inert (no mentions, no HTML), and in the code span without the
/// backticks that would end it.
pub fn given_up_comment(prompt: &str, reason: &str, command_word: &str) -> String {
    let first_line = prompt.lines().next().unwrap_or_default();
    let quoted = neutralize(first_line);
    let again = first_line.replace('`', "'");
    format!(
        "### ❌ Backspace could not finish\n\n> {quoted}\n\n**Error:** {reason}.\n\n\
         **What to do:** comment `/{command_word} {again}` to try again.\n"
    )
}

async fn report_given_up(svc: &Services, job: &Job, reason: &str) {
    let Some(number) = job.number else { return };
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell the issue that the run was given up");
            return;
        }
    };
    let body = given_up_comment(&job.prompt, reason, &svc.settings.command_word);
    // The run's own progress comment, found again by its marker, carries the failure.
    let progress = svc.settings.progress.clone();
    match ProgressComment::start(
        client.clone(),
        IssueNumber(number),
        &job.id,
        &body,
        progress,
    )
    .await
    {
        Ok(c) => {
            if let Err(e) = c.finish(body).await {
                tracing::warn!(error = %e, "could not write the failure comment");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not write the failure comment"),
    }
    react(&client, job, ReactionContent::Confused).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_up_comment_says_why_and_how_to_ask_again() {
        let body = given_up_comment(
            "add validation\nmore detail",
            &given_up_reason(2),
            "backspace",
        );
        assert_eq!(
            body,
            "### ❌ Backspace could not finish\n\n> add validation\n\n**Error:** the run was \
             interrupted 2 times (the server restarted or crashed) and was given up.\n\n\
             **What to do:** comment `/backspace add validation` to try again.\n"
        );
    }

    #[test]
    fn the_given_up_comment_pings_nobody_and_keeps_its_code_span_whole() {
        let body = given_up_comment("ask @octo/team to `rm -rf`", "x", "backspace");
        // In the quote a mention would ping; in the code span GitHub links nothing.
        assert!(
            body.contains("> ask @&#8203;octo/team to `rm -rf`"),
            "{body}"
        );
        assert!(
            body.contains("comment `/backspace ask @octo/team to 'rm -rf'` to try"),
            "{body}"
        );
    }
}
