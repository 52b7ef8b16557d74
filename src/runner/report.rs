//! The last phase, and the one place where a run's outcome (pushed, answered, failed,
//! cancelled, interrupted by a shutdown or a lost lease) becomes what everyone sees: the closing
//! events, the progress comment's last words (verdict first: the outcome and its links, then
//! the summary, the test result and what to do next), the reaction, the reply in a review
//! thread, the metrics and the job's result. Every finished run says what it spent, failed and
//! cancelled ones too. [`ending`] decides all of it without I/O (tested as such); [`report`]
//! carries it out.

use crate::agent::{AgentOutcome, StopReason};
use crate::github::{IssueNumber, ReactionContent, RepoClient};
use crate::job::{CancelReport, FailureReport, JobResult, RunReport, TestReport};
use crate::progress::{files_line, Closing};
use crate::redact::redact;
use crate::run_event::{RunEvent, RunStatus, Usage};
use crate::safe_text::neutralize;
use crate::store::Job;

use super::announce::react;
use super::apply::Refusal;
use super::deliver::{Delivered, Pushed};
use super::failure::Failure;
use super::pr_body::{self, TestResult};
use super::reporter::Reporter;
use super::worker::{Interrupt, JobEnd};

/// The comment's last words for a cancelled run.
const CANCELLED_NOTE: &str = "Stopped on request; nothing was pushed by this run.";
/// The restart notice of a run given back to the queue at shutdown.
const RESTARTING: &str = "Backspace is restarting: this run will start again shortly";

/// What a run spent on the model, as far as it is known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub usage: Usage,
    /// `None` when a model used has no known price.
    pub cost_usd: Option<f64>,
}

impl Spent {
    pub fn of(outcome: &AgentOutcome) -> Spent {
        Spent {
            usage: outcome.usage,
            cost_usd: outcome.cost_usd,
        }
    }
}

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
    /// The progress comment's last words (none when the run will go on elsewhere).
    pub closing: Option<Closing>,
    pub reaction: Option<ReactionContent>,
    /// A reply in a review comment's thread: the comment, and the text.
    pub review_reply: Option<(u64, String)>,
    pub job_end: JobEnd,
}

/// What the ending needs besides the outcome.
pub(crate) struct EndingContext<'a> {
    pub job: &'a Job,
    pub duration_ms: u64,
    /// The command word, for "comment `/backspace …`" advice.
    pub command_word: &'a str,
    /// The run's live log, linked from the verdict.
    pub log_url: Option<&'a str>,
    /// What the agent's events said it used so far: what an end without an outcome (a cancel,
    /// a failure in the sandbox) reports.
    pub spent: Spent,
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

/// `[live log](…)` for a verdict line, when the run page is served.
fn log_link(cx: &EndingContext<'_>) -> String {
    cx.log_url
        .map(|u| format!(" · [live log]({u})"))
        .unwrap_or_default()
}

/// `[#12](https://github.com/o/r/pull/12)`.
fn pr_link(pr_url: &str) -> String {
    match pr_url.rsplit('/').next().filter(|n| !n.is_empty()) {
        Some(n) => format!("[#{n}]({pr_url})"),
        None => format!("[pull request]({pr_url})"),
    }
}

/// `` branch [`backspace/1-x`](https://github.com/o/r/tree/backspace/1-x) ``.
fn branch_link(pr_url: &str, branch: &str) -> String {
    match pr_url.rsplit_once("/pull/") {
        Some((repo_url, _)) => format!("branch [`{branch}`]({repo_url}/tree/{branch})"),
        None => format!("branch `{branch}`"),
    }
}

fn failing_test(p: &Pushed) -> Option<&TestResult> {
    p.test.as_ref().filter(|t| !t.passed)
}

/// The verdict line of a pushed run.
fn pushed_headline(cx: &EndingContext<'_>, p: &Pushed) -> String {
    let verb = if p.opened { "Opened" } else { "Pushed to" };
    let draft = if p.opened && p.draft.is_some() {
        "draft "
    } else {
        ""
    };
    let pr = pr_link(&p.pr_url);
    let stopped_early = !matches!(p.outcome.stop, StopReason::Finished);
    let verdict = match failing_test(p) {
        Some(_) => format!("❌ {verb} {draft}pull request {pr}: the tests fail"),
        None if stopped_early => {
            format!("⚠️ {verb} {draft}pull request {pr}: the agent stopped early")
        }
        None => format!("✅ {verb} {draft}pull request {pr}"),
    };
    format!(
        "{verdict}{} · {}",
        log_link(cx),
        branch_link(&p.pr_url, &p.branch)
    )
}

