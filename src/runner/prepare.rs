//! The third phase: everything the sandbox needs, made on the host. The repository's settings
//! (`.github/backspace.yml` from the default branch), the branch the commits will go to (a new
//! `backspace/<issue>-<slug>`, or the pull request's own), a clone of it in a temporary
//! directory, and the agent's task with the repository's own instruction files (`AGENTS.md`
//! nearest first, `CLAUDE.md`, `.github/copilot-instructions.md`; see `instructions`).
//! `backspace run` shares [`parse_settings`] and [`workdir`].
//!
//! An iteration pushes only to the head branch of an open pull request whose head lives in this
//! repository, and never to the default branch or a protected branch (GitHub's `protected`):
//! anything else is refused here, before the sandbox starts, with a reply that says how to ask
//! instead ([`branch_refusal`], pure).

use std::path::PathBuf;

use secrecy::SecretString;

use crate::agent::AgentTask;
use crate::github::{Branch, IssueNumber, PullRequest, RepoClient, RepoName, ReviewComment};
use crate::job::{JobKind, JobSource};
use crate::repo_settings::{self, RepoSettings};
use crate::store::Job;

use super::failure::{
    Cause, Failure, ADVICE_BRANCH, ADVICE_FORK, ADVICE_IMAGE, ADVICE_NETWORK,
    ADVICE_NO_PULL_REQUEST, ADVICE_SETTINGS, ADVICE_SETTINGS_UTF8,
};
use super::git::{self, GitError, Repo};
use super::{instructions, task, Services};

/// What the branch and base of a run are.
pub(crate) struct Plan {
    /// The branch the commits go to.
    pub branch: String,
    /// What to clone: the branch itself when it exists already, else the base.
    clone_ref: String,
    create_branch: bool,
    pub base: String,
    /// The pull request being iterated on.
    pub existing_pr: Option<PullRequest>,
}

/// A checkout on the host, ready for the sandbox.
pub struct Workdir {
    /// Removed when dropped.
    _dir: tempfile::TempDir,
    /// The clone's top level (inside the temporary directory).
    pub checkout: PathBuf,
}

/// A temporary directory for a run's clone.
pub fn workdir() -> Result<Workdir, Failure> {
    let dir =
        tempfile::tempdir().map_err(|e| Failure::server(format!("no temporary directory: {e}")))?;
    let checkout = dir.path().join("repo");
    Ok(Workdir {
        _dir: dir,
        checkout,
    })
}

/// Reads `.github/backspace.yml` (its bytes, when the repository has one).
pub fn parse_settings(bytes: Option<Vec<u8>>) -> Result<RepoSettings, Failure> {
    let Some(bytes) = bytes else {
        return Ok(RepoSettings::default());
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        let what = format!("{} is not UTF-8 text", repo_settings::PATH);
        Failure::settings(what, ADVICE_SETTINGS_UTF8)
    })?;
    RepoSettings::parse(&text).map_err(|e| Failure::settings(e.to_string(), ADVICE_SETTINGS))
}

/// What a GitHub run prepared.
pub(crate) struct Prepared {
    pub settings: RepoSettings,
    pub plan: Plan,
    pub workdir: Workdir,
    pub clone: Repo,
    pub task: AgentTask,
    /// The review comment whose thread gets the answer (an iteration asked for in a review
    /// comment, or the first comment of a review).
    pub thread: Option<u64>,
}

/// Settings, plan, clone and task of a run on GitHub.
pub(crate) async fn prepare(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
) -> Result<Prepared, Failure> {
    let repo = client.repo().clone();
    let settings = read_settings(client).await?;
    check_image(svc, &settings)?;
    check_network(&svc.sandboxes.settings().egress_allow, &settings)?;
    let info = client
        .repository()
        .await
        .map_err(|e| Failure::github("reading the repository", e))?;
    let clone_url = job.clone_url.clone().unwrap_or(info.clone_url.clone());
    let plan = plan(job, client, &repo, &info.default_branch, &clone_url).await?;
    let workdir = workdir()?;
    let clone_ref = Some(plan.clone_ref.as_str());
    let (url, checkout) = (clone_url.as_str(), &workdir.checkout);
    let clone = with_git_token(client, "cloning the repository", |token| async move {
        if checkout.exists() {
            // What a refused first attempt left behind.
            let _ = tokio::fs::remove_dir_all(checkout).await;
        }
        Repo::clone(url, checkout, Some(&token), clone_ref).await
    })
    .await?;
    if plan.create_branch {
        clone
            .create_branch(&plan.branch)
            .await
            .map_err(|e| Failure::git("creating the branch", e))?;
    }
    let review = task::review_comments(job, client).await;
    let existing_pr = plan.existing_pr.as_ref();
    let mut task = task::task_for(svc, job, client, existing_pr, &settings, &review).await;
    let found = repository_instructions(job, &task, &review, &workdir.checkout).await;
    task.instruction_files = found.files;
    task.other_instruction_files = found.others;
    let thread = match job.source {
        JobSource::ReviewComment => job.comment_id,
        JobSource::Review => review.first().map(|c| c.id),
        _ => None,
    };
    Ok(Prepared {
        settings,
        plan,
        workdir,
        clone,
        task,
        thread,
    })
}

