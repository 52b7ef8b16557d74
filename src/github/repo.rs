//! The REST calls of one run, for one repository of one installation: the permission gate,
//! issues and comments, reactions, files on the default branch, branches, pull requests, review
//! replies. Every call goes through the app's one octocrab client with the installation token
//! scoped to this repository; a 401 (the token expired or was revoked: GitHub did nothing)
//! mints a new token once and sends the call again.
//!
//! Reads use octocrab's typed calls and models where they fit, and octocrab's generic `get`
//! with local types where GitHub's payloads outrun octocrab's models. Writes are built here
//! ([`stack::send`]) because octocrab's typed writes cannot carry what the stack needs to know
//! (the write's class for the pacer, whether it may be sent blindly again); creates go through
//! [`RepoClient::create_once`]: a create that may have gone through is looked up (the comment
//! by its hidden marker, the pull request by its head branch, the reaction by listing) before
//! it is sent again.

use std::future::Future;

use base64::Engine as _;
use http::Method;
use octocrab::Octocrab;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::app::GithubApp;
use super::models::{
    Branch, Comment, InstallationId, Issue, IssueNumber, PullRequest, Reaction, ReactionContent,
    RepoName,
};
use super::pacing::WriteClass;
use super::permission::{GateDecision, Permission, DENIED_REPLY_MARKER};
use super::stack::{self, from_octocrab, route, Raw, RequestMeta};
use super::GithubError;
use crate::retry::{with_retries, Attempt, RetryPolicy};

/// Comments per page when listing (GitHub's maximum).
const PER_PAGE: u8 = 100;
/// Pages read at most when listing, so a huge thread cannot stall a run.
const MAX_PAGES: u32 = 30;

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

