//! One agent run on GitHub, phase by phase: the permission gate, 👀, the progress comment, the
//! repository's settings, the clone, the sandbox and the agent, the host applying what came back,
//! the commit and push, the pull request, and the final comment with 🚀 (or 😕 and what to do).
//! Every way out ends in a visible result.

use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::agent::{AgentOutcome, AgentTask, IssueComment, IssueContext, StopReason};
use crate::github::{
    GateDecision, GithubError, IssueNumber, NewPullRequest, ProgressComment, ReactionContent,
    RepoClient, RepoName,
};
use crate::job::{JobKind, JobSource, JobState};
use crate::repo_settings::{self, RepoSettings};
use crate::run_event::{RunEvent, RunStatus, Usage};
use crate::store::Job;
use crate::trigger;

use super::apply::{self, Refusal};
use super::git::{self, Identity, Repo};
use super::pr_body::{self, PrFacts, TestResult};
use super::reporter::Reporter;
use super::work::{self, Work, WorkError};
use super::worker::{Interrupt, JobEnd};
use super::Services;

/// A failure the requester should read about, with what to do next.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What failed, for the `error` event and the comment.
    pub what: String,
    /// What to do about it.
    pub advice: &'static str,
}

impl Failure {
    fn new(what: impl Into<String>, advice: &'static str) -> Self {
        Failure {
            what: what.into(),
            advice,
        }
    }

    fn github(action: &str, e: GithubError) -> Self {
        Failure::new(
            format!("{action}: {e}"),
            "Check that the Backspace app is still installed on this repository with its permissions, then comment again.",
        )
    }

    fn git(action: &str, e: git::GitError) -> Self {
        Failure::new(
            format!("{action}: {e}"),
            "If the branch moved on meanwhile, comment again to start from its new state.",
        )
    }
}

/// How the interruptible part of a run ended.
enum Done {
    /// Commits were pushed; `created` when this run opened the pull request.
    Pushed {
        pr_url: String,
        files: Vec<String>,
        refused: Vec<Refusal>,
        outcome: AgentOutcome,
        test: Option<TestResult>,
    },
    /// No file changed: the agent's answer is the result.
    Answered {
        outcome: AgentOutcome,
        refused: Vec<Refusal>,
    },
}

/// The bot's identity for commits: `<slug>[bot]`.
fn bot_identity(login: &str, app_id: u64) -> Identity {
    Identity {
        name: login.to_owned(),
        email: format!("{app_id}+{login}@users.noreply.github.com"),
    }
}

fn requester_identity(job: &Job) -> Identity {
    let email = match job.context["requester_id"].as_u64() {
        Some(id) => format!("{id}+{}@users.noreply.github.com", job.requester),
        None => format!("{}@users.noreply.github.com", job.requester),
    };
    Identity {
        name: job.requester.clone(),
        email,
    }
}

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

