//! The fifth phase: what the sandbox handed back becomes a result. The host applies the
//! sandbox's working tree onto its own clean clone under the apply policy, lists what changed,
//! and decides: no change is an answer; a change is committed (as the bot, with the requester as
//! co-author), pushed without force (a token GitHub refuses is minted again once), and its pull
//! request opened, or found again when a retry or a lost answer already opened it. [`apply`], [`verdict`] and [`commit`] are shared with `backspace run`,
//! which fetches the commit into the user's checkout instead of pushing it.

use std::path::Path;

use crate::agent::{AgentOutcome, StopReason};
use crate::github::{NewPullRequest, RepoClient};
use crate::run_event::RunEvent;
use crate::store::Job;

use super::apply::{self, Policy, Refusal};
use super::failure::{Cause, Failure, ADVICE_MODEL};
use super::git::{self, Identity, Repo};
use super::pr_body::{self, PrFacts, TestResult};
use super::prepare::{with_git_token, Prepared};
use super::reporter::Reporter;
use super::work::WorkResult;
use super::Services;

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

/// Applies the sandbox's tree onto `clone` and lists what changed.
pub async fn apply(clone: &Repo, tree: &Path, policy: &Policy) -> Result<Applied, Failure> {
    let report = apply::apply_tree(tree, clone.dir(), policy)
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
    pub files: Vec<String>,
    pub refused: Vec<Refusal>,
    pub outcome: AgentOutcome,
    pub test: Option<TestResult>,
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
    let applied = apply(&prepared.clone, worked.tree.path(), policy).await?;
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
    let bot = bot_identity(svc).await?;
    let co_author = requester_identity(job);
    commit(&prepared.clone, &worked.outcome, &bot, Some(&co_author)).await?;
    let (branch, clone) = (&prepared.plan.branch, &prepared.clone);
    with_git_token(client, "pushing the branch", |token| async move {
        clone.push(branch, Some(&token)).await
    })
    .await?;
    reporter.emit(RunEvent::progress("push", format!("pushed {branch}")));
    let pr_url = pull_request(job, client, &prepared, &worked, &applied).await?;
    reporter.emit(RunEvent::PrCreated {
        pr_url: pr_url.clone(),
        files_changed: applied.files.clone(),
    });
    Ok(Delivered::Pushed(Pushed {
        pr_url,
        files: applied.files,
        refused: applied.refused,
        outcome: worked.outcome,
        test: worked.test,
    }))
}

/// The pull request the commits are on: the one iterated on, the one a retry already opened,
/// or a new one (a draft when the agent stopped early).
async fn pull_request(
    job: &Job,
    client: &RepoClient,
    prepared: &Prepared,
    worked: &WorkResult,
    applied: &Applied,
) -> Result<String, Failure> {
    let plan = &prepared.plan;
    if let Some(pr) = &plan.existing_pr {
        return Ok(pr.html_url.clone());
    }
    let existing = client
        .find_open_pull_request(&plan.branch)
        .await
        .map_err(|e| Failure::github("looking for the pull request", e))?;
    if let Some(pr) = existing {
        return Ok(pr.html_url);
    }
    let outcome = &worked.outcome;
    let stopped_early = match &outcome.stop {
        StopReason::Finished => None,
        other => Some(other.message()),
    };
    let body = pr_body::pr_body(&PrFacts {
        summary: &outcome.summary,
        files: &applied.files,
        refused: &applied.refused,
        test: worked.test.as_ref(),
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
    Ok(pr.html_url)
}

/// The bot's identity for commits: `<slug>[bot]`.
async fn bot_identity(svc: &Services) -> Result<Identity, Failure> {
    let login = svc
        .github
        .bot_login()
        .await
        .map_err(|e| Failure::github("reading the app's identity", e))?;
    let email = format!("{}+{login}@users.noreply.github.com", svc.github.app_id());
    Ok(Identity { name: login, email })
}

/// The requester as co-author, with their noreply address.
fn requester_identity(job: &Job) -> Identity {
    let id = job.spec.agent().and_then(|a| a.requester_id);
    let email = match id {
        Some(id) => format!("{id}+{}@users.noreply.github.com", job.requester),
        None => format!("{}@users.noreply.github.com", job.requester),
    };
    Identity {
        name: job.requester.clone(),
        email,
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
