//! Why a run failed, in words the requester reads: what failed (for the `error` event and the
//! comment) and what to do about it. The advice is fixed text, one constant per situation, so
//! that the same failure always says the same thing wherever it is raised.

use crate::github::GithubError;

use super::git::GitError;
use super::report::Spent;

/// What to do when a GitHub call failed.
pub const ADVICE_GITHUB: &str = "Check that the Backspace app is still installed on this \
    repository with its permissions, then comment again.";
/// What to do when host git failed (a clone, a push).
pub const ADVICE_GIT: &str =
    "If the branch moved on meanwhile, comment again to start from its new state.";
/// What to do about an invalid `.github/backspace.yml`.
pub const ADVICE_SETTINGS: &str =
    "Fix .github/backspace.yml on the default branch, then comment again.";
/// What to do about a `.github/backspace.yml` that is not text.
pub const ADVICE_SETTINGS_UTF8: &str = "Save the file as UTF-8 and comment again.";
/// What to do when the repository asks for a sandbox image the server does not run.
pub const ADVICE_IMAGE: &str = "Remove `image:` from .github/backspace.yml, or ask the operator \
    to configure that image.";
/// What to do when a repository's `network.allow` names hosts the operator does not allow.
pub const ADVICE_NETWORK: &str = "Remove those hosts from `network.allow` in \
    .github/backspace.yml, or ask the operator to add them to BACKSPACE_EGRESS_ALLOW.";
/// What to do when a repository's `setup` command failed.
pub const ADVICE_SETUP: &str = "Fix the `setup` commands in .github/backspace.yml, then comment \
     again. The sandbox has no network but the hosts in `network.allow`: a setup that downloads \
     needs its registry there.";
/// What to do when the sandbox failed.
pub const ADVICE_SANDBOX: &str = "This is a problem on the Backspace server: the operator should \
    check the Docker engine and the sandbox image.";
/// What to do when the repository's content is what the sandbox could not take (too big for
/// its disk, too many files to copy out).
pub const ADVICE_REPOSITORY: &str = "This comes from the repository's content, not from the \
    Backspace server: make the repository (or the request) smaller, or ask the operator to \
    raise BACKSPACE_SANDBOX_DISK.";
/// What to do when the server itself failed (a temporary directory, applying the tree).
pub const ADVICE_SERVER: &str = "This is a problem on the Backspace server.";
/// What to do when the model failed before anything changed.
pub const ADVICE_MODEL: &str = "Try again later; if it keeps failing, the operator should check \
    the model API key and status.";
/// What to do about a pull request whose branch lives in a fork.
pub const ADVICE_FORK: &str =
    "Ask for the change on an issue instead: Backspace will open its own pull request.";
/// What to do about a pull request whose branch Backspace may not push to (the default
/// branch, a protected branch, a closed pull request, a deleted branch).
pub const ADVICE_BRANCH: &str = "Ask for the change on an issue instead: Backspace will open its \
    own pull request. Or open a pull request from a new, unprotected branch and ask there.";
/// What to do about an iteration that names no pull request.
pub const ADVICE_NO_PULL_REQUEST: &str = "Comment on the pull request itself.";

/// Where a failure comes from, for callers that answer differently (`backspace run` turns the
/// repository's own mistakes into usage errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The repository's settings (`.github/backspace.yml`) are invalid.
    Settings,
    /// A `setup` command of the repository's settings failed.
    Setup,
    GitHub,
    Git,
    Sandbox,
    /// What the repository holds is more than the sandbox takes (its disk, the copy-out caps).
    Repository,
    Model,
    Server,
    /// What was asked cannot be done here (a fork's branch).
    Request,
}

/// A failure the requester should read about, with what to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What failed, for the `error` event and the comment.
    pub what: String,
    /// What to do about it.
    pub advice: &'static str,
    pub cause: Cause,
    /// What the agent had used when the failure came after it ran (a push refused, say).
    pub spent: Option<Spent>,
}

impl Failure {
    pub fn new(cause: Cause, what: impl Into<String>, advice: &'static str) -> Self {
        Failure {
            what: what.into(),
            advice,
            cause,
            spent: None,
        }
    }

    /// The failure, with what the agent had used before it.
    pub fn with_spent(mut self, spent: Spent) -> Self {
        self.spent = Some(spent);
        self
    }

    pub fn github(action: &str, e: GithubError) -> Self {
        Failure::new(Cause::GitHub, format!("{action}: {e}"), ADVICE_GITHUB)
    }

    pub fn git(action: &str, e: GitError) -> Self {
        Failure::new(Cause::Git, format!("{action}: {e}"), ADVICE_GIT)
    }

    pub fn server(what: impl Into<String>) -> Self {
        Failure::new(Cause::Server, what, ADVICE_SERVER)
    }

    pub fn settings(what: impl Into<String>, advice: &'static str) -> Self {
        Failure::new(Cause::Settings, what, advice)
    }
}