/// Runs an agent job (a run or an iteration) to its end.
pub(crate) async fn agent_job(
    svc: &Services,
    job: &Job,
    mut interrupt: watch::Receiver<Option<Interrupt>>,
) -> JobEnd {
    let started = Instant::now();
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(e) => return JobEnd::failed(e),
    };

    if trigger::needs_permission(job.kind, job.source) {
        let decision = client.may_start_run(&job.requester).await;
        if !decision.is_allowed() {
            tracing::info!(requester = %job.requester, ?decision, "run refused: no write permission");
            if let (Some(n), false) = (job.number, job.requester.ends_with("[bot]")) {
                let text = format!(
                    "Sorry @{}, only people with write access to this repository can start Backspace.",
                    job.requester
                );
                if let Err(e) = client.reply_denied_once(IssueNumber(n), &text).await {
                    tracing::warn!(error = %e, "could not reply to a refused requester");
                }
            }
            let why = match decision {
                GateDecision::Denied(p) => format!("the requester's permission is {p}"),
                GateDecision::Unknown(r) => {
                    format!("the requester's permission could not be read: {r}")
                }
                GateDecision::Allowed(_) => String::new(),
            };
            return JobEnd::failed(why);
        }
    }

    react(&client, job, ReactionContent::Eyes).await;
    let comment = match job.number {
        Some(n) => {
            let first = crate::progress::Progress::new(&job.id).render(&Default::default());
            match ProgressComment::start(
                client.clone(),
                IssueNumber(n),
                &job.id,
                &first,
                svc.settings.progress.clone(),
            )
            .await
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "could not post the progress comment; the run goes on");
                    None
                }
            }
        }
        None => None,
    };
    let log_url = svc.run_link.as_ref().and_then(|f| f(&job.id));
    let reporter = Reporter::start(svc.store.clone(), &job.id, comment, log_url);
    reporter.emit(RunEvent::Start {
        run_id: job.id.clone(),
        repo: Some(job.repository.clone()),
        prompt: Some(job.prompt.clone()),
    });
    if job.attempts > 1 {
        reporter.emit(RunEvent::progress(
            "restart",
            format!(
                "started again after an interruption (attempt {} of {})",
                job.attempts, svc.settings.max_attempts
            ),
        ));
    } else {
        reporter.emit(RunEvent::progress("queued", "picked up"));
    }

    let phases = phases(svc, job, &client, &reporter);
    let ended = tokio::select! {
        r = phases => Ok(r),
        i = wait_interrupt(&mut interrupt) => Err(i),
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    if let Some(m) = crate::metrics::global() {
        let (status, usage, cost) = match &ended {
            Ok(Ok(Done::Pushed { outcome, .. })) => {
                (RunStatus::Succeeded, outcome.usage, outcome.cost_usd)
            }
            Ok(Ok(Done::Answered { outcome, .. })) => {
                (RunStatus::Answered, outcome.usage, outcome.cost_usd)
            }
            Ok(Err(_)) => (RunStatus::Failed, Usage::default(), None),
            Err(_) => (RunStatus::Cancelled, Usage::default(), None),
        };
        m.run_finished(started.elapsed(), &usage, cost.unwrap_or(0.0), status);
    }
    match ended {
        Ok(Ok(Done::Pushed {
            pr_url,
            files,
            refused,
            outcome,
            test,
        })) => {
            let status = RunStatus::Succeeded;
            reporter.emit(complete(job, status, duration_ms, &outcome));
            let mut extra = format!("{}\n\n", outcome.summary.trim());
            if !refused.is_empty() {
                extra.push_str(&pr_body::refused_section(&refused));
            }
            if let StopReason::BudgetHit(_) | StopReason::Failed(_) = &outcome.stop {
                extra.push_str(&format!("The agent stopped early ({}); the pull request is a draft. Comment `/{} <what next>` to continue.\n", outcome.stop.message(), svc.settings.command_word));
            }
            reporter
                .finish(Some(crate::redact::redact(&extra, &[])))
                .await;
            react(&client, job, ReactionContent::Rocket).await;
            if let (JobSource::ReviewComment, Some(id), Some(n)) =
                (job.source, job.comment_id, job.number)
            {
                let reply = format!("Pushed to this pull request: {}", outcome.title);
                if let Err(e) = client
                    .reply_to_review_comment(IssueNumber(n), id, &reply)
                    .await
                {
                    tracing::warn!(error = %e, "could not reply in the review thread");
                }
            }
            JobEnd::finished(
                JobState::Succeeded,
                result_json(
                    status,
                    Some(&pr_url),
                    &files,
                    &outcome,
                    test.as_ref(),
                    duration_ms,
                ),
            )
        }
        Ok(Ok(Done::Answered { outcome, refused })) => {
            let status = RunStatus::Answered;
            reporter.emit(complete(job, status, duration_ms, &outcome));
            let mut extra = format!("{}\n", answer_text(&outcome));
            if !refused.is_empty() {
                extra.push('\n');
                extra.push_str(&pr_body::refused_section(&refused));
            }
            reporter
                .finish(Some(crate::redact::redact(&extra, &[])))
                .await;
            react(&client, job, ReactionContent::Rocket).await;
            JobEnd::finished(
                JobState::Succeeded,
                result_json(status, None, &[], &outcome, None, duration_ms),
            )
        }
        Ok(Err(failure)) => {
            reporter.emit(RunEvent::Error {
                message: failure.what.clone(),
            });
            reporter.emit(RunEvent::Complete {
                run_id: job.id.clone(),
                status: RunStatus::Failed,
                duration_ms,
                usage: Usage::default(),
                cost_usd: 0.0,
            });
            reporter
                .finish(Some(format!("**What to do:** {}\n", failure.advice)))
                .await;
            react(&client, job, ReactionContent::Confused).await;
            JobEnd::finished(
                JobState::Failed,
                json!({ "status": "failed", "error": failure.what, "duration_ms": duration_ms }),
            )
        }
        Err(Interrupt::Cancelled) => {
            reporter.emit(RunEvent::Complete {
                run_id: job.id.clone(),
                status: RunStatus::Cancelled,
                duration_ms,
                usage: Usage::default(),
                cost_usd: 0.0,
            });
            reporter
                .finish(Some(
                    "Cancelled on request; nothing was pushed by this run.\n".into(),
                ))
                .await;
            JobEnd::finished(
                JobState::Cancelled,
                json!({ "status": "cancelled", "duration_ms": duration_ms }),
            )
        }
        Err(Interrupt::Shutdown) => {
            reporter.emit(RunEvent::progress(
                "restart",
                "Backspace is restarting: this run will start again shortly",
            ));
            reporter.finish(None).await;
            JobEnd::Release
        }
        Err(Interrupt::LeaseLost) => {
            reporter.finish(None).await;
            JobEnd::Abandon
        }
    }
}