/// The repository's instruction files for what the request concerns: the files of the review
/// comments that asked, and the paths the request and the issue name that exist in the clone.
async fn repository_instructions(
    job: &Job,
    task: &AgentTask,
    review: &[ReviewComment],
    checkout: &std::path::Path,
) -> instructions::Instructions {
    let mut concerns: Vec<String> = review.iter().map(|c| c.path.clone()).collect();
    let asked_in = job.spec.agent().and_then(|a| a.review_comment.as_ref());
    concerns.extend(asked_in.and_then(|rc| rc.path.clone()));
    let mut prose = task.request.clone();
    if let Some(issue) = &task.issue {
        prose.push('\n');
        prose.push_str(&issue.title);
        prose.push('\n');
        prose.push_str(&issue.body);
    }
    let checkout = checkout.to_path_buf();
    // A walk of the clone: off the async threads.
    let read = tokio::task::spawn_blocking(move || {
        let mentioned = instructions::mentioned_paths(&prose);
        concerns.extend(instructions::existing(&checkout, mentioned));
        instructions::read(&checkout, &concerns)
    });
    read.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the repository's instruction files");
        instructions::Instructions::default()
    })
}

/// An installation token for git, asked for when it is needed (it may have expired meanwhile).
pub(crate) async fn git_token(client: &RepoClient) -> Result<SecretString, Failure> {
    client
        .git_token()
        .await
        .map_err(|e| Failure::github("getting an installation token", e))
}

