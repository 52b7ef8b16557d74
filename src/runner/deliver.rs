//! The fifth phase: what the sandbox handed back becomes a result. The host applies the
//! sandbox's working tree onto its own clean clone under the apply policy, lists what changed,
//! and decides: no change is an answer; a change is committed (as the bot user, with the
//! requester as co-author), pushed without force (a token GitHub refuses is minted again once),
//! marked with the `Backspace` check run, and its pull request opened (a draft when the tests
//! fail; the requester asked to review it), or found again when a retry or a lost answer already
//! opened it. [`apply`], [`verdict`] and [`commit`] are shared with `backspace run`,
//! which fetches the commit into the user's checkout instead of pushing it.

use crate::agent::{AgentOutcome, StopReason};
use crate::github::{noreply_email, IssueNumber, NewPullRequest, PullRequest, RepoClient};
use crate::job::JobSource;
use crate::run_event::RunEvent;
use crate::store::Job;

use super::apply::{self, Policy, Refusal};
use super::failure::{Cause, Failure, ADVICE_MODEL};
use super::git::{self, Identity, Repo};
use super::pr_body::{self, PrFacts, TestResult};
use super::prepare::{with_git_token, Prepared};
use super::reporter::Reporter;
use super::work::WorkResult;
use super::{check_run, Services};

/// What the sandbox's tree did to the host's clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files that differ from the commit the clone is on.
    pub files: Vec<String>,
    /// What the apply policy refused to take.
    pub refused: Vec<Refusal>,
}

/// What to do with a finished sandbox phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed: post the agent's answer.
    Answer,
    /// Commit the changes.
    Commit,
    /// The agent failed before changing anything: a failure, not an answer.
    AgentFailed(String),
}

/// Applies the sandbox's tree onto `clone` and lists what changed. What copy-out held back
/// (links that leave the tree, refused entries) stays as the clone has it.
pub async fn apply(clone: &Repo, worked: &WorkResult, policy: &Policy) -> Result<Applied, Failure> {
    let tree = worked.tree.path();
    let report = apply::apply_copied_tree(tree, &worked.held_back, clone.dir(), policy)
        .map_err(|e| Failure::server(format!("applying the sandbox's changes: {e}")))?;
    let files = clone
        .changed_files()
        .await
        .map_err(|e| Failure::git("listing the changes", e))?;
    Ok(Applied {
        files,
        refused: report.refused,
    })
}

/// Pure: commit, answer, or fail.
pub fn verdict(outcome: &AgentOutcome, applied: &Applied) -> Verdict {
    match (&outcome.stop, applied.files.is_empty()) {
        (StopReason::Failed(m), true) => Verdict::AgentFailed(m.clone()),
        (_, true) => Verdict::Answer,
        (_, false) => Verdict::Commit,
    }
}

/// The failure of an agent that failed before changing anything.
pub fn agent_failed(message: &str) -> Failure {
    let what = format!("the agent failed before changing anything: {message}");
    Failure::new(Cause::Model, what, ADVICE_MODEL)
}

/// Commits everything in `clone` as `author`; returns the commit.
pub async fn commit(
    clone: &Repo,
    outcome: &AgentOutcome,
    author: &Identity,
    co_author: Option<&Identity>,
) -> Result<String, Failure> {
    let message = git::commit_message(&outcome.title, &outcome.summary, co_author);
    clone
        .commit_all(&message, author)
        .await
        .map_err(|e| Failure::git("committing", e))?
        .ok_or_else(|| Failure::server("nothing to commit after all"))
}

/// How a run on GitHub delivered.
pub(crate) enum Delivered {
    /// Commits were pushed and the pull request opened or updated.
    Pushed(Pushed),
    /// No file changed: the agent's answer is the result.
    Answered {
        outcome: AgentOutcome,
        refused: Vec<Refusal>,
    },
}