async fn wait_interrupt(rx: &mut watch::Receiver<Option<Interrupt>>) -> Interrupt {
    loop {
        if let Some(i) = *rx.borrow_and_update() {
            return i;
        }
        if rx.changed().await.is_err() {
            // The worker went away without a word: treat it as a shutdown.
            return Interrupt::Shutdown;
        }
    }
}

fn complete(job: &Job, status: RunStatus, duration_ms: u64, o: &AgentOutcome) -> RunEvent {
    RunEvent::Complete {
        run_id: job.id.clone(),
        status,
        duration_ms,
        usage: o.usage,
        cost_usd: o.cost_usd.unwrap_or(0.0),
    }
}

fn answer_text(o: &AgentOutcome) -> String {
    let text = if o.final_text.trim().is_empty() {
        &o.summary
    } else {
        &o.final_text
    };
    let mut s = text.trim().to_owned();
    if let StopReason::BudgetHit(_) | StopReason::Failed(_) = &o.stop {
        s.push_str(&format!("\n\n_{}_", o.stop.message()));
    }
    s
}

fn result_json(
    status: RunStatus,
    pr_url: Option<&str>,
    files: &[String],
    o: &AgentOutcome,
    test: Option<&TestResult>,
    duration_ms: u64,
) -> Value {
    json!({
        "status": status,
        "pr_url": pr_url,
        "files_changed": files,
        "title": o.title,
        "summary": o.summary,
        "stop": o.stop.message(),
        "usage": o.usage,
        "cost_usd": o.cost_usd,
        "cache_read_share": o.cache_read_share(),
        "turns": o.turns,
        "test": test.map(|t| json!({ "command": t.command, "passed": t.passed, "summary": t.summary })),
        "duration_ms": duration_ms,
    })
}

/// What the branch and base of a run are.
struct Plan {
    /// The branch the commits go to.
    branch: String,
    /// What to clone: the branch itself when it exists already, else the base.
    clone_ref: String,
    create_branch: bool,
    base: String,
    /// The pull request being iterated on.
    existing_pr: Option<crate::github::PullRequest>,
}

async fn plan(
    job: &Job,
    client: &RepoClient,
    repo: &RepoName,
    default_branch: &str,
    token: &secrecy::SecretString,
    clone_url: &str,
) -> Result<Plan, Failure> {
    if job.kind == JobKind::Iterate {
        let n = job.number.ok_or_else(|| {
            Failure::new(
                "an iteration without a pull request number",
                "Comment on the pull request itself.",
            )
        })?;
        let pr = client
            .get_pull_request(IssueNumber(n))
            .await
            .map_err(|e| Failure::github("reading the pull request", e))?;
        if !pr.head_is_in(repo) {
            let head = pr
                .head
                .repo
                .as_ref()
                .map(|r| r.full_name.clone())
                .unwrap_or_else(|| "a deleted repository".into());
            return Err(Failure::new(
                format!("this pull request's branch lives in {head}, a fork; Backspace only pushes to branches of {repo}"),
                "Ask for the change on an issue instead: Backspace will open its own pull request.",
            ));
        }
        return Ok(Plan {
            branch: pr.head.branch.clone(),
            clone_ref: pr.head.branch.clone(),
            create_branch: false,
            base: pr.base.branch.clone(),
            existing_pr: Some(pr),
        });
    }
    let mut branch = git::branch_name(job.number, &job.prompt);
    if job.number.is_none() {
        // No issue ties two requests together: each API run gets its own branch.
        branch.push('-');
        branch.push_str(job.id.get(..8).unwrap_or(&job.id));
    }
    // A retry (or the same request again) continues on the branch Backspace created for it.
    let exists = git::remote_has_branch(clone_url, &branch, Some(token))
        .await
        .map_err(|e| Failure::git("looking for the branch", e))?;
    Ok(Plan {
        clone_ref: if exists {
            branch.clone()
        } else {
            default_branch.to_owned()
        },
        create_branch: !exists,
        branch,
        base: default_branch.to_owned(),
        existing_pr: None,
    })
}

