//! Jobs that answer at once, without a sandbox: `help`, `cancel`, a mistyped command, and the
//! cancel that closing an issue or pull request sends. They pass the same permission gate as
//! agent runs (but a close, which needs none).

use crate::command;
use crate::github::{IssueNumber, ReactionContent, RepoClient};
use crate::job::{CloseReport, JobResult, JobSource, JobSpec, RunReport};
use crate::repo_settings::DEFAULT_LABEL;
use crate::store::Job;

use super::announce::react;
use super::gate;
use super::prepare::read_settings;
use super::worker::JobEnd;
use super::Services;

/// Why a close cancels its issue's jobs.
const CLOSED_REASON: &str = "the issue or pull request was closed";

pub(crate) async fn quick_job(svc: &Services, job: &Job) -> JobEnd {
    let Some(number) = job.number else {
        return JobEnd::failed("no issue or pull request on the job");
    };
    if job.spec == JobSpec::Cancel && job.source == JobSource::Closed {
        return close(svc, job, number).await;
    }
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(e) => return JobEnd::failed(e),
    };
    if let Err(refused) = gate::check(svc, job, &client).await {
        return refused;
    }
    let (reply, reaction) = match &job.spec {
        JobSpec::Help => (usage(svc, &client).await, ReactionContent::Eyes),
        JobSpec::UsageError { problem } => {
            let usage = usage(svc, &client).await;
            let reply = format!("@{}: {problem}.\n\n{usage}", job.requester);
            (reply, ReactionContent::Confused)
        }
        JobSpec::Cancel => match cancel(svc, job, number).await {
            Ok(reply) => (reply, ReactionContent::Eyes),
            Err(end) => return end,
        },
        JobSpec::Run(_) | JobSpec::Iterate(_) => return JobEnd::failed("not a quick job"),
    };
    answer(&client, job, number, &reply, reaction).await
}

/// The usage, with the repository's trigger label (the default when its settings name none
/// or cannot be read).
async fn usage(svc: &Services, client: &RepoClient) -> String {
    let label = read_settings(client).await.ok().and_then(|s| s.label);
    let label = label.as_deref().unwrap_or(DEFAULT_LABEL);
    command::usage(&svc.settings.command_word, label)
}

/// A close: the issue's queued jobs are cancelled and its running one is asked to stop.
async fn close(svc: &Services, job: &Job, number: u64) -> JobEnd {
    match svc
        .store
        .request_cancel(&job.repository, number, CLOSED_REASON)
        .await
    {
        Ok((queued, running)) => JobEnd::Finished(JobResult::Closed(CloseReport {
            cancelled_queued: queued,
            cancelling_running: running,
        })),
        Err(e) => JobEnd::failed(e.to_string()),
    }
}

/// `/backspace cancel`: cancels, and says what it cancelled.
async fn cancel(svc: &Services, job: &Job, number: u64) -> Result<String, JobEnd> {
    let why = format!("cancelled by @{}", job.requester);
    let (queued, running) = svc
        .store
        .request_cancel(&job.repository, number, &why)
        .await
        .map_err(|e| JobEnd::failed(e.to_string()))?;
    Ok(cancel_reply(&job.requester, queued, running))
}

/// Pure: what a cancel says it did.
fn cancel_reply(requester: &str, queued: u64, running: u64) -> String {
    if queued == 0 && running == 0 {
        return format!("@{requester}: there is no Backspace run here to cancel.");
    }
    let mut parts = Vec::new();
    if running > 0 {
        parts.push("stopping the running job (its comment will say when it has stopped)".into());
    }
    if queued > 0 {
        let s = if queued == 1 { "" } else { "s" };
        parts.push(format!("{queued} waiting job{s} cancelled"));
    }
    format!("@{requester}: {}.", parts.join("; "))
}

async fn answer(
    client: &RepoClient,
    job: &Job,
    number: u64,
    reply: &str,
    reaction: ReactionContent,
) -> JobEnd {
    react(client, job, reaction).await;
    match client.create_comment(IssueNumber(number), reply).await {
        Ok(_) => JobEnd::Finished(JobResult::Answered(RunReport::default())),
        Err(e) => JobEnd::failed(format!("could not post the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_says_what_it_stopped() {
        assert_eq!(
            cancel_reply("alice", 0, 0),
            "@alice: there is no Backspace run here to cancel."
        );
        assert_eq!(
            cancel_reply("alice", 2, 1),
            "@alice: stopping the running job (its comment will say when it has stopped); 2 waiting jobs cancelled."
        );
        assert_eq!(
            cancel_reply("alice", 1, 0),
            "@alice: 1 waiting job cancelled."
        );
    }
}