/// `role_name` is not in octocrab's model of this answer.
#[derive(Deserialize)]
struct PermissionAnswer {
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

/// The contents API's answer for a file (octocrab's `Content` requires fields a file answer
/// for a large file lacks).
#[derive(Deserialize)]
struct ContentAnswer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// The start of the hidden marker every comment Backspace writes carries.
const MARKER_START: &str = "<!-- backspace:";

/// The hidden marker in `body` (the last one), if it has one.
pub fn marker_in(body: &str) -> Option<&str> {
    let start = body.rfind(MARKER_START)?;
    let end = body[start..].find("-->")? + start + "-->".len();
    Some(&body[start..end])
}

/// `body` with a marker of its own when it has none: a comment is found again by it.
fn with_write_marker(body: &str) -> String {
    if marker_in(body).is_some() {
        return body.to_string();
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}\n\n{MARKER_START}write:{id} -->", body.trim_end())
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

    /// A newly minted token, after GitHub refused the cached one (401): for REST calls here and
    /// for git, which sees the refusal as an authentication failure.
    pub async fn fresh_token(&self) -> Result<SecretString, GithubError> {
        self.app.forget_installation(self.installation);
        self.git_token().await
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.app.inner.retry
    }

    /// The write pacer of this client's installation.
    pub(crate) fn pacer(&self) -> std::sync::Arc<super::pacing::WritePacer> {
        self.app.pacer(self.installation)
    }

    pub(super) fn path(&self, tail: &[&str]) -> String {
        self.path_with_query(tail, &[])
    }

    pub(super) fn path_with_query(&self, tail: &[&str], query: &[(&str, &str)]) -> String {
        let mut segments = vec!["repos", self.repo.owner.as_str(), self.repo.name.as_str()];
        segments.extend_from_slice(tail);
        route(&segments, query)
    }

    /// Runs `call` with the installation token; on a 401, once more with a fresh token.
    async fn authed<T, F, Fut>(&self, call: F) -> Result<T, GithubError>
    where
        F: Fn(Octocrab) -> Fut,
        Fut: Future<Output = Result<T, GithubError>>,
    {
        let token = self.git_token().await?;
        match call(self.app.crab(&token)?).await {
            Err(e) if e.status() == Some(401) => {
                tracing::info!(repo = %self.repo, "GitHub refused the installation token; minting a new one");
                let token = self.fresh_token().await?;
                call(self.app.crab(&token)?).await
            }
            other => other,
        }
    }

    /// `GET route` read into a local type, through octocrab.
    pub(super) async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, GithubError> {
        self.authed(|crab| async move {
            crab.get(route, None::<&()>)
                .await
                .map_err(|e| from_octocrab(e, &Method::GET, route))
        })
        .await
    }

    /// A write: paced in `class`, sent blindly again on a 5xx only when `blind_retry`.
    pub(super) async fn write(
        &self,
        method: Method,
        route: &str,
        body: &serde_json::Value,
        class: WriteClass,
        blind_retry: bool,
    ) -> Result<Raw, GithubError> {
        let meta = RequestMeta::write(self.installation, class, blind_retry);
        self.authed(|crab| {
            let method = method.clone();
            async move {
                stack::send(&crab, method, route, Some(body), meta)
                    .await?
                    .ok()
            }
        })
        .await
    }

    /// A create that must happen once: sent; on an answer that may hide a success (a 5xx, a
    /// lost connection), `find` looks for what the first attempt made before it is sent again.
    pub(super) async fn create_once<T, P, PF, L, LF>(
        &self,
        what: &str,
        post: P,
        find: L,
    ) -> Result<T, GithubError>
    where
        P: Fn() -> PF,
        PF: Future<Output = Result<T, GithubError>>,
        L: Fn() -> LF,
        LF: Future<Output = Result<Option<T>, GithubError>>,
    {
        let tried = with_retries(self.retry_policy(), what, |n| {
            let (post, find) = (&post, &find);
            async move {
                if n > 1 {
                    match find().await {
                        Ok(Some(made)) => {
                            tracing::info!(call = what, "the earlier attempt had gone through");
                            return Attempt::Done(made);
                        }
                        Ok(None) => {}
                        Err(error) => return Attempt::Retry { error, hint: None },
                    }
                }
                match post().await {
                    Ok(made) => Attempt::Done(made),
                    Err(error) if error.may_have_gone_through() => {
                        Attempt::Retry { error, hint: None }
                    }
                    Err(error) => Attempt::Failed(error),
                }
            }
        })
        .await;
        tried.result.map_err(|gave_up| gave_up.into_error())
    }

    /// One attempt at editing a comment, not paced (its caller, the progress writer, took its
    /// turn already) and not retried (it retries with the newest text itself). A refused token
    /// is replaced before the attempt counts as retryable.
    pub(crate) async fn attempt_update_comment(
        &self,
        comment_id: u64,
        body: &str,
    ) -> Attempt<(), GithubError> {
        let route = self.path(&["issues", "comments", &comment_id.to_string()]);
        let token = match self.git_token().await {
            Ok(t) => t,
            Err(e) => return Attempt::Failed(e),
        };
        let crab = match self.app.crab(&token) {
            Ok(c) => c,
            Err(e) => return Attempt::Failed(e),
        };
        let meta = RequestMeta {
            single_attempt: true,
            ..RequestMeta::PLAIN
        };
        let body = serde_json::json!({ "body": body });
        let raw = match stack::send(&crab, Method::PATCH, &route, Some(&body), meta).await {
            Ok(raw) => raw,
            Err(error) => return Attempt::Retry { error, hint: None },
        };
        if raw.is_success() {
            return Attempt::Done(());
        }
        let outcome = super::retry::classify(raw.status, &raw.headers, crate::clock::unix_secs());
        let status = raw.status;
        let error = match raw.ok() {
            Err(e) => e,
            Ok(_) => return Attempt::Done(()),
        };
        if status == 401 {
            // The next attempt mints a new token.
            self.app.forget_installation(self.installation);
            return Attempt::Retry { error, hint: None };
        }
        match outcome {
            super::retry::Outcome::Final => Attempt::Failed(error),
            super::retry::Outcome::Retryable { hint } => Attempt::Retry { error, hint },
        }
    }

    // --- the permission gate ---

    /// The user's role on this repository.
    pub async fn permission(&self, user: &str) -> Result<Permission, GithubError> {
        let answer: PermissionAnswer = self
            .get(&self.path(&["collaborators", user, "permission"]))
            .await?;
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
        Ok(self
            .find_bot_comment_with_marker(issue, DENIED_REPLY_MARKER)
            .await?
            .is_some())
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
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&["issues", &issue.0.to_string()]);
        self.authed(|crab| {
            let path = &path;
            async move {
                crab.issues(owner, name)
                    .get(issue.0)
                    .await
                    .map(Issue::from)
                    .map_err(|e| from_octocrab(e, &Method::GET, path))
            }
        })
        .await
    }

