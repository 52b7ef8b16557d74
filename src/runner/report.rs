//! The last phase, and the one place where a run's outcome (pushed, answered, failed,
//! cancelled, interrupted by a shutdown or a lost lease) becomes what everyone sees: the closing
//! events, the progress comment's last words, the reaction, the reply in a review thread, the
//! metrics and the job's result. [`ending`] decides all of it without I/O (tested as such);
//! [`report`] carries it out.

use std::time::Duration;

use crate::agent::{AgentOutcome, StopReason};
use crate::github::{IssueNumber, ReactionContent, RepoClient};
use crate::job::{CancelReport, FailureReport, JobResult, JobSource, RunReport, TestReport};
use crate::redact::redact;
use crate::run_event::{RunEvent, RunStatus, Usage};
use crate::store::Job;

use super::announce::react;
use super::apply::Refusal;
use super::deliver::{Delivered, Pushed};
use super::failure::Failure;
use super::pr_body::{self, TestResult};
use super::reporter::Reporter;
use super::worker::{Interrupt, JobEnd};

/// The comment's last words for a cancelled run.
const CANCELLED_NOTE: &str = "Cancelled on request; nothing was pushed by this run.\n";
/// The restart notice of a run given back to the queue at shutdown.
const RESTARTING: &str = "Backspace is restarting: this run will start again shortly";

/// How the interruptible phases of a run ended.
// One per run, moved once into `ending`: boxing the delivery would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RunEnd {
    Delivered(Delivered),
    Failed(Failure),
    Interrupted(Interrupt),
}

/// Everything a run's end shows, decided before any of it is sent.
pub(crate) struct Ending {
    /// The events that close the run's stream, in order.
    pub events: Vec<RunEvent>,
    /// Markdown under the progress comment's final state.
    pub comment_extra: Option<String>,
    pub reaction: Option<ReactionContent>,
    /// A reply in the review comment's thread that asked.
    pub review_reply: Option<String>,
    /// How the run finished and what it used, for the metrics (none when it will run again).
    pub finished: Option<(RunStatus, Usage, f64)>,
    pub job_end: JobEnd,
}

/// What the ending needs besides the outcome.
pub(crate) struct EndingContext<'a> {
    pub job: &'a Job,
    pub duration_ms: u64,
    /// The command word, for "comment `/backspace …`" advice.
    pub command_word: &'a str,
}

/// Pure: the ending of a run.
pub(crate) fn ending(cx: &EndingContext<'_>, end: RunEnd) -> Ending {
    match end {
        RunEnd::Delivered(Delivered::Pushed(p)) => pushed(cx, p),
        RunEnd::Delivered(Delivered::Answered { outcome, refused }) => {
            answered(cx, outcome, &refused)
        }
        RunEnd::Failed(f) => failed(cx, f),
        RunEnd::Interrupted(Interrupt::Cancelled) => cancelled(cx),
        RunEnd::Interrupted(Interrupt::Shutdown) => Ending {
            events: vec![RunEvent::progress("restart", RESTARTING)],
            ..unfinished(JobEnd::Release)
        },
        RunEnd::Interrupted(Interrupt::LeaseLost) => unfinished(JobEnd::Abandon),
    }
}

fn pushed(cx: &EndingContext<'_>, p: Pushed) -> Ending {
    let o = &p.outcome;
    let mut extra = format!("{}\n\n", o.summary.trim());
    if !p.refused.is_empty() {
        extra.push_str(&pr_body::refused_section(&p.refused));
    }
    if let StopReason::BudgetHit(_) | StopReason::Failed(_) = &o.stop {
        extra.push_str(&stopped_early_note(o, cx.command_word));
    }
    let review_reply = (cx.job.source == JobSource::ReviewComment)
        .then(|| format!("Pushed to this pull request: {}", o.title));
    let report = run_report(cx, o, Some(&p.pr_url), &p.files, p.test.as_ref());
    done(
        cx,
        RunStatus::Succeeded,
        o,
        Some(redact(&extra, &[])),
        review_reply,
        JobResult::Succeeded(report),
    )
}

fn stopped_early_note(o: &AgentOutcome, command_word: &str) -> String {
    format!(
        "The agent stopped early ({}); the pull request is a draft. \
         Comment `/{command_word} <what next>` to continue.\n",
        o.stop.message()
    )
}