/// Under the verdict of a pushed run: the summary, files, tests, refusals, why it is a draft,
/// and what to do next.
fn pushed_body(cx: &EndingContext<'_>, p: &Pushed) -> String {
    let word = cx.command_word;
    let o = &p.outcome;
    let mut body = format!("{}\n\n", neutralize(o.summary.trim()));
    body.push_str(&files_line(&p.files));
    body.push_str("\n\n");
    match &p.test {
        Some(t) if !t.passed => body.push_str(&pr_body::test_section(t)),
        Some(t) => {
            body.push_str(&pr_body::test_line(t));
            body.push_str("\n\n");
        }
        None => {}
    }
    if !p.refused.is_empty() {
        body.push_str(&pr_body::refused_section(&p.refused));
    }
    if let StopReason::BudgetHit(_) | StopReason::Failed(_) = &o.stop {
        body.push_str(&format!(
            "The agent stopped early: {}.\n\n",
            neutralize(&o.stop.message())
        ));
    }
    match (&p.draft, p.opened) {
        (Some(why), true) => body.push_str(&format!("The pull request is a draft: {why}.\n\n")),
        _ if failing_test(p).is_some() => {
            body.push_str("The pull request's tests fail with these commits.\n\n")
        }
        _ => {}
    }
    let next = if failing_test(p).is_some() || p.draft.is_some() {
        format!(
            "**Next:** comment `/{word} <what to fix>` on the pull request to go on, \
             or push a fix yourself."
        )
    } else {
        format!(
            "**Next:** review the pull request; comment `/{word} <what to change>` on it to \
             add commits."
        )
    };
    body.push_str(&next);
    body.push('\n');
    body
}

fn pushed(cx: &EndingContext<'_>, p: Pushed) -> Ending {
    let closing = Closing {
        headline: pushed_headline(cx, &p),
        body: redact(&pushed_body(cx, &p), &[]),
    };
    let o = &p.outcome;
    let review_reply = p.thread.map(|id| {
        let text = format!("Pushed to this pull request: {}", neutralize(&o.title));
        (id, text)
    });
    let report = run_report(cx, o, Some(&p.pr_url), &p.files, p.test.as_ref());
    done(
        cx,
        RunStatus::Succeeded,
        o,
        closing,
        review_reply,
        JobResult::Succeeded(report),
    )
}

fn answered(cx: &EndingContext<'_>, o: AgentOutcome, refused: &[Refusal]) -> Ending {
    let mut body = format!("{}\n", neutralize(&o.answer()));
    if !refused.is_empty() {
        body.push('\n');
        body.push_str(&pr_body::refused_section(refused));
    }
    let closing = Closing {
        headline: format!("💬 Answered{}", log_link(cx)),
        body: redact(&body, &[]),
    };
    let report = run_report(cx, &o, None, &[], None);
    let result = JobResult::Answered(report);
    done(cx, RunStatus::Answered, &o, closing, None, result)
}

/// The ending of a run that got a result (pushed or answered).
fn done(
    cx: &EndingContext<'_>,
    status: RunStatus,
    o: &AgentOutcome,
    closing: Closing,
    review_reply: Option<(u64, String)>,
    result: JobResult,
) -> Ending {
    let cost = o.cost_usd.unwrap_or(0.0);
    Ending {
        events: vec![complete(cx, status, o.usage, cost)],
        closing: Some(closing),
        reaction: Some(ReactionContent::Rocket),
        review_reply,
        job_end: JobEnd::Finished(result),
    }
}