/// Runs a git operation with the installation token; when GitHub refuses the token (expired or
/// revoked), once more with a newly minted one.
pub(crate) async fn with_git_token<T, F, Fut>(
    client: &RepoClient,
    action: &str,
    op: F,
) -> Result<T, Failure>
where
    F: Fn(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, GitError>>,
{
    match op(git_token(client).await?).await {
        Err(e) if e.is_auth_failure() => {
            tracing::info!(
                action,
                "git was refused the installation token; minting a new one"
            );
            let token = client
                .fresh_token()
                .await
                .map_err(|e| Failure::github("getting an installation token", e))?;
            op(token).await.map_err(|e| Failure::git(action, e))
        }
        other => other.map_err(|e| Failure::git(action, e)),
    }
}

/// The repository's settings, from its default branch.
pub(crate) async fn read_settings(client: &RepoClient) -> Result<RepoSettings, Failure> {
    let bytes = client
        .file(repo_settings::PATH, None)
        .await
        .map_err(|e| Failure::github("reading .github/backspace.yml", e))?;
    parse_settings(bytes)
}

/// A repository's `network.allow` must lie within the operator's `BACKSPACE_EGRESS_ALLOW`.
pub fn check_network(
    operator: &crate::egress::Allowlist,
    settings: &RepoSettings,
) -> Result<(), Failure> {
    settings
        .check_network(operator)
        .map_err(|e| Failure::settings(e.to_string(), ADVICE_NETWORK))
}

/// A repository may not choose its own sandbox image: only the configured one runs.
fn check_image(svc: &Services, settings: &RepoSettings) -> Result<(), Failure> {
    let configured = &svc.sandboxes.settings().image;
    match &settings.image {
        Some(image) if image != configured => Err(Failure::settings(
            format!(
                "this server runs sandboxes from {configured} only; \
                 the repository asks for {image}"
            ),
            ADVICE_IMAGE,
        )),
        _ => Ok(()),
    }
}

async fn plan(
    job: &Job,
    client: &RepoClient,
    repo: &RepoName,
    default_branch: &str,
    clone_url: &str,
) -> Result<Plan, Failure> {
    if job.kind() == JobKind::Iterate {
        return plan_iteration(job, client, repo, default_branch).await;
    }
    let mut branch = git::branch_name(job.number, &job.prompt);
    if job.number.is_none() {
        // No issue ties two requests together: each API run gets its own branch, named with
        // the random end of its id (its start is the time, shared by runs close together).
        branch.push('-');
        branch.push_str(
            job.id
                .get(job.id.len().saturating_sub(8)..)
                .unwrap_or(&job.id),
        );
    }
    // A retry (or the same request again) continues on the branch Backspace created for it.
    let name = branch.as_str();
    let exists = with_git_token(client, "looking for the branch", |token| async move {
        git::remote_has_branch(clone_url, name, Some(&token)).await
    })
    .await?;
    let clone_ref = if exists {
        branch.clone()
    } else {
        default_branch.to_owned()
    };
    Ok(Plan {
        clone_ref,
        create_branch: !exists,
        branch,
        base: default_branch.to_owned(),
        existing_pr: None,
    })
}

/// An iteration works on the pull request's own branch, when Backspace may push there.
async fn plan_iteration(
    job: &Job,
    client: &RepoClient,
    repo: &RepoName,
    default_branch: &str,
) -> Result<Plan, Failure> {
    let n = job.number.ok_or_else(|| {
        let what = "an iteration without a pull request number";
        Failure::new(Cause::Request, what, ADVICE_NO_PULL_REQUEST)
    })?;
    let pr = client
        .get_pull_request(IssueNumber(n))
        .await
        .map_err(|e| Failure::github("reading the pull request", e))?;
    // The branch is read only for a head in this repository: a fork's is none of ours.
    let branch = if pr.head_is_in(repo) && pr.is_open() {
        client
            .branch(&pr.head.branch)
            .await
            .map_err(|e| Failure::github("reading the pull request's branch", e))?
    } else {
        None
    };
    if let Some(refused) = branch_refusal(&pr, repo, default_branch, branch.as_ref()) {
        return Err(refused);
    }
    Ok(Plan {
        branch: pr.head.branch.clone(),
        clone_ref: pr.head.branch.clone(),
        create_branch: false,
        base: pr.base.branch.clone(),
        existing_pr: Some(pr),
    })
}

/// Pure: why an iteration may not push to the pull request's head branch, if it may not. The
/// head must live in this repository, the pull request be open, the branch exist, and be
/// neither the default branch nor protected.
pub(crate) fn branch_refusal(
    pr: &PullRequest,
    repo: &RepoName,
    default_branch: &str,
    branch: Option<&Branch>,
) -> Option<Failure> {
    let head = &pr.head.branch;
    let refuse = |what: String, advice| Some(Failure::new(Cause::Request, what, advice));
    if !pr.head_is_in(repo) {
        let from = match &pr.head.repo {
            Some(r) => r.full_name.clone(),
            None => "a deleted repository".into(),
        };
        return refuse(
            format!(
                "this pull request's branch lives in {from}, a fork; \
                 Backspace only pushes to branches of {repo}"
            ),
            ADVICE_FORK,
        );
    }
    if !pr.is_open() {
        return refuse(
            format!(
                "this pull request is {}; Backspace only pushes to open pull requests",
                pr.state
            ),
            ADVICE_BRANCH,
        );
    }
    if head.eq_ignore_ascii_case(default_branch) {
        return refuse(
            format!(
                "this pull request's branch is `{head}`, the repository's default branch; \
                 Backspace never pushes to it"
            ),
            ADVICE_BRANCH,
        );
    }
    match branch {
        None => refuse(
            format!("this pull request's branch `{head}` no longer exists"),
            ADVICE_BRANCH,
        ),
        Some(b) if b.protected => refuse(
            format!("this pull request's branch `{head}` is protected; Backspace never pushes to a protected branch"),
            ADVICE_BRANCH,
        ),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(head_repo: &str, head: &str, state: &str) -> PullRequest {
        serde_json::from_value(serde_json::json!({
            "number": 7, "html_url": "h", "state": state, "title": "t",
            "head": {"ref": head, "sha": "a", "repo": {"full_name": head_repo}},
            "base": {"ref": "release", "sha": "b", "repo": {"full_name": "octo/app"}}
        }))
        .expect("a pull request")
    }

    fn branch(name: &str, protected: bool) -> Branch {
        Branch {
            name: name.into(),
            protected,
        }
    }

    #[test]
    fn only_an_open_same_repository_unprotected_feature_branch_is_pushed_to() {
        let repo = RepoName::new("octo", "app");
        let ok = pull("octo/app", "feature", "open");
        assert_eq!(
            branch_refusal(&ok, &repo, "main", Some(&branch("feature", false))),
            None
        );
        let why = |pr: &PullRequest, b: Option<&Branch>| {
            branch_refusal(pr, &repo, "main", b).map(|f| (f.what, f.advice))
        };
        let (what, advice) = why(&pull("someone/app", "feature", "open"), None).expect("fork");
        assert!(what.contains("a fork"), "{what}");
        assert_eq!(advice, ADVICE_FORK);
        let (what, advice) = why(
            &pull("octo/app", "main", "open"),
            Some(&branch("main", false)),
        )
        .expect("main");
        assert!(what.contains("the repository's default branch"), "{what}");
        assert_eq!(advice, ADVICE_BRANCH);
        let (what, _) = why(
            &pull("octo/app", "feature", "closed"),
            Some(&branch("feature", false)),
        )
        .expect("closed");
        assert!(what.contains("is closed"), "{what}");
        let (what, _) = why(&ok, Some(&branch("feature", true))).expect("protected");
        assert!(what.contains("protected"), "{what}");
        let (what, _) = why(&ok, None).expect("deleted");
        assert!(what.contains("no longer exists"), "{what}");
    }

    #[test]
    fn no_settings_file_is_the_defaults() {
        assert_eq!(parse_settings(None), Ok(RepoSettings::default()));
    }

    #[test]
    fn settings_that_are_not_text_or_not_valid_say_so() {
        let e = parse_settings(Some(vec![0xff, 0xfe])).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.advice, e.cause),
            (
                ".github/backspace.yml is not UTF-8 text",
                ADVICE_SETTINGS_UTF8,
                Cause::Settings
            )
        );
        let e = parse_settings(Some(b"max_turns: lots\n".to_vec())).unwrap_err();
        assert_eq!((e.advice, e.cause), (ADVICE_SETTINGS, Cause::Settings));
    }
}