/// The interruptible phases.
async fn phases(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    reporter: &Reporter,
) -> Result<Done, Failure> {
    let repo = client.repo().clone();
    // The repository's settings, from its default branch.
    let settings = match client.file(repo_settings::PATH, None).await {
        Ok(Some(bytes)) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                Failure::new(
                    format!("{} is not UTF-8 text", repo_settings::PATH),
                    "Save the file as UTF-8 and comment again.",
                )
            })?;
            RepoSettings::parse(&text).map_err(|e| {
                Failure::new(
                    e.to_string(),
                    "Fix .github/backspace.yml on the default branch, then comment again.",
                )
            })?
        }
        Ok(None) => RepoSettings::default(),
        Err(e) => return Err(Failure::github("reading .github/backspace.yml", e)),
    };
    if let Some(image) = &settings.image {
        if image != &svc.sandboxes.settings().image {
            return Err(Failure::new(
                format!("this server runs sandboxes from {} only; the repository asks for {image}", svc.sandboxes.settings().image),
                "Remove `image:` from .github/backspace.yml, or ask the operator to configure that image.",
            ));
        }
    }
    let info = client
        .repository()
        .await
        .map_err(|e| Failure::github("reading the repository", e))?;
    let clone_url = job.clone_url.clone().unwrap_or(info.clone_url.clone());
    let token = client
        .git_token()
        .await
        .map_err(|e| Failure::github("getting an installation token", e))?;
    let plan = plan(job, client, &repo, &info.default_branch, &token, &clone_url).await?;

    let dir = tempfile::tempdir().map_err(|e| {
        Failure::new(
            format!("no temporary directory: {e}"),
            "This is a problem on the Backspace server.",
        )
    })?;
    let checkout = dir.path().join("repo");
    let clone = Repo::clone(&clone_url, &checkout, Some(&token), Some(&plan.clone_ref))
        .await
        .map_err(|e| Failure::git("cloning the repository", e))?;
    if plan.create_branch {
        clone
            .create_branch(&plan.branch)
            .await
            .map_err(|e| Failure::git("creating the branch", e))?;
    }

    let task = task_for(job, client, &repo, &plan, &settings, svc).await;
    let agent = svc.agent(settings.max_turns);
    let events = reporter.sender();
    let result = work::work(&svc.sandboxes, &agent, Work { run_id: &job.id, checkout: &checkout, task: &task, settings: &settings, events: &events })
        .await
        .map_err(|e| match e {
            WorkError::Setup { .. } => Failure::new(e.to_string(), "Fix the `setup` commands in .github/backspace.yml, then comment again."),
            e if e.is_repository_content() => Failure::new(e.to_string(), WorkError::CONTENT_HINT),
            other => Failure::new(other.to_string(), "This is a problem on the Backspace server: the operator should check the Docker engine and the sandbox image."),
        })?;

    if let Some(m) = crate::metrics::global() {
        m.sandbox_started(result.sandbox_start);
    }
    let applied = apply::apply_copied_tree(
        result.tree.path(),
        &result.held_back,
        &checkout,
        &svc.settings.apply_policy,
    )
    .map_err(|e| {
        Failure::new(
            format!("applying the sandbox's changes: {e}"),
            "This is a problem on the Backspace server.",
        )
    })?;
    let files = clone
        .changed_files()
        .await
        .map_err(|e| Failure::git("listing the changes", e))?;
    let outcome = result.outcome;
    if files.is_empty() {
        if let StopReason::Failed(m) = &outcome.stop {
            return Err(Failure::new(format!("the agent failed before changing anything: {m}"), "Try again later; if it keeps failing, the operator should check the model API key and status."));
        }
        return Ok(Done::Answered {
            outcome,
            refused: applied.refused,
        });
    }

    reporter.emit(RunEvent::progress(
        "push",
        format!("committing {} files", files.len()),
    ));
    let bot = svc
        .github
        .bot_login()
        .await
        .map_err(|e| Failure::github("reading the app's identity", e))?;
    let message = git::commit_message(
        &outcome.title,
        &outcome.summary,
        Some(&requester_identity(job)),
    );
    clone
        .commit_all(&message, &bot_identity(&bot, svc.github.app_id()))
        .await
        .map_err(|e| Failure::git("committing", e))?;
    let token = client
        .git_token()
        .await
        .map_err(|e| Failure::github("getting an installation token", e))?;
    clone
        .push(&plan.branch, Some(&token))
        .await
        .map_err(|e| Failure::git("pushing the branch", e))?;
    reporter.emit(RunEvent::progress(
        "push",
        format!("pushed {}", plan.branch),
    ));

    let stopped_early = match &outcome.stop {
        StopReason::Finished => None,
        other => Some(other.message()),
    };
    let pr_url = match &plan.existing_pr {
        Some(pr) => pr.html_url.clone(),
        None => {
            let existing = client
                .find_open_pull_request(&plan.branch)
                .await
                .map_err(|e| Failure::github("looking for the pull request", e))?;
            match existing {
                Some(pr) => pr.html_url,
                None => {
                    let body = pr_body::pr_body(&PrFacts {
                        summary: &outcome.summary,
                        files: &files,
                        refused: &applied.refused,
                        test: result.test.as_ref(),
                        closes: job.number,
                        requester: &job.requester,
                        duration_ms: outcome.duration.as_millis() as u64,
                        usage: outcome.usage,
                        cost_usd: outcome.cost_usd,
                        run_id: &job.id,
                        stopped_early: stopped_early.clone(),
                        transcript: &outcome.transcript,
                        secrets: &[],
                    });
                    let pr = client
                        .create_pull_request(&NewPullRequest {
                            title: outcome.title.clone(),
                            head: plan.branch.clone(),
                            base: plan.base.clone(),
                            body,
                            draft: stopped_early.is_some(),
                        })
                        .await
                        .map_err(|e| Failure::github("opening the pull request", e))?;
                    pr.html_url
                }
            }
        }
    };
    reporter.emit(RunEvent::PrCreated {
        pr_url: pr_url.clone(),
        files_changed: files.clone(),
    });
    Ok(Done::Pushed {
        pr_url,
        files,
        refused: applied.refused,
        outcome,
        test: result.test,
    })
}

