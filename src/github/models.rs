//! Domain types for the GitHub calls: newtypes for names and numbers, and small structs holding
//! only the fields Backspace reads. Answers are read with octocrab's models where they fit
//! (converted here with `From`), and with these serde structs where GitHub's payloads outrun
//! octocrab's (the permission's `role_name`, a branch's `protected`, the contents API, webhook
//! deliveries' cursors); unknown fields are ignored, so GitHub adding fields never breaks us.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `owner/name` of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a repository name (owner/name): {0:?}")]
pub struct RepoNameError(pub String);

impl RepoName {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        RepoName {
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl FromStr for RepoName {
    type Err = RepoNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((owner, name)) if valid_part(owner) && valid_part(name) => {
                Ok(RepoName::new(owner, name))
            }
            _ => Err(RepoNameError(s.to_string())),
        }
    }
}

/// An installation of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstallationId(pub u64);

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of an issue or pull request within its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IssueNumber(pub u64);

impl fmt::Display for IssueNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub login: String,
    pub id: u64,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl User {
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }
}

/// An issue (or pull request) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    pub html_url: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl Comment {
    pub fn body(&self) -> &str {
        self.body.as_deref().unwrap_or("")
    }
    pub fn author(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.login.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    pub state: String,
    pub html_url: String,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }
}

/// The repository side of a pull request's head or base.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RepoRef {
    pub full_name: String,
    #[serde(default)]
    pub fork: bool,
    #[serde(default)]
    pub clone_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PullRequestRef {
    /// The branch name.
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
    /// `None` when the head repository was deleted.
    #[serde(default)]
    pub repo: Option<RepoRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub head: PullRequestRef,
    pub base: PullRequestRef,
    #[serde(default)]
    pub user: Option<User>,
}

impl PullRequest {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }

    /// True when the head branch lives in `repo` itself, so Backspace may push to it; a fork's
    /// branch (or a deleted head repository) is never pushed to.
    pub fn head_is_in(&self, repo: &RepoName) -> bool {
        self.head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&repo.full_name()))
    }
}

/// The reactions Backspace uses (GitHub has a few more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactionContent {
    /// A run started.
    Eyes,
    /// A run succeeded.
    Rocket,
    /// A run failed.
    Confused,
    #[serde(rename = "+1")]
    PlusOne,
    Heart,
}

impl ReactionContent {
    pub fn as_str(self) -> &'static str {
        match self {
            ReactionContent::Eyes => "eyes",
            ReactionContent::Rocket => "rocket",
            ReactionContent::Confused => "confused",
            ReactionContent::PlusOne => "+1",
            ReactionContent::Heart => "heart",
        }
    }
}

/// A branch, as far as pushing to it goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Branch {
    pub name: String,
    /// Branch protection is on (GitHub's `protected`).
    pub protected: bool,
}

/// A reaction, as listed on a comment or an issue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Reaction {
    pub id: u64,
    pub content: String,
    #[serde(default)]
    pub user: Option<User>,
}

/// One attempt GitHub made at delivering a webhook (`GET /app/hook/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDelivery {
    /// The attempt's id (what `POST /app/hook/deliveries/{id}/attempts` redelivers).
    pub id: u64,
    /// The event's id, the `X-GitHub-Delivery` header; shared by every attempt.
    pub guid: String,
    pub delivered_at_unix: u64,
    pub redelivery: bool,
    pub status: String,
    /// The HTTP status the receiver answered (0 when it could not be reached).
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
}

impl HookDelivery {
    /// The receiver took it (a 2xx).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

fn state_name<T: Serialize>(state: &T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "open".into())
}

impl From<&octocrab::models::Author> for User {
    fn from(a: &octocrab::models::Author) -> Self {
        User {
            login: a.login.clone(),
            id: a.id.0,
            kind: a.r#type.clone(),
        }
    }
}

impl From<octocrab::models::issues::Comment> for Comment {
    fn from(c: octocrab::models::issues::Comment) -> Self {
        Comment {
            id: c.id.0,
            body: c.body,
            user: Some(User::from(&c.user)),
            html_url: c.html_url.to_string(),
            created_at: Some(c.created_at.to_rfc3339()),
            updated_at: c.updated_at.map(|t| t.to_rfc3339()),
        }
    }
}

impl From<octocrab::models::issues::Issue> for Issue {
    fn from(i: octocrab::models::issues::Issue) -> Self {
        Issue {
            number: i.number,
            title: i.title,
            body: i.body,
            user: Some(User::from(&i.user)),
            state: state_name(&i.state),
            html_url: i.html_url.to_string(),
            pull_request: i
                .pull_request
                .map(|p| serde_json::json!({ "html_url": p.html_url.to_string() })),
        }
    }
}

impl From<&octocrab::models::Repository> for RepoRef {
    fn from(r: &octocrab::models::Repository) -> Self {
        RepoRef {
            full_name: r.full_name.clone().unwrap_or_else(|| r.name.clone()),
            fork: r.fork.unwrap_or(false),
            clone_url: r.clone_url.as_ref().map(|u| u.to_string()),
        }
    }
}

impl From<octocrab::models::pulls::PullRequest> for PullRequest {
    fn from(p: octocrab::models::pulls::PullRequest) -> Self {
        let side = |branch: String, sha: String, repo: Option<&octocrab::models::Repository>| {
            PullRequestRef {
                branch,
                sha,
                repo: repo.map(RepoRef::from),
            }
        };
        PullRequest {
            number: p.number,
            html_url: p.html_url.map(|u| u.to_string()).unwrap_or_default(),
            state: p
                .state
                .as_ref()
                .map(state_name)
                .unwrap_or_else(|| "open".into()),
            title: p.title.unwrap_or_default(),
            body: p.body,
            head: side(p.head.ref_field, p.head.sha, p.head.repo.as_ref()),
            base: side(p.base.ref_field, p.base.sha, p.base.repo.as_ref()),
            user: p.user.as_deref().map(User::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_parse_owner_and_name_only() {
        assert_eq!(
            "octo-org/hello.world".parse::<RepoName>(),
            Ok(RepoName::new("octo-org", "hello.world"))
        );
        for bad in ["", "a", "a/b/c", "/b", "a/", "../b", "a/.."] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fork_head_is_not_in_the_base_repository() {
        let pr: PullRequest = serde_json::from_value(serde_json::json!({
            "number": 1, "html_url": "h", "state": "open", "title": "t",
            "head": {"ref": "fix", "sha": "a", "repo": {"full_name": "someone/hello", "fork": true}},
            "base": {"ref": "main", "sha": "b", "repo": {"full_name": "octo/hello"}}
        }))
        .expect("valid");
        assert!(!pr.head_is_in(&RepoName::new("octo", "hello")));
        assert!(pr.head_is_in(&RepoName::new("someone", "hello")));
    }
}