fn failed(cx: &EndingContext<'_>, f: Failure) -> Ending {
    let status = RunStatus::Failed;
    let spent = f.spent.unwrap_or(cx.spent);
    let cost = spent.cost_usd.unwrap_or(0.0);
    let closing = Closing {
        headline: format!("❌ Backspace could not finish{}", log_link(cx)),
        body: format!(
            "**What failed:** {}\n\n**What to do:** {}\n",
            neutralize(&f.what),
            f.advice
        ),
    };
    let result = JobResult::Failed(FailureReport {
        error: f.what.clone(),
        duration_ms: Some(cx.duration_ms),
        usage: Some(spent.usage),
        cost_usd: spent.cost_usd,
    });
    Ending {
        events: vec![
            RunEvent::Error { message: f.what },
            complete(cx, status, spent.usage, cost),
        ],
        closing: Some(closing),
        reaction: Some(ReactionContent::Confused),
        review_reply: None,
        job_end: JobEnd::Finished(result),
    }
}

fn cancelled(cx: &EndingContext<'_>) -> Ending {
    let status = RunStatus::Cancelled;
    let spent = cx.spent;
    let cost = spent.cost_usd.unwrap_or(0.0);
    let closing = Closing {
        headline: format!("⏹️ Cancelled{}", log_link(cx)),
        body: format!(
            "{CANCELLED_NOTE} Comment `/{} <request>` to start again.\n",
            cx.command_word
        ),
    };
    let result = JobResult::Cancelled(CancelReport {
        reason: None,
        duration_ms: Some(cx.duration_ms),
        usage: Some(spent.usage),
        cost_usd: spent.cost_usd,
    });
    Ending {
        events: vec![complete(cx, status, spent.usage, cost)],
        closing: Some(closing),
        reaction: None,
        review_reply: None,
        job_end: JobEnd::Finished(result),
    }
}

