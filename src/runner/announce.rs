//! The second phase of an agent run: tell the requester it started. 👀 on what asked, the
//! progress comment (found again after a restart, by its marker), and the run's event sink,
//! which from here on stores every event and keeps the comment in step.

use crate::github::{IssueNumber, ProgressComment, ReactionContent, RepoClient};
use crate::job::JobSource;
use crate::progress::{Live, Progress};
use crate::run_event::RunEvent;
use crate::store::Job;

use super::reporter::{Reporter, ReporterConfig};
use super::Services;

/// Reacts to what asked for the job: its comment, review comment, or (for the label) issue.
pub(crate) async fn react(client: &RepoClient, job: &Job, content: ReactionContent) {
    let result = match (job.source, job.comment_id, job.number) {
        (JobSource::ReviewComment, Some(id), _) => {
            client.react_to_review_comment(id, content).await
        }
        (_, Some(id), _) => client.react_to_comment(id, content).await,
        (JobSource::Label, None, Some(n)) => client.react_to_issue(IssueNumber(n), content).await,
        _ => return,
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, reaction = content.as_str(), "could not react");
    }
}

/// 👀, the progress comment and the event sink; the run's first events.
pub(crate) async fn announce(svc: &Services, job: &Job, client: &RepoClient) -> Reporter {
    react(client, job, ReactionContent::Eyes).await;
    let comment = match job.number {
        Some(n) => progress_comment(svc, job, client, IssueNumber(n)).await,
        None => None,
    };
    let log_url = svc.run_link.as_ref().and_then(|f| f(&job.id));
    let config = ReporterConfig {
        comment,
        log_url,
        command_word: svc.settings.command_word.clone(),
    };
    let reporter = Reporter::start(svc.store.clone(), &job.id, config);
    reporter.emit(RunEvent::Start {
        run_id: job.id.clone(),
        repo: Some(job.repository.clone()),
        prompt: Some(job.prompt.clone()),
    });
    reporter.emit(first_progress(job.attempts, svc.settings.max_attempts));
    reporter
}

/// The run's comment, or `None` (the run goes on without one) when GitHub refuses it.
async fn progress_comment(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    issue: IssueNumber,
) -> Option<ProgressComment> {
    let live = Live {
        log_url: svc.run_link.as_ref().and_then(|f| f(&job.id)),
        command_word: svc.settings.command_word.clone(),
        ..Live::default()
    };
    let first = Progress::new(&job.id).render(&live);
    let config = svc.settings.progress.clone();
    match ProgressComment::start(client.clone(), issue, &job.id, &first, config).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "could not post the progress comment; the run goes on");
            None
        }
    }
}

/// "picked up", or, for a run started again after an interruption, which attempt this is.
fn first_progress(attempt: u32, max_attempts: u32) -> RunEvent {
    if attempt > 1 {
        RunEvent::progress(
            "restart",
            format!("started again after an interruption (attempt {attempt} of {max_attempts})"),
        )
    } else {
        RunEvent::progress("queued", "picked up")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_run_says_which_attempt_it_is() {
        assert_eq!(
            first_progress(1, 2),
            RunEvent::progress("queued", "picked up")
        );
        assert_eq!(
            first_progress(2, 2),
            RunEvent::progress(
                "restart",
                "started again after an interruption (attempt 2 of 2)"
            )
        );
    }
}
