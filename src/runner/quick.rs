//! Jobs that answer at once, without a sandbox: `help`, `cancel`, a mistyped command, and the
//! cancel that closing an issue or pull request sends.

use serde_json::json;

use crate::command;
use crate::github::{IssueNumber, ReactionContent};
use crate::job::{JobKind, JobSource, JobState};
use crate::store::Job;
use crate::trigger;

use super::run::react;
use super::worker::JobEnd;
use super::Services;

pub(crate) async fn quick_job(svc: &Services, job: &Job) -> JobEnd {
    let Some(number) = job.number else {
        return JobEnd::failed("no issue or pull request on the job".into());
    };
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(e) => return JobEnd::failed(e),
    };
    let issue = IssueNumber(number);

    if job.kind == JobKind::Cancel && job.source == JobSource::Closed {
        return match svc
            .store
            .request_cancel(
                &job.repository,
                number,
                "the issue or pull request was closed",
            )
            .await
        {
            Ok((queued, running)) => JobEnd::finished(
                JobState::Succeeded,
                json!({ "cancelled_queued": queued, "cancelling_running": running }),
            ),
            Err(e) => JobEnd::failed(e.to_string()),
        };
    }

    if trigger::needs_permission(job.kind, job.source)
        && !client.may_start_run(&job.requester).await.is_allowed()
    {
        if !job.requester.ends_with("[bot]") {
            let text = format!(
                "Sorry @{}, only people with write access to this repository can use Backspace.",
                job.requester
            );
            if let Err(e) = client.reply_denied_once(issue, &text).await {
                tracing::warn!(error = %e, "could not reply to a refused requester");
            }
        }
        return JobEnd::failed("the requester has no write permission".into());
    }

    let word = &svc.settings.command_word;
    let (reply, reaction) = match job.kind {
        JobKind::Help => (command::usage(word), ReactionContent::Eyes),
        JobKind::UsageError => {
            let problem = job.context["usage_error"]
                .as_str()
                .unwrap_or("that command is not one Backspace knows");
            (
                format!("@{}: {problem}.\n\n{}", job.requester, command::usage(word)),
                ReactionContent::Confused,
            )
        }
        JobKind::Cancel => match svc
            .store
            .request_cancel(
                &job.repository,
                number,
                &format!("cancelled by @{}", job.requester),
            )
            .await
        {
            Ok((0, 0)) => (
                format!(
                    "@{}: there is no Backspace run here to cancel.",
                    job.requester
                ),
                ReactionContent::Eyes,
            ),
            Ok((queued, running)) => {
                let mut parts = Vec::new();
                if running > 0 {
                    parts.push(
                        "stopping the running job (its comment will say when it has stopped)"
                            .to_string(),
                    );
                }
                if queued > 0 {
                    parts.push(format!(
                        "{queued} waiting job{} cancelled",
                        if queued == 1 { "" } else { "s" }
                    ));
                }
                (
                    format!("@{}: {}.", job.requester, parts.join("; ")),
                    ReactionContent::Eyes,
                )
            }
            Err(e) => return JobEnd::failed(e.to_string()),
        },
        JobKind::Run | JobKind::Iterate => return JobEnd::failed("not a quick job".into()),
    };
    react(&client, job, reaction).await;
    match client.create_comment(issue, &reply).await {
        Ok(_) => JobEnd::finished(JobState::Succeeded, json!({ "status": "answered" })),
        Err(e) => JobEnd::failed(format!("could not post the answer: {e}")),
    }
}