pub(crate) struct Pushed {
    pub pr_url: String,
    pub branch: String,
    /// This run opened the pull request (it did not iterate on one).
    pub opened: bool,
    /// Why the pull request this run opened is a draft.
    pub draft: Option<String>,
    pub files: Vec<String>,
    pub refused: Vec<Refusal>,
    pub outcome: AgentOutcome,
    pub test: Option<TestResult>,
    /// The review comment whose thread gets the answer (an iteration asked for in a review).
    pub thread: Option<u64>,
}

/// Applies, commits, pushes and opens the pull request of a run on GitHub.
pub(crate) async fn deliver(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    prepared: Prepared,
    worked: WorkResult,
    reporter: &Reporter,
) -> Result<Delivered, Failure> {
    let policy = &svc.settings.apply_policy;
    let applied = apply(&prepared.clone, &worked, policy).await?;
    match verdict(&worked.outcome, &applied) {
        Verdict::AgentFailed(m) => return Err(agent_failed(&m)),
        Verdict::Answer => {
            return Ok(Delivered::Answered {
                outcome: worked.outcome,
                refused: applied.refused,
            })
        }
        Verdict::Commit => {}
    }
    let n = applied.files.len();
    reporter.emit(RunEvent::progress("push", format!("committing {n} files")));
    let bot = bot_identity(svc, client).await;
    let co_author = requester_identity(job);
    let sha = commit(&prepared.clone, &worked.outcome, &bot, Some(&co_author)).await?;
    let (branch, clone) = (&prepared.plan.branch, &prepared.clone);
    with_git_token(client, "pushing the branch", |token| async move {
        clone.push(branch, Some(&token)).await
    })
    .await?;
    reporter.emit(RunEvent::progress("push", format!("pushed {branch}")));
    let log_url = svc.run_link.as_ref().and_then(|f| f(&job.id));
    let check = check_run::start(client, &sha, log_url.as_deref(), &job.id).await;
    let pr = pull_request(svc, job, client, &prepared, &worked, &applied).await;
    if let Some(check) = check {
        check_run::finish(client, &check, worked.test.as_ref(), log_url.as_deref()).await;
    }
    let pr = pr?;
    if pr.opened {
        request_review(job, client, pr.number).await;
    }
    reporter.emit(RunEvent::PrCreated {
        pr_url: pr.url.clone(),
        files_changed: applied.files.clone(),
    });
    Ok(Delivered::Pushed(Pushed {
        pr_url: pr.url,
        branch: branch.clone(),
        opened: pr.opened,
        draft: pr.draft,
        files: applied.files,
        refused: applied.refused,
        outcome: worked.outcome,
        test: worked.test,
        thread: prepared.thread,
    }))
}

/// The pull request a run's commits are on.
struct OnPullRequest {
    url: String,
    number: u64,
    /// This run opened it.
    opened: bool,
    draft: Option<String>,
}

/// The pull request the commits are on: the one iterated on, the one a retry already opened,
/// or a new one (a draft when the tests fail or the agent stopped early).
async fn pull_request(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    prepared: &Prepared,
    worked: &WorkResult,
    applied: &Applied,
) -> Result<OnPullRequest, Failure> {
    let plan = &prepared.plan;
    let found = |pr: &PullRequest| OnPullRequest {
        url: pr.html_url.clone(),
        number: pr.number,
        opened: false,
        draft: None,
    };
    if let Some(pr) = &plan.existing_pr {
        return Ok(found(pr));
    }
    let existing = client
        .find_open_pull_request(&plan.branch)
        .await
        .map_err(|e| Failure::github("looking for the pull request", e))?;
    if let Some(pr) = existing {
        return Ok(found(&pr));
    }
    let outcome = &worked.outcome;
    let stopped_early = match &outcome.stop {
        StopReason::Finished => None,
        other => Some(other.message()),
    };
    let draft = pr_body::draft_reason(stopped_early.as_deref(), worked.test.as_ref());
    let log_url = svc.run_link.as_ref().and_then(|f| f(&job.id));
    let body = pr_body::pr_body(&PrFacts {
        summary: &outcome.summary,
        files: &applied.files,
        refused: &applied.refused,
        blocked: Some(&worked.blocked),
        test: worked.test.as_ref(),
        closes: job.number,
        requester: &job.requester,
        duration_ms: outcome.duration.as_millis() as u64,
        usage: outcome.usage,
        cost_usd: outcome.cost_usd,
        run_id: &job.id,
        draft: draft.clone(),
        instructions: &prepared.task.instruction_paths(),
        log_url: log_url.as_deref(),
        command_word: &svc.settings.command_word,
        transcript: &outcome.transcript,
        secrets: &[],
    });
    let pr = client
        .create_pull_request(&NewPullRequest {
            title: outcome.title.clone(),
            head: plan.branch.clone(),
            base: plan.base.clone(),
            body,
            draft: draft.is_some(),
        })
        .await
        .map_err(|e| Failure::github("opening the pull request", e))?;
    Ok(OnPullRequest {
        url: pr.html_url,
        number: pr.number,
        opened: true,
        draft,
    })
}