/// A run that stops here without finishing: it runs again, or another instance has it.
fn unfinished(job_end: JobEnd) -> Ending {
    Ending {
        events: vec![],
        closing: None,
        reaction: None,
        review_reply: None,
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

/// Carries out an ending: events (the metrics count the run from its `complete`), the comment's
/// last state, the reaction and the review reply; returns how the job ends.
pub(crate) async fn report(
    job: &Job,
    client: &RepoClient,
    reporter: Reporter,
    ending: Ending,
) -> JobEnd {
    for event in ending.events {
        reporter.emit(event);
    }
    reporter.finish(ending.closing).await;
    if let Some(reaction) = ending.reaction {
        react(client, job, reaction).await;
    }
    if let (Some((id, reply)), Some(n)) = (ending.review_reply, job.number) {
        if let Err(e) = client
            .reply_to_review_comment(IssueNumber(n), id, &reply)
            .await
        {
            tracing::warn!(error = %e, "could not reply in the review thread");
        }
    }
    ending.job_end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{AgentSpec, JobSource, JobSpec, JobState};

    fn job() -> Job {
        Job {
            id: "run-1".into(),
            spec: JobSpec::Run(AgentSpec::default()),
            source: JobSource::Comment,
            state: JobState::Running,
            installation_id: Some(1),
            repository: "o/r".into(),
            clone_url: None,
            default_branch: None,
            number: Some(1),
            is_pull_request: false,
            comment_id: Some(5),
            requester: "alice".into(),
            prompt: "do it".into(),
            attempts: 1,
            lease_owner: None,
            lease_expires_at: None,
            result: None,
            cancel_requested: false,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    fn outcome() -> AgentOutcome {
        AgentOutcome {
            stop: StopReason::Finished,
            title: "Greet @octo/all".into(),
            summary: "Changed it for @alice.".into(),
            final_text: String::new(),
            usage: Usage {
                input_tokens: 1_000,
                ..Usage::default()
            },
            cost_usd: Some(0.02),
            turns: 2,
            transcript: vec![],
            duration: std::time::Duration::from_secs(3),
        }
    }

    fn pushed_run(test: Option<TestResult>) -> Pushed {
        let draft = pr_body::draft_reason(None, test.as_ref());
        Pushed {
            pr_url: "https://github.com/o/r/pull/2".into(),
            branch: "backspace/1-do-it".into(),
            opened: true,
            draft,
            files: vec!["a.rs".into()],
            refused: vec![],
            outcome: outcome(),
            test,
            thread: Some(9),
        }
    }

    fn cx(job: &Job) -> EndingContext<'_> {
        EndingContext {
            job,
            duration_ms: 4_000,
            command_word: "bs",
            log_url: Some("https://bs.example/runs/run-1"),
            spent: Spent {
                usage: Usage {
                    input_tokens: 700,
                    ..Usage::default()
                },
                cost_usd: Some(0.01),
            },
        }
    }

    #[test]
    fn a_pushed_run_leads_with_the_pull_request_log_and_branch_and_says_how_to_iterate() {
        let job = job();
        let e = ending(
            &cx(&job),
            RunEnd::Delivered(Delivered::Pushed(pushed_run(None))),
        );
        let c = e.closing.expect("a closing");
        assert_eq!(
            c.headline,
            "✅ Opened pull request [#2](https://github.com/o/r/pull/2) · \
             [live log](https://bs.example/runs/run-1) · \
             branch [`backspace/1-do-it`](https://github.com/o/r/tree/backspace/1-do-it)"
        );
        assert!(
            c.body
                .starts_with("Changed it for @&#8203;alice.\n\n**Files changed (1):** `a.rs`"),
            "{}",
            c.body
        );
        assert!(
            c.body.contains("comment `/bs <what to change>` on it"),
            "{}",
            c.body
        );
        let (thread, reply) = e.review_reply.expect("a reply");
        assert_eq!(
            (thread, reply.as_str()),
            (9, "Pushed to this pull request: Greet @&#8203;octo/all")
        );
    }

    #[test]
    fn a_failing_test_is_a_cross_a_draft_and_its_tail() {
        let job = job();
        let test = TestResult {
            command: "npm test".into(),
            passed: false,
            summary: "exit 1".into(),
            output: "1 failing: greet".into(),
        };
        let e = ending(
            &cx(&job),
            RunEnd::Delivered(Delivered::Pushed(pushed_run(Some(test)))),
        );
        let c = e.closing.expect("a closing");
        assert!(
            c.headline.starts_with("❌ Opened draft pull request [#2](https://github.com/o/r/pull/2): the tests fail ·"),
            "{}",
            c.headline
        );
        assert!(
            c.body.contains("**Tests:** ❌ `npm test` failed (exit 1)"),
            "{}",
            c.body
        );
        assert!(c.body.contains("1 failing: greet"), "{}", c.body);
        assert!(
            c.body.contains(
                "The pull request is a draft: the test command `npm test` failed (exit 1)."
            ),
            "{}",
            c.body
        );
        let JobEnd::Finished(JobResult::Succeeded(r)) = e.job_end else {
            panic!("a pushed run succeeds");
        };
        assert_eq!(r.test.map(|t| t.passed), Some(false));
    }

    #[test]
    fn failed_and_cancelled_runs_report_what_they_spent() {
        let job = job();
        let f = Failure::server("applying the tree").with_spent(Spent::of(&outcome()));
        let e = ending(&cx(&job), RunEnd::Failed(f));
        let spent = |u: &crate::run_event::Usage| u.input_tokens;
        assert!(matches!(
            e.events.as_slice(),
            [RunEvent::Error { .. }, RunEvent::Complete { usage, .. }] if spent(usage) == 1_000
        ));
        let JobEnd::Finished(JobResult::Failed(r)) = e.job_end else {
            panic!("failed");
        };
        assert_eq!(
            (r.usage.map(|u| u.input_tokens), r.cost_usd),
            (Some(1_000), Some(0.02))
        );

        let e = ending(&cx(&job), RunEnd::Interrupted(Interrupt::Cancelled));
        assert!(matches!(
            e.events.as_slice(),
            [RunEvent::Complete { status, usage, .. }]
                if *status == RunStatus::Cancelled && spent(usage) == 700
        ));
        let c = e.closing.expect("a closing");
        assert_eq!(
            c.headline,
            "⏹️ Cancelled · [live log](https://bs.example/runs/run-1)"
        );
        assert!(c.body.contains("`/bs <request>`"), "{}", c.body);
    }

    #[test]
    fn a_shutdown_has_no_last_words() {
        let job = job();
        let e = ending(&cx(&job), RunEnd::Interrupted(Interrupt::Shutdown));
        assert!(e.closing.is_none());
        assert!(!e
            .events
            .iter()
            .any(|e| matches!(e, RunEvent::Complete { .. })));
    }
}