fn answered(cx: &EndingContext<'_>, o: AgentOutcome, refused: &[Refusal]) -> Ending {
    let mut extra = format!("{}\n", o.answer());
    if !refused.is_empty() {
        extra.push('\n');
        extra.push_str(&pr_body::refused_section(refused));
    }
    let report = run_report(cx, &o, None, &[], None);
    let extra = Some(redact(&extra, &[]));
    let result = JobResult::Answered(report);
    done(cx, RunStatus::Answered, &o, extra, None, result)
}

/// The ending of a run that got a result (pushed or answered).
fn done(
    cx: &EndingContext<'_>,
    status: RunStatus,
    o: &AgentOutcome,
    comment_extra: Option<String>,
    review_reply: Option<String>,
    result: JobResult,
) -> Ending {
    let cost = o.cost_usd.unwrap_or(0.0);
    Ending {
        events: vec![complete(cx, status, o.usage, cost)],
        comment_extra,
        reaction: Some(ReactionContent::Rocket),
        review_reply,
        finished: Some((status, o.usage, cost)),
        job_end: JobEnd::Finished(result),
    }
}

fn failed(cx: &EndingContext<'_>, f: Failure) -> Ending {
    let status = RunStatus::Failed;
    let result = JobResult::Failed(FailureReport {
        error: f.what.clone(),
        duration_ms: Some(cx.duration_ms),
    });
    Ending {
        events: vec![
            RunEvent::Error { message: f.what },
            complete(cx, status, Usage::default(), 0.0),
        ],
        comment_extra: Some(format!("**What to do:** {}\n", f.advice)),
        reaction: Some(ReactionContent::Confused),
        review_reply: None,
        finished: Some((status, Usage::default(), 0.0)),
        job_end: JobEnd::Finished(result),
    }
}

fn cancelled(cx: &EndingContext<'_>) -> Ending {
    let status = RunStatus::Cancelled;
    let result = JobResult::Cancelled(CancelReport {
        reason: None,
        duration_ms: Some(cx.duration_ms),
    });
    Ending {
        events: vec![complete(cx, status, Usage::default(), 0.0)],
        comment_extra: Some(CANCELLED_NOTE.into()),
        reaction: None,
        review_reply: None,
        finished: Some((status, Usage::default(), 0.0)),
        job_end: JobEnd::Finished(result),
    }
}

/// A run that stops here without finishing: it runs again, or another instance has it.
fn unfinished(job_end: JobEnd) -> Ending {
    Ending {
        events: vec![],
        comment_extra: None,
        reaction: None,
        review_reply: None,
        finished: None,
        job_end,
    }
}

fn complete(cx: &EndingContext<'_>, status: RunStatus, usage: Usage, cost_usd: f64) -> RunEvent {
    RunEvent::Complete {
        run_id: cx.job.id.clone(),
        status,
        duration_ms: cx.duration_ms,
        usage,
        cost_usd,
    }
}

fn run_report(
    cx: &EndingContext<'_>,
    o: &AgentOutcome,
    pr_url: Option<&str>,
    files: &[String],
    test: Option<&TestResult>,
) -> RunReport {
    RunReport {
        pr_url: pr_url.map(str::to_owned),
        files_changed: files.to_vec(),
        title: Some(o.title.clone()),
        summary: Some(o.summary.clone()),
        stop: Some(o.stop.message()),
        usage: o.usage,
        cost_usd: o.cost_usd,
        cache_read_share: Some(o.cache_read_share()),
        turns: Some(o.turns),
        test: test.map(|t| TestReport {
            command: t.command.clone(),
            passed: t.passed,
            summary: t.summary.clone(),
        }),
        duration_ms: Some(cx.duration_ms),
    }
}

/// Carries out an ending: events, metrics, the comment's last state, the reaction and the
/// review reply; returns how the job ends.
pub(crate) async fn report(
    job: &Job,
    client: &RepoClient,
    reporter: Reporter,
    ending: Ending,
    elapsed: Duration,
) -> JobEnd {
    for event in ending.events {
        reporter.emit(event);
    }
    if let (Some(m), Some((status, usage, cost))) = (crate::metrics::global(), ending.finished) {
        m.run_finished(elapsed, &usage, cost, status);
    }
    reporter.finish(ending.comment_extra).await;
    if let Some(reaction) = ending.reaction {
        react(client, job, reaction).await;
    }
    if let (Some(reply), Some(id), Some(n)) = (ending.review_reply, job.comment_id, job.number) {
        if let Err(e) = client
            .reply_to_review_comment(IssueNumber(n), id, &reply)
            .await
        {
            tracing::warn!(error = %e, "could not reply in the review thread");
        }
    }
    ending.job_end
}
