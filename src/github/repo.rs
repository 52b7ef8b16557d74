//! The REST calls of one run, for one repository of one installation: the permission gate,
//! issues and comments, reactions, files on the default branch, pull requests, review replies.
//! Each call takes the cached installation token scoped to this repository; a 401 drops the
//! installation's cache so the next call mints a new one. Writes wait for the installation's
//! pacer.

use base64::Engine as _;
use http::Method;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::app::GithubApp;
use super::models::{
    Comment, InstallationId, Issue, IssueNumber, PullRequest, ReactionContent, RepoName,
};
use super::permission::{GateDecision, Permission, DENIED_REPLY_MARKER};
use super::transport::{Answer, Attempt};
use super::GithubError;

/// Comments per page when listing (GitHub's maximum).
const PER_PAGE: usize = 100;
/// Pages read at most when listing, so a huge thread cannot stall a run.
const MAX_PAGES: usize = 30;

/// What `POST /repos/{owner}/{repo}/pulls` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    /// The branch with the changes (in this repository).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    pub body: String,
    pub draft: bool,
}

/// The repository facts a run reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryInfo {
    pub full_name: String,
    pub default_branch: String,
    pub private: bool,
    pub clone_url: String,
    #[serde(default)]
    pub fork: bool,
}

#[derive(Deserialize)]
struct PermissionAnswer {
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct ContentAnswer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// The client of one repository through one installation. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RepoClient {
    app: GithubApp,
    installation: InstallationId,
    repo: RepoName,
}

impl RepoClient {
    pub(crate) fn new(app: GithubApp, installation: InstallationId, repo: RepoName) -> Self {
        RepoClient {
            app,
            installation,
            repo,
        }
    }

    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    pub fn installation(&self) -> InstallationId {
        self.installation
    }

    pub fn app(&self) -> &GithubApp {
        &self.app
    }

    /// The installation token of this repository, for host-side git over HTTPS (user
    /// `x-access-token`, see [`super::git_basic_auth_header`]).
    pub async fn git_token(&self) -> Result<SecretString, GithubError> {
        self.app
            .installation_token(self.installation, &self.repo)
            .await
    }

    pub(super) fn url(&self, tail: &[&str]) -> Result<url::Url, GithubError> {
        let mut segments = vec!["repos", self.repo.owner.as_str(), self.repo.name.as_str()];
        segments.extend_from_slice(tail);
        self.app.inner.transport.url(&segments)
    }

    fn note_failure(&self, e: &GithubError) {
        if e.status() == Some(401) {
            self.app.forget_installation(self.installation);
        }
    }