/// Asks the requester to review the pull request the run opened. Runs from the API and the
/// CLI have no GitHub requester; a refusal (the requester cannot review here) is only logged.
async fn request_review(job: &Job, client: &RepoClient, number: u64) {
    if matches!(job.source, JobSource::Api | JobSource::Cli) {
        return;
    }
    let reviewers = [job.requester.as_str()];
    if let Err(e) = client
        .request_reviewers(IssueNumber(number), &reviewers)
        .await
    {
        tracing::warn!(error = %e, "could not ask the requester to review the pull request");
    }
}

/// The bot's identity for commits: `<slug>[bot]` with the bot user's noreply address, which
/// GitHub attributes the commit by. Without the bot user's id (GitHub did not answer), the
/// address without it: the commit is still made.
async fn bot_identity(svc: &Services, client: &RepoClient) -> Identity {
    match svc.github.bot_user(client).await {
        Ok(bot) => Identity {
            email: bot.noreply_email(),
            name: bot.login,
        },
        Err(e) => {
            tracing::warn!(error = %e, "could not read the bot user; committing without its id");
            let login = svc
                .github
                .bot_login()
                .await
                .unwrap_or_else(|_| "backspace[bot]".to_owned());
            Identity {
                email: noreply_email(None, &login),
                name: login,
            }
        }
    }
}

/// The requester as co-author, with their noreply address.
fn requester_identity(job: &Job) -> Identity {
    let id = job.spec.agent().and_then(|a| a.requester_id);
    Identity {
        name: job.requester.clone(),
        email: noreply_email(id, &job.requester),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::BudgetKind;

    fn outcome(stop: StopReason) -> AgentOutcome {
        AgentOutcome {
            stop,
            title: "t".into(),
            summary: "s".into(),
            final_text: "s".into(),
            usage: Default::default(),
            cost_usd: None,
            turns: 1,
            transcript: vec![],
            duration: Default::default(),
        }
    }

    #[test]
    fn no_change_is_an_answer_unless_the_agent_failed() {
        let none = Applied::default();
        let some = Applied {
            files: vec!["a".into()],
            refused: vec![],
        };
        assert_eq!(
            verdict(&outcome(StopReason::Finished), &none),
            Verdict::Answer
        );
        assert_eq!(
            verdict(&outcome(StopReason::Finished), &some),
            Verdict::Commit
        );
        let failed = outcome(StopReason::Failed("overloaded".into()));
        assert_eq!(
            verdict(&failed, &none),
            Verdict::AgentFailed("overloaded".into())
        );
        // Work worth keeping is committed even when the agent failed after it.
        assert_eq!(verdict(&failed, &some), Verdict::Commit);
        let budget = outcome(StopReason::BudgetHit(BudgetKind::Turns { limit: 3 }));
        assert_eq!(verdict(&budget, &none), Verdict::Answer);
    }
}
