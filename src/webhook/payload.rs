//! The parts of GitHub's webhook payloads that Backspace reads, as serde structs. Unknown fields
//! are ignored; the fields named here are required unless they are `Option`, so a payload missing
//! one is refused with the path of the field (serde_path_to_error).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub login: String,
    pub id: u64,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl Account {
    /// GitHub marks apps and other automation as `Bot`.
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref() == Some("Bot") || self.login.ends_with("[bot]")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub owner: Account,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub fork: bool,
    pub clone_url: Option<String>,
    pub html_url: Option<String>,
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct InstallationRef {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Label {
    pub name: String,
}

/// Present on an issue that is a pull request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IssuePullRequestLink {
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub user: Account,
    pub state: Option<String>,
    #[serde(default)]
    pub labels: Vec<Label>,
    pub pull_request: Option<IssuePullRequestLink>,
    pub html_url: Option<String>,
    /// When the issue last changed (a label added changes it): the time of a label event.
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: Option<String>,
    pub user: Account,
    pub html_url: Option<String>,
    /// How the author relates to the repository (`OWNER`, `MEMBER`, `COLLABORATOR`,
    /// `CONTRIBUTOR`, `NONE`, …): without the first three, no write access.
    #[serde(default)]
    pub author_association: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BodyChange {
    pub from: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct CommentChanges {
    pub body: Option<BodyChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentPayload {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    pub sender: Account,
    pub installation: Option<InstallationRef>,
    #[serde(default)]
    pub changes: Option<CommentChanges>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssuesPayload {
    pub action: String,
    pub issue: Issue,
    pub label: Option<Label>,
    pub repository: Repository,
    pub sender: Account,
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct BranchRef {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
    /// `null` when the head repository was deleted.
    pub repo: Option<Repository>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub title: Option<String>,
    pub body: Option<String>,
    pub user: Account,
    pub head: BranchRef,
    pub base: BranchRef,
    #[serde(default)]
    pub merged: Option<bool>,
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestPayload {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Account,
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ReviewComment {
    pub id: u64,
    pub body: Option<String>,
    pub user: Account,
    pub path: String,
    pub line: Option<u64>,
    pub original_line: Option<u64>,
    pub diff_hunk: Option<String>,
    pub commit_id: Option<String>,
    pub in_reply_to_id: Option<u64>,
    pub html_url: Option<String>,
    /// How the author relates to the repository (`OWNER`, `MEMBER`, `COLLABORATOR`,
    /// `CONTRIBUTOR`, `NONE`, …): without the first three, no write access.
    #[serde(default)]
    pub author_association: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewCommentPayload {
    pub action: String,
    pub comment: ReviewComment,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Account,
    pub installation: Option<InstallationRef>,
}

/// A submitted pull request review: its body and who wrote it (its comments are fetched by the
/// worker).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    pub body: Option<String>,
    pub user: Account,
    /// `approved`, `changes_requested`, `commented`.
    pub state: Option<String>,
    pub commit_id: Option<String>,
    pub html_url: Option<String>,
    /// How the author relates to the repository (`OWNER`, `MEMBER`, `COLLABORATOR`,
    /// `CONTRIBUTOR`, `NONE`, …): without the first three, no write access.
    #[serde(default)]
    pub author_association: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewPayload {
    pub action: String,
    pub review: Review,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Account,
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct InstallationRepository {
    pub id: u64,
    pub full_name: String,
    pub name: Option<String>,
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Installation {
    pub id: u64,
    pub account: Account,
    pub app_id: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationPayload {
    pub action: String,
    pub installation: Installation,
    #[serde(default)]
    pub repositories: Option<Vec<InstallationRepository>>,
    pub sender: Account,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRepositoriesPayload {
    pub action: String,
    pub installation: Installation,
    #[serde(default)]
    pub repositories_added: Vec<InstallationRepository>,
    #[serde(default)]
    pub repositories_removed: Vec<InstallationRepository>,
    pub sender: Account,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PingHook {
    pub app_id: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PingPayload {
    pub zen: Option<String>,
    pub hook_id: Option<u64>,
    pub hook: Option<PingHook>,
}

/// The few fields read from any payload, before deciding whether it is parsed in full.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope {
    pub action: Option<String>,
    pub installation: Option<InstallationRef>,
    pub repository: Option<EnvelopeRepository>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeRepository {
    pub full_name: String,
}