    pub(super) async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        if method != Method::GET {
            self.app.pacer(self.installation).acquire().await;
        }
        let mut refreshed = false;
        loop {
            let token = self.git_token().await?;
            let result = self
                .app
                .inner
                .transport
                .send(method.clone(), &url, Some(&token), body.as_ref())
                .await;
            match result {
                // A revoked token: GitHub did nothing with the request, so one more try with a
                // freshly minted token is safe.
                Err(e) if e.status() == Some(401) && !refreshed => {
                    self.note_failure(&e);
                    refreshed = true;
                }
                Err(e) => {
                    self.note_failure(&e);
                    return Err(e);
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, url: url::Url) -> Result<T, GithubError> {
        self.call(Method::GET, url, None).await?.json()
    }

    /// One attempt at editing a comment, for the progress writer's own retry loop.
    pub(crate) async fn attempt_update_comment(&self, comment_id: u64, body: &str) -> Attempt {
        let url = match self.url(&["issues", "comments", &comment_id.to_string()]) {
            Ok(u) => u,
            Err(e) => return Attempt::Failed(e),
        };
        let token = match self.git_token().await {
            Ok(t) => t,
            Err(e) => return Attempt::Failed(e),
        };
        self.app.pacer(self.installation).acquire().await;
        let body = serde_json::json!({ "body": body });
        let attempt = self
            .app
            .inner
            .transport
            .attempt(&Method::PATCH, &url, Some(&token), Some(&body))
            .await;
        match &attempt {
            Attempt::Failed(e) | Attempt::Retry { error: e, .. } => self.note_failure(e),
            Attempt::Done(_) => {}
        }
        attempt
    }

    pub(crate) fn retry_policy(&self) -> &super::RetryPolicy {
        &self.app.inner.transport.policy
    }

    // --- the permission gate ---

    /// The user's role on this repository.
    pub async fn permission(&self, user: &str) -> Result<Permission, GithubError> {
        let url = self.url(&["collaborators", user, "permission"])?;
        let answer: PermissionAnswer = self.get(url).await?;
        Ok(Permission::from_api(
            &answer.permission,
            answer.role_name.as_deref(),
        ))
    }

    /// May `user` start a run here? Fails closed: an error or a timeout (the gate's, retries
    /// included) is no.
    pub async fn may_start_run(&self, user: &str) -> GateDecision {
        match tokio::time::timeout(self.app.gate_timeout(), self.permission(user)).await {
            Ok(Ok(p)) if p.can_start_runs() => GateDecision::Allowed(p),
            Ok(Ok(p)) => GateDecision::Denied(p),
            Ok(Err(e)) => {
                tracing::warn!(repo = %self.repo, user, error = %e, "permission check failed; denying");
                GateDecision::Unknown(e.to_string())
            }
            Err(_) => {
                tracing::warn!(repo = %self.repo, user, "permission check timed out; denying");
                GateDecision::Unknown("permission check timed out".into())
            }
        }
    }

    /// Has the bot already answered a denied user on this issue (a bot comment carrying the
    /// denied marker)?
    pub async fn denied_reply_exists(&self, issue: IssueNumber) -> Result<bool, GithubError> {
        let bot = self.app.bot_login().await?;
        Ok(self
            .list_issue_comments(issue)
            .await?
            .iter()
            .any(|c| c.author() == Some(bot.as_str()) && c.body().contains(DENIED_REPLY_MARKER)))
    }

    /// Posts `text` (with the hidden denied marker) unless the issue already has such a reply:
    /// at most one per issue. Returns whether it posted.
    pub async fn reply_denied_once(
        &self,
        issue: IssueNumber,
        text: &str,
    ) -> Result<bool, GithubError> {
        let key = (self.repo.full_name().to_ascii_lowercase(), issue);
        // Wait for any other denial on this issue to finish deciding.
        loop {
            {
                let mut busy = self.app.inner.denial_locks.lock().await;
                if busy.insert(key.clone()) {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let result = async {
            if self.denied_reply_exists(issue).await? {
                return Ok(false);
            }
            self.create_comment(issue, &format!("{text}\n\n{DENIED_REPLY_MARKER}"))
                .await?;
            Ok(true)
        }
        .await;
        self.app.inner.denial_locks.lock().await.remove(&key);
        result
    }

    // --- issues and comments ---

    pub async fn get_issue(&self, issue: IssueNumber) -> Result<Issue, GithubError> {
        self.get(self.url(&["issues", &issue.0.to_string()])?).await
    }

    /// Every comment of an issue (or pull request conversation), oldest first.
    pub async fn list_issue_comments(
        &self,
        issue: IssueNumber,
    ) -> Result<Vec<Comment>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.url(&["issues", &issue.0.to_string(), "comments"])?;
            url.query_pairs_mut()
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
            let batch: Vec<Comment> = self.get(url).await?;
            let done = batch.len() < PER_PAGE;
            all.extend(batch);
            if done {
                break;
            }
        }
        Ok(all)
    }

    pub async fn get_comment(&self, comment_id: u64) -> Result<Comment, GithubError> {
        self.get(self.url(&["issues", "comments", &comment_id.to_string()])?)
            .await
    }

    pub async fn create_comment(
        &self,
        issue: IssueNumber,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let url = self.url(&["issues", &issue.0.to_string(), "comments"])?;
        self.call(Method::POST, url, Some(serde_json::json!({ "body": body })))
            .await?
            .json()
    }

    pub async fn update_comment(
        &self,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let url = self.url(&["issues", "comments", &comment_id.to_string()])?;
        self.call(
            Method::PATCH,
            url,
            Some(serde_json::json!({ "body": body })),
        )
        .await?
        .json()
    }

    /// The bot's newest comment on the issue whose body holds `marker` (a run's progress
    /// comment after a restart, say).
    pub async fn find_bot_comment_with_marker(
        &self,
        issue: IssueNumber,
        marker: &str,
    ) -> Result<Option<Comment>, GithubError> {
        let bot = self.app.bot_login().await?;
        Ok(self
            .list_issue_comments(issue)
            .await?
            .into_iter()
            .rev()
            .find(|c| c.author() == Some(bot.as_str()) && c.body().contains(marker)))
    }

    // --- reactions ---

    async fn react(&self, tail: &[&str], content: ReactionContent) -> Result<(), GithubError> {
        let url = self.url(tail)?;
        self.call(
            Method::POST,
            url,
            Some(serde_json::json!({ "content": content.as_str() })),
        )
        .await
        .map(|_| ())
    }

    /// A reaction on an issue comment (200 if it was already there, 201 if new: both fine).
    pub async fn react_to_comment(
        &self,
        comment_id: u64,
        content: ReactionContent,
    ) -> Result<(), GithubError> {
        let id = comment_id.to_string();
        self.react(&["issues", "comments", &id, "reactions"], content)
            .await
    }

    /// A reaction on the issue (or pull request) itself, for runs started by a label.
    pub async fn react_to_issue(
        &self,
        issue: IssueNumber,
        content: ReactionContent,
    ) -> Result<(), GithubError> {
        let n = issue.0.to_string();
        self.react(&["issues", &n, "reactions"], content).await
    }

    /// A reaction on a pull request review comment.
    pub async fn react_to_review_comment(
        &self,
        comment_id: u64,
        content: ReactionContent,
    ) -> Result<(), GithubError> {
        let id = comment_id.to_string();
        self.react(&["pulls", "comments", &id, "reactions"], content)
            .await
    }

    // --- repository and files ---

    pub async fn repository(&self) -> Result<RepositoryInfo, GithubError> {
        self.get(self.url(&[])?).await
    }

    /// A file's bytes at `git_ref` (the default branch when `None`); `None` when there is no
    /// such file. A directory or a file too large for the contents API is an error.
    pub async fn file(
        &self,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<Vec<u8>>, GithubError> {
        let mut tail = vec!["contents"];
        tail.extend(path.split('/').filter(|s| !s.is_empty()));
        let mut url = self.url(&tail)?;
        if let Some(r) = git_ref {
            url.query_pairs_mut().append_pair("ref", r);
        }
        let answer = match self.call(Method::GET, url, None).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let decode_err = |reason: &str| GithubError::Decode {
            method: "GET".into(),
            path: format!("contents/{path}"),
            reason: reason.into(),
        };
        let value: serde_json::Value = answer.json()?;
        if value.is_array() {
            return Err(decode_err("is a directory"));
        }
        let content: ContentAnswer =
            serde_json::from_value(value).map_err(|e| decode_err(&e.to_string()))?;
        if content.kind != "file" {
            return Err(decode_err(&format!("is a {}", content.kind)));
        }
        if content.encoding.as_deref() != Some("base64") {
            return Err(decode_err("too large for the contents API"));
        }
        // GitHub wraps the base64 text at 60 columns.
        let text: String = content
            .content
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Some)
            .map_err(|e| decode_err(&e.to_string()))
    }

    // --- pull requests ---

    pub async fn create_pull_request(
        &self,
        pr: &NewPullRequest,
    ) -> Result<PullRequest, GithubError> {
        let url = self.url(&["pulls"])?;
        let body = serde_json::json!({
            "title": pr.title,
            "head": pr.head,
            "base": pr.base,
            "body": pr.body,
            "draft": pr.draft,
            "maintainer_can_modify": true,
        });
        match self.call(Method::POST, url, Some(body)).await {
            Ok(answer) => answer.json(),
            // The pull request exists already: a retried POST whose first attempt went through,
            // or a run resumed after a restart. Never two pull requests for one branch.
            Err(e) if e.status() == Some(422) && e.to_string().contains("already exists") => {
                match self.find_open_pull_request(&pr.head).await? {
                    Some(existing) => Ok(existing),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Changes the title and/or body of a pull request (a follow-up run's summary).
    pub async fn update_pull_request(
        &self,
        number: IssueNumber,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<PullRequest, GithubError> {
        let url = self.url(&["pulls", &number.0.to_string()])?;
        let mut fields = serde_json::Map::new();
        if let Some(t) = title {
            fields.insert("title".into(), t.into());
        }
        if let Some(b) = body {
            fields.insert("body".into(), b.into());
        }
        self.call(Method::PATCH, url, Some(fields.into()))
            .await?
            .json()
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    pub async fn find_open_pull_request(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, GithubError> {
        let mut url = self.url(&["pulls"])?;
        url.query_pairs_mut()
            .append_pair("head", &format!("{}:{}", self.repo.owner, branch))
            .append_pair("state", "open");
        let prs: Vec<PullRequest> = self.get(url).await?;
        Ok(prs.into_iter().next())
    }

    pub async fn get_pull_request(&self, number: IssueNumber) -> Result<PullRequest, GithubError> {
        self.get(self.url(&["pulls", &number.0.to_string()])?).await
    }

    /// Answers in the thread of a review comment.
    pub async fn reply_to_review_comment(
        &self,
        pull: IssueNumber,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let url = self.url(&[
            "pulls",
            &pull.0.to_string(),
            "comments",
            &comment_id.to_string(),
            "replies",
        ])?;
        self.call(Method::POST, url, Some(serde_json::json!({ "body": body })))
            .await?
            .json()
    }
}