    /// Every comment of an issue (or pull request conversation), oldest first.
    pub async fn list_issue_comments(
        &self,
        issue: IssueNumber,
    ) -> Result<Vec<Comment>, GithubError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&["issues", &issue.0.to_string(), "comments"]);
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let batch = self
                .authed(|crab| {
                    let path = &path;
                    async move {
                        crab.issues(owner, name)
                            .list_comments(issue.0)
                            .per_page(PER_PAGE)
                            .page(page)
                            .send()
                            .await
                            .map_err(|e| from_octocrab(e, &Method::GET, path))
                    }
                })
                .await?;
            let done = batch.items.len() < usize::from(PER_PAGE);
            all.extend(batch.items.into_iter().map(Comment::from));
            if done {
                break;
            }
        }
        Ok(all)
    }

    pub async fn get_comment(&self, comment_id: u64) -> Result<Comment, GithubError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&["issues", "comments", &comment_id.to_string()]);
        self.authed(|crab| {
            let path = &path;
            async move {
                crab.issues(owner, name)
                    .get_comment(octocrab::models::CommentId(comment_id))
                    .await
                    .map(Comment::from)
                    .map_err(|e| from_octocrab(e, &Method::GET, path))
            }
        })
        .await
    }

    /// Posts a comment once. A body without a hidden marker gets one of its own, by which a
    /// retry finds the comment when the first attempt's answer was lost.
    pub async fn create_comment(
        &self,
        issue: IssueNumber,
        body: &str,
    ) -> Result<Comment, GithubError> {
        self.create_comment_as(issue, body, WriteClass::Normal)
            .await
    }

    /// The one reply to a refused requester: in the pacer's lowest class, after every write a
    /// run makes.
    pub async fn reply_refused(
        &self,
        issue: IssueNumber,
        body: &str,
    ) -> Result<Comment, GithubError> {
        self.create_comment_as(issue, body, WriteClass::Refusal)
            .await
    }

    /// Posts a comment once, in the pacer's class `class`.
    pub(crate) async fn create_comment_as(
        &self,
        issue: IssueNumber,
        body: &str,
        class: WriteClass,
    ) -> Result<Comment, GithubError> {
        let body = with_write_marker(body);
        let marker = marker_in(&body).unwrap_or_default().to_string();
        let route = self.path(&["issues", &issue.0.to_string(), "comments"]);
        let payload = serde_json::json!({ "body": body });
        self.create_once(
            "GitHub POST comment",
            || async {
                self.write(Method::POST, &route, &payload, class, false)
                    .await?
                    .json()
            },
            || self.find_bot_comment_with_marker(issue, &marker),
        )
        .await
    }

    pub async fn update_comment(
        &self,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let route = self.path(&["issues", "comments", &comment_id.to_string()]);
        let payload = serde_json::json!({ "body": body });
        self.write(Method::PATCH, &route, &payload, WriteClass::Normal, true)
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

    /// Reacts once: 👀 in the acknowledgement's class, the others as ordinary writes. A
    /// reaction whose answer was lost is looked for among the bot's reactions before it is
    /// asked for again.
    async fn react(&self, tail: &[&str], content: ReactionContent) -> Result<(), GithubError> {
        let route = self.path(tail);
        let listed = self.path_with_query(tail, &[("content", content.as_str())]);
        let class = match content {
            ReactionContent::Eyes => WriteClass::Ack,
            _ => WriteClass::Normal,
        };
        let payload = serde_json::json!({ "content": content.as_str() });
        self.create_once(
            "GitHub POST reaction",
            || async {
                self.write(Method::POST, &route, &payload, class, false)
                    .await
                    .map(drop)
            },
            || async {
                let list: Vec<Reaction> = self.get(&listed).await?;
                let bot = self.app.bot_login().await?;
                Ok(list
                    .iter()
                    .any(|r| {
                        r.content == content.as_str()
                            && r.user.as_ref().is_some_and(|u| u.login == bot)
                    })
                    .then_some(()))
            },
        )
        .await
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

    // --- repository, branches and files ---

    pub async fn repository(&self) -> Result<RepositoryInfo, GithubError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&[]);
        let decode = |reason: &str| GithubError::Decode {
            method: "GET".into(),
            path: path.clone(),
            reason: reason.into(),
        };
        let repo = self
            .authed(|crab| {
                let path = &path;
                async move {
                    crab.repos(owner, name)
                        .get()
                        .await
                        .map_err(|e| from_octocrab(e, &Method::GET, path))
                }
            })
            .await?;
        Ok(RepositoryInfo {
            full_name: repo
                .full_name
                .clone()
                .unwrap_or_else(|| self.repo.full_name()),
            default_branch: repo
                .default_branch
                .clone()
                .ok_or_else(|| decode("no default_branch"))?,
            private: repo.private.unwrap_or(true),
            clone_url: repo
                .clone_url
                .as_ref()
                .map(|u| u.to_string())
                .ok_or_else(|| decode("no clone_url"))?,
            fork: repo.fork.unwrap_or(false),
        })
    }

    /// A branch and whether it is protected; `None` when there is no such branch.
    pub async fn branch(&self, name: &str) -> Result<Option<Branch>, GithubError> {
        let mut tail = vec!["branches"];
        // GitHub takes the branch name's slashes as they are (`branches/backspace/12-x`).
        tail.extend(name.split('/'));
        match self.get::<Branch>(&self.path(&tail)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
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
        let query: Vec<(&str, &str)> = git_ref.map(|r| ("ref", r)).into_iter().collect();
        let value: serde_json::Value = match self.get(&self.path_with_query(&tail, &query)).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let decode_err = |reason: &str| GithubError::Decode {
            method: "GET".into(),
            path: format!("contents/{path}"),
            reason: reason.into(),
        };
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

    /// Opens a pull request once: a retry whose first attempt went through, or a run resumed
    /// after a restart, finds the open pull request of the head branch instead of a second
    /// one. GitHub says so in its `errors` (`PullRequest`, code `custom`), which is checked by
    /// looking the pull request up, never by reading the message.
    pub async fn create_pull_request(
        &self,
        pr: &NewPullRequest,
    ) -> Result<PullRequest, GithubError> {
        let route = self.path(&["pulls"]);
        let payload = serde_json::json!({
            "title": pr.title,
            "head": pr.head,
            "base": pr.base,
            "body": pr.body,
            "draft": pr.draft,
            "maintainer_can_modify": true,
        });
        let created = self
            .create_once(
                "GitHub POST pull request",
                || async {
                    self.write(Method::POST, &route, &payload, WriteClass::Normal, false)
                        .await?
                        .json::<octocrab::models::pulls::PullRequest>()
                        .map(PullRequest::from)
                },
                || self.find_open_pull_request(&pr.head),
            )
            .await;
        match created {
            Err(e)
                if e.status() == Some(422)
                    && e.details().iter().any(|d| d.is("PullRequest", "custom")) =>
            {
                match self.find_open_pull_request(&pr.head).await? {
                    Some(existing) => Ok(existing),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Changes the title and/or body of a pull request (a follow-up run's summary).
    pub async fn update_pull_request(
        &self,
        number: IssueNumber,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<PullRequest, GithubError> {
        let route = self.path(&["pulls", &number.0.to_string()]);
        let mut fields = serde_json::Map::new();
        if let Some(t) = title {
            fields.insert("title".into(), t.into());
        }
        if let Some(b) = body {
            fields.insert("body".into(), b.into());
        }
        self.write(
            Method::PATCH,
            &route,
            &fields.into(),
            WriteClass::Normal,
            true,
        )
        .await?
        .json::<octocrab::models::pulls::PullRequest>()
        .map(PullRequest::from)
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    pub async fn find_open_pull_request(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, GithubError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&["pulls"]);
        let head = format!("{owner}:{branch}");
        let page = self
            .authed(|crab| {
                let (path, head) = (&path, &head);
                async move {
                    crab.pulls(owner, name)
                        .list()
                        .state(octocrab::params::State::Open)
                        .head(head.as_str())
                        .send()
                        .await
                        .map_err(|e| from_octocrab(e, &Method::GET, path))
                }
            })
            .await?;
        Ok(page.items.into_iter().next().map(PullRequest::from))
    }

    pub async fn get_pull_request(&self, number: IssueNumber) -> Result<PullRequest, GithubError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        let path = self.path(&["pulls", &number.0.to_string()]);
        self.authed(|crab| {
            let path = &path;
            async move {
                crab.pulls(owner, name)
                    .get(number.0)
                    .await
                    .map(PullRequest::from)
                    .map_err(|e| from_octocrab(e, &Method::GET, path))
            }
        })
        .await
    }

    /// Answers in the thread of a review comment, once (found again by its marker).
    pub async fn reply_to_review_comment(
        &self,
        pull: IssueNumber,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let n = pull.0.to_string();
        let route = self.path(&["pulls", &n, "comments", &comment_id.to_string(), "replies"]);
        let body = with_write_marker(body);
        let marker = marker_in(&body).unwrap_or_default().to_string();
        let payload = serde_json::json!({ "body": body });
        let listed = self.path(&["pulls", &n, "comments"]);
        self.create_once(
            "GitHub POST review reply",
            || async {
                self.write(Method::POST, &route, &payload, WriteClass::Normal, false)
                    .await?
                    .json()
            },
            || async {
                let all: Vec<Comment> = self.get(&listed).await?;
                Ok(all.into_iter().find(|c| c.body().contains(&marker)))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_keeps_its_marker_or_gets_one() {
        let progress = "Working\n\n<!-- backspace:run:abc -->";
        assert_eq!(with_write_marker(progress), progress);
        assert_eq!(marker_in(progress), Some("<!-- backspace:run:abc -->"));
        let plain = with_write_marker("Usage: …");
        let marker = marker_in(&plain).expect("a marker");
        assert!(marker.starts_with("<!-- backspace:write:"), "{marker}");
        assert_ne!(with_write_marker("Usage: …"), plain, "each write its own");
        assert_eq!(marker_in("no marker"), None);
    }
}