/// The agent's task: the request, the issue and its recent comments, and on a pull request its
/// description, earlier runs' summaries and the review comment's place.
async fn task_for(
    job: &Job,
    client: &RepoClient,
    repo: &RepoName,
    plan: &Plan,
    settings: &RepoSettings,
    svc: &Services,
) -> AgentTask {
    let mut request = job.prompt.clone();
    let mut issue = None;
    if let Some(n) = job.number {
        if let Ok(i) = client.get_issue(IssueNumber(n)).await {
            let bot = svc.github.bot_login().await.ok();
            let all: Vec<IssueComment> = client
                .list_issue_comments(IssueNumber(n))
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.author() != bot.as_deref() && Some(c.id) != job.comment_id)
                .map(|c| IssueComment {
                    author: c.author().unwrap_or("ghost").to_owned(),
                    body: c.body().to_owned(),
                })
                .collect();
            let comments = all[all.len().saturating_sub(10)..].to_vec();
            issue = Some(IssueContext {
                number: n,
                title: i.title,
                body: i.body.unwrap_or_default(),
                comments,
            });
        }
    }
    if let Some(pr) = &plan.existing_pr {
        request.push_str(&format!(
            "\n\nThis is a follow-up on pull request #{} (branch `{}`), which is checked out. Its description:\n{}",
            pr.number,
            pr.head.branch,
            pr.body.as_deref().unwrap_or("(none)")
        ));
        if let Some(n) = job.number {
            let earlier: Vec<String> = svc
                .store
                .jobs_for(&repo.full_name(), n)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|j| j.id != job.id && j.state == JobState::Succeeded)
                .filter_map(|j| {
                    j.result.and_then(|r| {
                        r["summary"]
                            .as_str()
                            .map(|s| format!("- {}: {}", j.prompt, s))
                    })
                })
                .collect();
            if !earlier.is_empty() {
                request.push_str(&format!(
                    "\n\nEarlier Backspace runs on this pull request:\n{}",
                    earlier.join("\n")
                ));
            }
        }
        if let Some(rc) = job.context.get("review_comment") {
            request.push_str(&format!(
                "\n\nThe request was made in a review comment on `{}` line {}:\n```diff\n{}\n```",
                rc["path"].as_str().unwrap_or("?"),
                rc["line"]
                    .as_u64()
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "?".into()),
                rc["diff_hunk"].as_str().unwrap_or("")
            ));
        }
    }
    AgentTask {
        repo: repo.full_name(),
        issue,
        request,
        repo_instructions: settings.instructions.clone(),
        test_command: settings.test.clone(),
    }
}
