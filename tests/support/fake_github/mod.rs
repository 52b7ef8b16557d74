//! A faithful fake GitHub for tests: an axum server on 127.0.0.1 with a random port, holding an
//! app (with the RSA public key of `tests/fixtures/github-app-test-key.pem`), installations,
//! repositories (bare git repos served over smart HTTP by `git http-backend`), collaborators,
//! issues, comments, reactions and pull requests. It checks the app JWT on `/app/...` routes and
//! installation tokens (its own, unexpired, scoped to the repository, with the permission the
//! route needs) on repository routes, answering like GitHub otherwise; answers are built from the
//! examples of GitHub's OpenAPI description, and every request is recorded with the problems the
//! OpenAPI subset finds in it. Faults (a status, `retry-after` or other headers, N times) and
//! delays can be injected per operation. Helpers read like a script:
//! `gh.add_collaborator(&repo, "alice", "write")`, `gh.comments(&repo, issue)`.

pub mod git;
pub mod openapi;
mod shapes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use backspace::github::{format_github_time, InstallationId, IssueNumber, RepoName};
use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{json, Value};

/// The app's id in the fake.
pub const APP_ID: u64 = 4242;
/// The app's slug; the bot's login is `backspace-test[bot]`.
pub const APP_SLUG: &str = "backspace-test";
/// The webhook secret the manifest conversion hands out.
pub const WEBHOOK_SECRET: &str = "fake-webhook-secret";
/// Where GitHub's error answers point.
const DOCS: &str = "https://docs.github.com/rest";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The app's private key (test-only, PKCS#1 as GitHub hands them out).
pub fn app_private_key() -> SecretString {
    SecretString::from(
        std::fs::read_to_string(fixture("github-app-test-key.pem")).expect("test key"),
    )
}

/// A key that is not the app's, for signature tests.
pub fn other_private_key() -> SecretString {
    SecretString::from(std::fs::read_to_string(fixture("other-test-key.pem")).expect("test key"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The OpenAPI template it matched (`GET /repos/{owner}/{repo}`), or `git ...`.
    pub operation: Option<String>,
    pub body: Option<Value>,
    /// `jwt`, `token`, `basic` or `none`.
    pub auth: &'static str,
    pub status: u16,
    /// What the OpenAPI subset finds wrong with the request (empty when it fits).
    pub problems: Vec<String>,
}

/// An installation token the fake minted.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub token: String,
    pub installation: u64,
    /// Repository names (not full names) it covers; `None` = all of the installation's.
    pub repositories: Option<Vec<String>>,
    pub permissions: Value,
    pub expires_at: u64,
}

/// A comment as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub author: String,
    pub body: String,
    /// Every body it had, oldest first (creation included).
    pub history: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct FakePull {
    pub number: u64,
    pub author: String,
    pub title: String,
    pub body: String,
    pub head_repo: String,
    pub head: String,
    pub base: String,
    pub state: String,
    pub draft: bool,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    status: u16,
    headers: Vec<(String, String)>,
    times: usize,
}

#[derive(Debug, Clone)]
struct Delay {
    operation: String,
    delay: Duration,
    times: usize,
}

#[derive(Debug, Clone)]
struct IssueRec {
    number: u64,
    id: u64,
    author: String,
    title: String,
    body: String,
    state: String,
    pull: Option<PullRec>,
}

#[derive(Debug, Clone)]
struct PullRec {
    head_repo: String,
    head: String,
    base: String,
    draft: bool,
}

#[derive(Debug, Clone)]
struct RepoRec {
    id: u64,
    owner: String,
    name: String,
    private: bool,
    default_branch: String,
    installation: u64,
    collaborators: HashMap<String, String>,
    issues: BTreeMap<u64, IssueRec>,
    bare: Option<PathBuf>,
    fork: bool,
}

impl RepoRec {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone)]
struct CommentRec {
    id: u64,
    repo: String,
    issue: u64,
    author: String,
    history: Vec<String>,
    created_at: u64,
    updated_at: u64,
    /// `Some(in_reply_to)` for pull request review comments.
    review: Option<Option<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReactionTarget {
    Comment(u64),
    ReviewComment(u64),
    Issue(String, u64),
}

#[derive(Debug, Clone)]
struct ReactionRec {
    id: u64,
    target: ReactionTarget,
    user: String,
    content: String,
}

#[derive(Debug, Clone)]
struct InstallationRec {
    id: u64,
    account: String,
    suspended: bool,
}

struct FakeState {
    base_url: String,
    installations: BTreeMap<u64, InstallationRec>,
    repos: BTreeMap<String, RepoRec>,
    users: HashMap<String, u64>,
    comments: BTreeMap<u64, CommentRec>,
    reactions: Vec<ReactionRec>,
    tokens: HashMap<String, TokenGrant>,
    token_ttl: Duration,
    faults: Vec<Fault>,
    delays: Vec<Delay>,
    requests: Vec<RecordedRequest>,
    response_problems: Vec<String>,
    manifest_codes: Vec<String>,
    next_id: u64,
}

impl FakeState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn user_id(&mut self, login: &str) -> u64 {
        if let Some(id) = self.users.get(login) {
            return *id;
        }
        let id = self.id();
        self.users.insert(login.to_string(), id);
        id
    }

    fn repo(&self, full: &str) -> Option<&RepoRec> {
        self.repos.get(&full.to_ascii_lowercase())
    }

    fn repo_mut(&mut self, full: &str) -> Option<&mut RepoRec> {
        self.repos.get_mut(&full.to_ascii_lowercase())
    }
}

/// The fake GitHub. Dropping it stops the server and removes its repositories.
pub struct FakeGithub {
    state: Arc<Mutex<FakeState>>,
    addr: std::net::SocketAddr,
    repos_dir: Arc<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<FakeState>>,
    repos_dir: Arc<tempfile::TempDir>,
    public_key: Arc<jsonwebtoken::DecodingKey>,
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn repo_name(s: &str) -> RepoName {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

impl FakeGithub {
    /// Starts the fake on 127.0.0.1 with a random port.
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let public_pem = std::fs::read(fixture("github-app-test-key.pub.pem")).expect("public key");
        let public_key =
            jsonwebtoken::DecodingKey::from_rsa_pem(&public_pem).expect("valid public key");
        let state = Arc::new(Mutex::new(FakeState {
            base_url: format!("http://{addr}"),
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            users: HashMap::new(),
            comments: BTreeMap::new(),
            reactions: Vec::new(),
            tokens: HashMap::new(),
            token_ttl: Duration::from_secs(3600),
            faults: Vec::new(),
            delays: Vec::new(),
            requests: Vec::new(),
            response_problems: Vec::new(),
            manifest_codes: Vec::new(),
            next_id: 1000,
        }));
        let repos_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let shared = Shared {
            state: state.clone(),
            repos_dir: repos_dir.clone(),
            public_key: Arc::new(public_key),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub {
            state,
            addr,
            repos_dir,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }

    /// `GITHUB_API_URL` for Backspace.
    pub fn api_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).expect("url")
    }

    pub fn app_id(&self) -> u64 {
        APP_ID
    }

    pub fn bot_login(&self) -> String {
        format!("{APP_SLUG}[bot]")
    }

    // --- setup ---

    /// The installation of the app on `account`, created on first use.
    pub fn install(&self, account: &str) -> InstallationId {
        let mut s = self.state();
        if let Some(i) = s.installations.values().find(|i| i.account == account) {
            return InstallationId(i.id);
        }
        let id = s.id();
        s.user_id(account);
        s.installations.insert(
            id,
            InstallationRec {
                id,
                account: account.to_string(),
                suspended: false,
            },
        );
        InstallationId(id)
    }

    /// A public repository `owner/name` whose default branch `main` holds `files`, with the app
    /// installed on its owner.
    pub fn repo_with_files(&self, full_name: &str, files: &[(&str, &str)]) -> RepoName {
        let name = repo_name(full_name);
        let installation = self.install(&name.owner);
        let bare = git::create_bare_repo(self.repos_dir.path(), &name.full_name(), "main", files);
        let mut s = self.state();
        let id = s.id();
        s.repos.insert(
            name.full_name().to_ascii_lowercase(),
            RepoRec {
                id,
                owner: name.owner.clone(),
                name: name.name.clone(),
                private: false,
                default_branch: "main".into(),
                installation: installation.0,
                collaborators: HashMap::new(),
                issues: BTreeMap::new(),
                bare: Some(bare),
                fork: false,
            },
        );
        name
    }

    /// A fork of `parent` owned by someone the app is not installed on (for fork refusal).
    pub fn fork(&self, parent: &RepoName, owner: &str) -> RepoName {
        let name = RepoName::new(owner, parent.name.clone());
        let mut s = self.state();
        let id = s.id();
        s.repos.insert(
            name.full_name().to_ascii_lowercase(),
            RepoRec {
                id,
                owner: owner.into(),
                name: parent.name.clone(),
                private: false,
                default_branch: "main".into(),
                installation: 0,
                collaborators: HashMap::new(),
                issues: BTreeMap::new(),
                bare: None,
                fork: true,
            },
        );
        name
    }

    pub fn set_private(&self, repo: &RepoName, private: bool) {
        self.state()
            .repo_mut(&repo.full_name())
            .expect("repo")
            .private = private;
    }

    pub fn installation_of(&self, repo: &RepoName) -> InstallationId {
        InstallationId(
            self.state()
                .repo(&repo.full_name())
                .expect("repo")
                .installation,
        )
    }

    pub fn suspend_installation(&self, id: InstallationId) {
        if let Some(i) = self.state().installations.get_mut(&id.0) {
            i.suspended = true;
        }
    }

    /// Removes the installation: its tokens stop working and minting answers 404.
    pub fn uninstall(&self, id: InstallationId) {
        let mut s = self.state();
        s.installations.remove(&id.0);
        s.tokens.retain(|_, t| t.installation != id.0);
    }

    /// Gives `user` a role on `repo`: admin, maintain, write, triage or read.
    pub fn add_collaborator(&self, repo: &RepoName, user: &str, role: &str) {
        let mut s = self.state();
        s.user_id(user);
        s.repo_mut(&repo.full_name())
            .expect("repo")
            .collaborators
            .insert(user.to_ascii_lowercase(), role.to_string());
    }

    pub fn open_issue(
        &self,
        repo: &RepoName,
        author: &str,
        title: &str,
        body: &str,
    ) -> IssueNumber {
        let mut s = self.state();
        s.user_id(author);
        let id = s.id();
        let r = s.repo_mut(&repo.full_name()).expect("repo");
        let number = r.issues.keys().max().copied().unwrap_or(0) + 1;
        r.issues.insert(
            number,
            IssueRec {
                number,
                id,
                author: author.into(),
                title: title.into(),
                body: body.into(),
                state: "open".into(),
                pull: None,
            },
        );
        IssueNumber(number)
    }

    /// A pull request from `head_repo`'s `head` branch into `repo`'s `base`.
    pub fn open_pull(
        &self,
        repo: &RepoName,
        author: &str,
        head_repo: &RepoName,
        head: &str,
        base: &str,
        title: &str,
    ) -> IssueNumber {
        let n = self.open_issue(repo, author, title, "");
        let mut s = self.state();
        let r = s.repo_mut(&repo.full_name()).expect("repo");
        if let Some(i) = r.issues.get_mut(&n.0) {
            i.pull = Some(PullRec {
                head_repo: head_repo.full_name(),
                head: head.into(),
                base: base.into(),
                draft: false,
            });
        }
        n
    }

    /// A comment by a human (or any login) on an issue or pull request.
    pub fn post_comment(
        &self,
        repo: &RepoName,
        issue: IssueNumber,
        author: &str,
        body: &str,
    ) -> u64 {
        let mut s = self.state();
        insert_comment(&mut s, &repo.full_name(), issue.0, author, body, None)
    }

    /// A review comment on a pull request's diff.
    pub fn post_review_comment(
        &self,
        repo: &RepoName,
        pull: IssueNumber,
        author: &str,
        body: &str,
    ) -> u64 {
        let mut s = self.state();
        insert_comment(&mut s, &repo.full_name(), pull.0, author, body, Some(None))
    }

    /// Commits `files` on top of `from` as branch `branch`, straight in the repository (as if
    /// someone had pushed it).
    pub fn push_branch(&self, repo: &RepoName, from: &str, branch: &str, files: &[(&str, &str)]) {
        let bare = self.bare(repo);
        let work = self
            .repos_dir
            .path()
            .join("_push")
            .join(repo.full_name())
            .join(branch);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.parent().expect("parent")).expect("dirs");
        git::git(
            self.repos_dir.path(),
            &[
                "clone",
                "-q",
                "-b",
                from,
                bare.to_str().expect("utf-8"),
                work.to_str().expect("utf-8"),
            ],
        );
        git::git(&work, &["checkout", "-q", "-b", branch]);
        for (path, content) in files {
            let p = work.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("dirs");
            }
            std::fs::write(&p, content).expect("write");
        }
        git::git(&work, &["add", "-A"]);
        git::git(&work, &["commit", "-q", "--allow-empty", "-m", "Change"]);
        git::git(&work, &["push", "-q", "origin", branch]);
        let _ = std::fs::remove_dir_all(&work);
    }

    /// A one-time code, as GitHub hands it to the manifest flow's redirect URL.
    pub fn manifest_code(&self) -> String {
        let mut s = self.state();
        let code = format!("manifest-code-{}", s.id());
        s.manifest_codes.push(code.clone());
        code
    }

    // --- tokens and faults ---

    /// The lifetime of tokens minted from now on (GitHub's is one hour).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.state().token_ttl = ttl;
    }

    /// Mints a token for `repo` directly (as if the app had asked), for git tests.
    pub fn issue_token(&self, repo: &RepoName) -> String {
        let mut s = self.state();
        let installation = s.repo(&repo.full_name()).expect("repo").installation;
        let ttl = s.token_ttl;
        mint(
            &mut s,
            installation,
            Some(vec![repo.name.clone()]),
            default_permissions(),
            ttl,
        )
        .token
    }

    /// Makes a token expired now.
    pub fn expire_token(&self, token: &str) {
        if let Some(t) = self.state().tokens.get_mut(token) {
            t.expires_at = now().saturating_sub(1);
        }
    }

    pub fn expire_all_tokens(&self) {
        for t in self.state().tokens.values_mut() {
            t.expires_at = now().saturating_sub(1);
        }
    }

    /// Every token minted through `POST /app/installations/{id}/access_tokens` or
    /// [`Self::issue_token`], in no particular order.
    pub fn tokens(&self) -> Vec<TokenGrant> {
        self.state().tokens.values().cloned().collect()
    }

    /// The next `times` requests of `operation` (an OpenAPI template such as
    /// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`, or `git push`) answer
    /// `status` with GitHub's error body, and `retry-after` when given.
    pub fn fail(&self, operation: &str, status: u16, retry_after: Option<u64>, times: usize) {
        let headers = retry_after
            .map(|s| vec![("retry-after".to_string(), s.to_string())])
            .unwrap_or_default();
        self.fail_with_headers(operation, status, headers, times);
    }

    pub fn fail_with_headers(
        &self,
        operation: &str,
        status: u16,
        headers: Vec<(String, String)>,
        times: usize,
    ) {
        self.state().faults.push(Fault {
            operation: operation.into(),
            status,
            headers,
            times,
        });
    }

    /// The next `times` requests of `operation` are answered after `delay`.
    pub fn delay(&self, operation: &str, delay: Duration, times: usize) {
        self.state().delays.push(Delay {
            operation: operation.into(),
            delay,
            times,
        });
    }

    // --- reading the state ---

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn last_requests(&self, n: usize) -> Vec<RecordedRequest> {
        let s = self.state();
        s.requests[s.requests.len().saturating_sub(n)..].to_vec()
    }

    /// The requests of one operation (`POST /app/installations/{installation_id}/access_tokens`).
    pub fn requests_to(&self, operation: &str) -> Vec<RecordedRequest> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.operation.as_deref() == Some(operation))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Fails the test if any REST request so far was not an operation of the OpenAPI subset
    /// with its required parameters and body fields, or any answer lacked a documented field.
    pub fn assert_requests_fit_openapi(&self) {
        let s = self.state();
        for r in s
            .requests
            .iter()
            .filter(|r| !r.operation.as_deref().unwrap_or("").starts_with("git "))
        {
            assert!(
                r.operation.is_some(),
                "{} {} is not an operation the fake knows",
                r.method,
                r.path
            );
            assert!(
                r.problems.is_empty(),
                "{} {}: {:?}",
                r.method,
                r.path,
                r.problems
            );
        }
        assert!(s.response_problems.is_empty(), "{:#?}", s.response_problems);
    }

    /// Problems found in the fake's own answers against the OpenAPI schemas (should be none).
    pub fn response_problems(&self) -> Vec<String> {
        self.state().response_problems.clone()
    }

    pub fn comments(&self, repo: &RepoName, issue: IssueNumber) -> Vec<FakeComment> {
        let s = self.state();
        s.comments
            .values()
            .filter(|c| {
                c.review.is_none()
                    && c.repo.eq_ignore_ascii_case(&repo.full_name())
                    && c.issue == issue.0
            })
            .map(fake_comment)
            .collect()
    }

    pub fn review_comments(&self, repo: &RepoName, pull: IssueNumber) -> Vec<FakeComment> {
        let s = self.state();
        s.comments
            .values()
            .filter(|c| {
                c.review.is_some()
                    && c.repo.eq_ignore_ascii_case(&repo.full_name())
                    && c.issue == pull.0
            })
            .map(fake_comment)
            .collect()
    }

    pub fn comment(&self, id: u64) -> Option<FakeComment> {
        self.state().comments.get(&id).map(fake_comment)
    }

    fn reactions(&self, target: ReactionTarget) -> Vec<String> {
        self.state()
            .reactions
            .iter()
            .filter(|r| r.target == target)
            .map(|r| r.content.clone())
            .collect()
    }

    pub fn reactions_on_comment(&self, id: u64) -> Vec<String> {
        self.reactions(ReactionTarget::Comment(id))
    }

    pub fn reactions_on_review_comment(&self, id: u64) -> Vec<String> {
        self.reactions(ReactionTarget::ReviewComment(id))
    }

    pub fn reactions_on_issue(&self, repo: &RepoName, issue: IssueNumber) -> Vec<String> {
        self.reactions(ReactionTarget::Issue(
            repo.full_name().to_ascii_lowercase(),
            issue.0,
        ))
    }

    pub fn pulls(&self, repo: &RepoName) -> Vec<FakePull> {
        let s = self.state();
        s.repo(&repo.full_name())
            .map(|r| {
                r.issues
                    .values()
                    .filter_map(|i| {
                        let p = i.pull.as_ref()?;
                        Some(FakePull {
                            number: i.number,
                            author: i.author.clone(),
                            title: i.title.clone(),
                            body: i.body.clone(),
                            head_repo: p.head_repo.clone(),
                            head: p.head.clone(),
                            base: p.base.clone(),
                            state: i.state.clone(),
                            draft: p.draft,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    // --- GitHub's JSON for webhook payloads built by tests ---

    /// The repository as GitHub renders it (`repository` in webhook payloads).
    pub fn repository_json(&self, repo: &RepoName) -> Value {
        let s = self.state();
        let r = s.repo(&repo.full_name()).expect("repo");
        shapes::repository(&s.base_url, r)
    }

    /// A user as GitHub renders it (`sender`, `comment.user`).
    pub fn user_json(&self, login: &str) -> Value {
        let mut s = self.state();
        let id = s.user_id(login);
        shapes::user(&s.base_url, login, id)
    }

    /// An issue or pull request as `GET /repos/{owner}/{repo}/issues/{n}` renders it.
    pub fn issue_json(&self, repo: &RepoName, issue: IssueNumber) -> Value {
        let mut s = self.state();
        let r = s.repo(&repo.full_name()).expect("repo").clone();
        let i = r.issues.get(&issue.0).expect("issue").clone();
        let uid = s.user_id(&i.author);
        let count = s
            .comments
            .values()
            .filter(|c| c.review.is_none() && c.repo == r.full_name() && c.issue == i.number)
            .count();
        shapes::issue(&s.base_url, &r, &i, uid, count)
    }

    /// A comment as GitHub renders it (`comment` in `issue_comment` payloads).
    pub fn comment_json(&self, id: u64) -> Value {
        let mut s = self.state();
        let c = s.comments.get(&id).expect("comment").clone();
        let uid = s.user_id(&c.author);
        let base = s.base_url.clone();
        if c.review.is_some() {
            shapes::review_comment(&base, &c.repo, &c, uid)
        } else {
            shapes::comment(&base, &c.repo, &c, uid)
        }
    }

    /// The clone URL of the repository on this fake (plain HTTP on 127.0.0.1).
    pub fn clone_url(&self, repo: &RepoName) -> String {
        format!("http://{}/{}.git", self.addr, repo.full_name())
    }

    fn bare(&self, repo: &RepoName) -> PathBuf {
        self.state()
            .repo(&repo.full_name())
            .and_then(|r| r.bare.clone())
            .expect("repo with git")
    }

    /// The commit a branch points at, if it exists.
    pub fn branch_sha(&self, repo: &RepoName, branch: &str) -> Option<String> {
        let out = git::git_maybe(
            &self.bare(repo),
            &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
        )?;
        Some(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// A file's text on a branch, if both exist.
    pub fn file_on_branch(&self, repo: &RepoName, branch: &str, path: &str) -> Option<String> {
        let out = git::git_maybe(
            &self.bare(repo),
            &["show", &format!("refs/heads/{branch}:{path}")],
        )?;
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

fn fake_comment(c: &CommentRec) -> FakeComment {
    FakeComment {
        id: c.id,
        author: c.author.clone(),
        body: c.history.last().cloned().unwrap_or_default(),
        history: c.history.clone(),
    }
}

fn insert_comment(
    s: &mut FakeState,
    repo: &str,
    issue: u64,
    author: &str,
    body: &str,
    review: Option<Option<u64>>,
) -> u64 {
    s.user_id(author);
    let id = s.id();
    let t = now();
    let repo = s
        .repo(repo)
        .map(|r| r.full_name())
        .unwrap_or_else(|| repo.to_string());
    s.comments.insert(
        id,
        CommentRec {
            id,
            repo,
            issue,
            author: author.into(),
            history: vec![body.into()],
            created_at: t,
            updated_at: t,
            review,
        },
    );
    id
}

fn default_permissions() -> Value {
    json!({"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"})
}

fn mint(
    s: &mut FakeState,
    installation: u64,
    repositories: Option<Vec<String>>,
    permissions: Value,
    ttl: Duration,
) -> TokenGrant {
    use rand::Rng as _;
    // GitHub's tokens are 40 characters today but GitHub says not to rely on it: the fake's
    // vary in length so that nothing in Backspace can.
    let mut rng = rand::thread_rng();
    let len = rng.gen_range(36..=200);
    let suffix: String = (&mut rng)
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    let grant = TokenGrant {
        token: format!("ghs_{suffix}"),
        installation,
        repositories,
        permissions,
        expires_at: now() + ttl.as_secs(),
    };
    s.tokens.insert(grant.token.clone(), grant.clone());
    grant
}

// --- the server ---

/// The REST routes the fake serves, as OpenAPI templates.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/app"),
    ("GET", "/app/installations/{installation_id}"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/repos/{owner}/{repo}"),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
    ),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    (
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
    ),
];

fn route(method: &str, path: &str) -> Option<(&'static str, HashMap<String, String>)> {
    ROUTES
        .iter()
        .filter(|(m, _)| *m == method)
        .find_map(|(_, t)| {
            let params = openapi::match_template(t, path)?;
            Some((*t, params.into_iter().collect()))
        })
}

/// An answer of the fake, before recording.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn json_answer(status: u16, value: &Value) -> Answer {
    Answer {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn error(status: u16, message: &str) -> Answer {
    json_answer(
        status,
        &json!({"message": message, "documentation_url": DOCS, "status": status.to_string()}),
    )
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = percent_decode(req.uri().path());
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 256 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();

    let is_git = path.contains(".git/");
    let operation = if is_git {
        Some(git_operation(&path, &query))
    } else {
        route(method.as_str(), &path).map(|(t, _)| format!("{method} {t}"))
    };
    let auth_kind = auth_kind(&headers);
    let json_body: Option<Value> = if body.is_empty() || is_git {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let problems = if is_git {
        Vec::new()
    } else {
        openapi::check_request(method.as_str(), &path, &query, json_body.as_ref())
    };

    // Injected delays and faults, per operation.
    let (delay, fault) = {
        let mut s = lock(&shared.state);
        let op = operation.clone().unwrap_or_default();
        let delay = s
            .delays
            .iter_mut()
            .find(|d| d.operation == op && d.times > 0)
            .map(|d| {
                d.times -= 1;
                d.delay
            });
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.operation == op && f.times > 0)
            .map(|f| {
                f.times -= 1;
                f.clone()
            });
        (delay, fault)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let answer = if let Some(f) = fault {
        let message = match f.status {
            429 | 403 => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            _ => "Server Error",
        };
        let mut a = error(f.status, message);
        a.headers.extend(f.headers);
        a
    } else if is_git {
        serve_git(&shared, &method, &path, &query, &headers, &body).await
    } else if headers.get("user-agent").is_none() {
        // GitHub refuses requests without a User-Agent.
        error(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.")
    } else {
        match route(method.as_str(), &path) {
            None => error(404, "Not Found"),
            Some((template, params)) => {
                let a = rest(
                    &shared,
                    method.as_str(),
                    template,
                    &params,
                    &query,
                    &headers,
                    json_body.as_ref(),
                );
                if (200..300).contains(&a.status) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&a.body) {
                        let p = openapi::check_response(method.as_str(), template, a.status, &v);
                        lock(&shared.state).response_problems.extend(p);
                    }
                }
                a
            }
        }
    };

    lock(&shared.state).requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query,
        operation,
        body: json_body,
        auth: auth_kind,
        status: answer.status,
        problems,
    });

    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &answer.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    response
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn percent_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn git_operation(path: &str, query: &str) -> String {
    if path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack") {
        "git push".into()
    } else {
        "git fetch".into()
    }
}

fn auth_kind(headers: &HeaderMap) -> &'static str {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => "none",
        Some(v) if v.starts_with("Basic ") => "basic",
        Some(v) => {
            let t = v.split_whitespace().nth(1).unwrap_or("");
            if t.matches('.').count() == 2 {
                "jwt"
            } else {
                "token"
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| cred.trim().to_string())
}

/// Checks the app JWT like GitHub: RS256 signature by the app's key, `iss` the app id, `exp`
/// in the future but at most 10 minutes ahead, `iat` not in the future, at most 10 minutes
/// between them.
fn check_jwt(shared: &Shared, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(jwt) = bearer(headers) else {
        return Err(error(401, "Bad credentials"));
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let data = jsonwebtoken::decode::<Value>(&jwt, &shared.public_key, &validation)
        .map_err(|_| error(401, "A JSON web token could not be decoded"))?;
    let claims = data.claims;
    let iss_ok = match &claims["iss"] {
        Value::String(s) => s == &APP_ID.to_string(),
        Value::Number(n) => n.as_u64() == Some(APP_ID),
        _ => false,
    };
    if !iss_ok {
        return Err(error(401, "A JSON web token could not be decoded"));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(error(401, "A JSON web token could not be decoded"));
    };
    let t = now();
    if exp > t + 600 || exp.saturating_sub(iat) > 600 {
        return Err(error(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    if iat > t + 1 {
        return Err(error(401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"));
    }
    Ok(())
}

/// The permission a repository operation needs from an installation token.
fn needed_permission(method: &str, template: &str) -> (&'static str, &'static str) {
    let write = method != "GET";
    let level = if write { "write" } else { "read" };
    if template.contains("/contents/") {
        ("contents", level)
    } else if template.contains("/pulls") {
        ("pull_requests", level)
    } else if template.contains("/issues") {
        ("issues", level)
    } else {
        ("metadata", "read")
    }
}

/// Checks an installation token: minted here, unexpired, its installation alive, covering the
/// repository, with the permission needed.
fn check_token(
    s: &FakeState,
    token: Option<&str>,
    repo: &RepoRec,
    need: (&str, &str),
) -> Result<(), Answer> {
    let Some(grant) = token.and_then(|t| s.tokens.get(t)) else {
        return Err(error(401, "Bad credentials"));
    };
    if grant.expires_at <= now() {
        return Err(error(401, "Bad credentials"));
    }
    match s.installations.get(&grant.installation) {
        None => return Err(error(401, "Bad credentials")),
        Some(i) if i.suspended => return Err(error(403, "This installation has been suspended")),
        Some(_) => {}
    }
    let covers = repo.installation == grant.installation
        && grant
            .repositories
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&repo.name)));
    if !covers {
        // GitHub hides private repositories from tokens that do not cover them.
        return Err(if repo.private {
            error(404, "Not Found")
        } else {
            error(403, "Resource not accessible by integration")
        });
    }
    let granted = grant.permissions[need.0].as_str().unwrap_or("none");
    let ok = match need.1 {
        "read" => granted == "read" || granted == "write",
        _ => granted == "write",
    };
    if !ok {
        return Err(error(403, "Resource not accessible by integration"));
    }
    Ok(())
}

fn rest(
    shared: &Shared,
    method: &str,
    template: &'static str,
    params: &HashMap<String, String>,
    query: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Answer {
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let num = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
    if template == "/app-manifests/{code}/conversions" {
        // No credential: the one-time code is the credential, and it works once.
        let mut s = lock(&shared.state);
        let code = p("code");
        let Some(i) = s.manifest_codes.iter().position(|c| *c == code) else {
            return error(404, "Not Found");
        };
        s.manifest_codes.remove(i);
        let base = s.base_url.clone();
        return json_answer(201, &shapes::manifest_conversion(&base));
    }
    let app_route = template == "/app"
        || template.starts_with("/app/")
        || template == "/repos/{owner}/{repo}/installation";
    if app_route {
        if let Err(a) = check_jwt(shared, headers) {
            return a;
        }
    }
    let mut s = lock(&shared.state);
    let base = s.base_url.clone();
    match (method, template) {
        ("GET", "/app") => json_answer(200, &shapes::app(&base)),
        ("GET", "/app/installations/{installation_id}") => {
            match num("installation_id").and_then(|i| s.installations.get(&i)) {
                Some(i) => json_answer(200, &shapes::installation(&base, i.id, &i.account)),
                None => error(404, "Not Found"),
            }
        }
        ("POST", "/app/installations/{installation_id}/access_tokens") => {
            let Some(inst) = num("installation_id")
                .and_then(|i| s.installations.get(&i))
                .cloned()
            else {
                return error(404, "Not Found");
            };
            if inst.suspended {
                return error(403, "This installation has been suspended");
            }
            let names: Option<Vec<String>> =
                body.and_then(|b| b["repositories"].as_array()).map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let repos: Vec<RepoRec> = s
                .repos
                .values()
                .filter(|r| r.installation == inst.id)
                .cloned()
                .collect();
            if let Some(names) = &names {
                for n in names {
                    if !repos.iter().any(|r| r.name.eq_ignore_ascii_case(n)) {
                        return error(422, "There is at least one repository that does not exist or is not accessible to the parent installation.");
                    }
                }
            }
            let permissions = body
                .and_then(|b| b.get("permissions").cloned())
                .unwrap_or_else(default_permissions);
            // Nothing beyond what the app itself was granted.
            let granted = default_permissions();
            let within_grant = permissions.as_object().is_some_and(|asked| {
                asked.iter().all(|(k, v)| {
                    matches!(
                        (granted[k].as_str(), v.as_str()),
                        (Some("write"), Some("read" | "write")) | (Some("read"), Some("read"))
                    )
                })
            });
            if !within_grant {
                return error(
                    422,
                    "The permissions requested are not granted to this installation.",
                );
            }
            let ttl = s.token_ttl;
            let grant = mint(&mut s, inst.id, names.clone(), permissions.clone(), ttl);
            let covered: Vec<Value> = repos
                .iter()
                .filter(|r| {
                    names
                        .as_ref()
                        .is_none_or(|n| n.iter().any(|n| n.eq_ignore_ascii_case(&r.name)))
                })
                .map(|r| shapes::repository(&base, r))
                .collect();
            json_answer(
                201,
                &json!({
                    "token": grant.token,
                    "expires_at": format_github_time(grant.expires_at),
                    "permissions": permissions,
                    "repository_selection": if names.is_some() { "selected" } else { "all" },
                    "repositories": covered,
                }),
            )
        }
        ("GET", "/repos/{owner}/{repo}/installation") => {
            match s
                .repo(&format!("{}/{}", p("owner"), p("repo")))
                .and_then(|r| s.installations.get(&r.installation))
            {
                Some(i) => json_answer(200, &shapes::installation(&base, i.id, &i.account)),
                None => error(404, "Not Found"),
            }
        }
        _ => {
            let full = format!("{}/{}", p("owner"), p("repo"));
            let Some(repo) = s.repo(&full).cloned() else {
                return error(404, "Not Found");
            };
            if let Err(a) = check_token(
                &s,
                bearer(headers).as_deref(),
                &repo,
                needed_permission(method, template),
            ) {
                return a;
            }
            repo_route(&mut s, &base, &repo, method, template, &p, query, body)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn repo_route(
    s: &mut FakeState,
    base: &str,
    repo: &RepoRec,
    method: &str,
    template: &str,
    p: &dyn Fn(&str) -> String,
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let num = |k: &str| p(k).parse::<u64>().ok();
    let full = repo.full_name();
    let body_text = || body.and_then(|b| b["body"].as_str()).map(str::to_string);
    match (method, template) {
        ("GET", "/repos/{owner}/{repo}") => json_answer(200, &shapes::repository(base, repo)),
        ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission") => {
            let user = p("username");
            let uid = s.user_id(&user);
            let role = repo.collaborators.get(&user.to_ascii_lowercase()).cloned();
            let role = role.unwrap_or_else(|| {
                if repo.private {
                    "none".into()
                } else {
                    "read".into()
                }
            });
            json_answer(200, &shapes::permission(base, &user, uid, &role))
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => {
            match num("issue_number").and_then(|n| repo.issues.get(&n)) {
                Some(i) => {
                    let uid = s.user_id(&i.author);
                    let count = s
                        .comments
                        .values()
                        .filter(|c| c.review.is_none() && c.repo == full && c.issue == i.number)
                        .count();
                    json_answer(200, &shapes::issue(base, repo, i, uid, count))
                }
                None => error(404, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            let Some(n) = num("issue_number").filter(|n| repo.issues.contains_key(n)) else {
                return error(404, "Not Found");
            };
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let per_page = q
                .get("per_page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = q
                .get("page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let list: Vec<CommentRec> = s
                .comments
                .values()
                .filter(|c| c.review.is_none() && c.repo == full && c.issue == n)
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect();
            let items: Vec<Value> = list
                .iter()
                .map(|c| {
                    let uid = s.user_id(&c.author);
                    shapes::comment(base, &full, c, uid)
                })
                .collect();
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            let (Some(n), Some(text)) = (
                num("issue_number").filter(|n| repo.issues.contains_key(n)),
                body_text(),
            ) else {
                return error(
                    if body_text().is_none() { 422 } else { 404 },
                    if body_text().is_none() {
                        "Validation Failed"
                    } else {
                        "Not Found"
                    },
                );
            };
            let bot = format!("{APP_SLUG}[bot]");
            let id = insert_comment(s, &full, n, &bot, &text, None);
            let c = s.comments[&id].clone();
            let uid = s.user_id(&bot);
            json_answer(201, &shapes::comment(base, &full, &c, uid))
        }
        ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            match num("comment_id")
                .and_then(|id| s.comments.get(&id))
                .filter(|c| c.repo == full && c.review.is_none())
                .cloned()
            {
                Some(c) => {
                    let uid = s.user_id(&c.author);
                    json_answer(200, &shapes::comment(base, &full, &c, uid))
                }
                None => error(404, "Not Found"),
            }
        }
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            let Some(text) = body_text() else {
                return error(422, "Validation Failed");
            };
            let bot = format!("{APP_SLUG}[bot]");
            let Some(c) = num("comment_id")
                .and_then(|id| s.comments.get_mut(&id))
                .filter(|c| c.repo == full && c.review.is_none())
            else {
                return error(404, "Not Found");
            };
            if c.author != bot {
                return error(403, "Resource not accessible by integration");
            }
            c.history.push(text);
            c.updated_at = now();
            let c = c.clone();
            let uid = s.user_id(&bot);
            json_answer(200, &shapes::comment(base, &full, &c, uid))
        }
        ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
        | ("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
        | ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions") => {
            let target = if template.contains("/issues/comments/") {
                num("comment_id")
                    .filter(|id| {
                        s.comments
                            .get(id)
                            .is_some_and(|c| c.repo == full && c.review.is_none())
                    })
                    .map(ReactionTarget::Comment)
            } else if template.contains("/pulls/comments/") {
                num("comment_id")
                    .filter(|id| {
                        s.comments
                            .get(id)
                            .is_some_and(|c| c.repo == full && c.review.is_some())
                    })
                    .map(ReactionTarget::ReviewComment)
            } else {
                num("issue_number")
                    .filter(|n| repo.issues.contains_key(n))
                    .map(|n| ReactionTarget::Issue(full.to_ascii_lowercase(), n))
            };
            let Some(target) = target else {
                return error(404, "Not Found");
            };
            let content = body
                .and_then(|b| b["content"].as_str())
                .unwrap_or("")
                .to_string();
            const CONTENTS: [&str; 8] = [
                "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
            ];
            if !CONTENTS.contains(&content.as_str()) {
                return error(422, "Validation Failed");
            }
            let bot = format!("{APP_SLUG}[bot]");
            let uid = s.user_id(&bot);
            // The same reaction by the same user answers 200 with the existing one.
            if let Some(r) = s
                .reactions
                .iter()
                .find(|r| r.target == target && r.user == bot && r.content == content)
            {
                return json_answer(200, &shapes::reaction(base, r.id, &bot, uid, &content));
            }
            let id = s.id();
            s.reactions.push(ReactionRec {
                id,
                target,
                user: bot.clone(),
                content: content.clone(),
            });
            json_answer(201, &shapes::reaction(base, id, &bot, uid, &content))
        }
        ("GET", "/repos/{owner}/{repo}/contents/{path}") => {
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let git_ref = q
                .get("ref")
                .cloned()
                .unwrap_or_else(|| repo.default_branch.clone());
            let path = p("path");
            let Some(bare) = repo.bare.clone() else {
                return error(404, "Not Found");
            };
            let spec = format!("{git_ref}:{path}");
            match git::git_maybe(&bare, &["cat-file", "-t", &spec])
                .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            {
                Some(kind) if kind == "blob" => {
                    let bytes =
                        git::git_maybe(&bare, &["cat-file", "blob", &spec]).unwrap_or_default();
                    let sha = git::git_maybe(&bare, &["rev-parse", &spec])
                        .map(|s| String::from_utf8_lossy(&s).trim().to_string())
                        .unwrap_or_default();
                    json_answer(
                        200,
                        &shapes::file_content(base, &full, &git_ref, &path, &sha, &bytes),
                    )
                }
                Some(kind) if kind == "tree" => {
                    let listing =
                        git::git_maybe(&bare, &["ls-tree", "-l", &spec]).unwrap_or_default();
                    let entries: Vec<Value> = String::from_utf8_lossy(&listing)
                        .lines()
                        .filter_map(|line| {
                            // "<mode> <type> <sha> <size>\t<name>"
                            let (meta, name) = line.split_once('\t')?;
                            let mut m = meta.split_whitespace();
                            let (_mode, kind, sha, size) =
                                (m.next()?, m.next()?, m.next()?, m.next()?);
                            let kind = if kind == "tree" { "dir" } else { "file" };
                            let entry_path = if path.is_empty() {
                                name.to_string()
                            } else {
                                format!("{path}/{name}")
                            };
                            Some(shapes::dir_entry(
                                base,
                                &full,
                                &git_ref,
                                &entry_path,
                                kind,
                                sha,
                                size.parse().unwrap_or(0),
                            ))
                        })
                        .collect();
                    json_answer(200, &Value::Array(entries))
                }
                _ => error(404, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/pulls") => {
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let state = q.get("state").cloned().unwrap_or_else(|| "open".into());
            let head = q.get("head").cloned();
            let list: Vec<IssueRec> = repo
                .issues
                .values()
                .filter(|i| i.pull.is_some())
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| match (&head, &i.pull) {
                    (Some(h), Some(pr)) => {
                        let (owner, branch) = h
                            .split_once(':')
                            .unwrap_or((repo.owner.as_str(), h.as_str()));
                        let head_owner = pr.head_repo.split('/').next().unwrap_or("");
                        head_owner.eq_ignore_ascii_case(owner) && pr.head == branch
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            let items: Vec<Value> = list.iter().map(|i| pull_json(s, base, repo, i)).collect();
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/pulls") => {
            let (Some(head), Some(base_branch)) = (
                body.and_then(|b| b["head"].as_str()),
                body.and_then(|b| b["base"].as_str()),
            ) else {
                return error(422, "Validation Failed");
            };
            let (head_owner, head_branch) =
                head.split_once(':').unwrap_or((repo.owner.as_str(), head));
            let head_repo = format!("{head_owner}/{}", repo.name);
            let bare = repo.bare.clone();
            let exists = |b: &str| {
                bare.as_ref()
                    .and_then(|d| {
                        git::git_maybe(d, &["rev-parse", "--verify", &format!("refs/heads/{b}")])
                    })
                    .is_some()
            };
            if !head_owner.eq_ignore_ascii_case(&repo.owner)
                || !exists(head_branch)
                || !exists(base_branch)
            {
                return error(422, "Validation Failed");
            }
            let already = repo.issues.values().any(|i| {
                i.state == "open"
                    && i.pull.as_ref().is_some_and(|p| {
                        p.head == head_branch && p.head_repo.eq_ignore_ascii_case(&head_repo)
                    })
            });
            if already {
                return error(422, &format!("Validation Failed: A pull request already exists for {head_owner}:{head_branch}."));
            }
            let bot = format!("{APP_SLUG}[bot]");
            s.user_id(&bot);
            let id = s.id();
            let Some(r) = s.repo_mut(&full) else {
                return error(404, "Not Found");
            };
            let number = r.issues.keys().max().copied().unwrap_or(0) + 1;
            let rec = IssueRec {
                number,
                id,
                author: bot,
                title: body.and_then(|b| b["title"].as_str()).unwrap_or("").into(),
                body: body.and_then(|b| b["body"].as_str()).unwrap_or("").into(),
                state: "open".into(),
                pull: Some(PullRec {
                    head_repo: repo.full_name(),
                    head: head_branch.into(),
                    base: base_branch.into(),
                    draft: body.and_then(|b| b["draft"].as_bool()).unwrap_or(false),
                }),
            };
            r.issues.insert(number, rec.clone());
            let repo = r.clone();
            json_answer(201, &pull_json(s, base, &repo, &rec))
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            match num("pull_number")
                .and_then(|n| repo.issues.get(&n))
                .filter(|i| i.pull.is_some())
                .cloned()
            {
                Some(i) => json_answer(200, &pull_json(s, base, repo, &i)),
                None => error(404, "Not Found"),
            }
        }
        ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            let Some(n) = num("pull_number") else {
                return error(404, "Not Found");
            };
            let Some(r) = s.repo_mut(&full) else {
                return error(404, "Not Found");
            };
            let Some(i) = r.issues.get_mut(&n).filter(|i| i.pull.is_some()) else {
                return error(404, "Not Found");
            };
            if let Some(t) = body.and_then(|b| b["title"].as_str()) {
                i.title = t.into();
            }
            if let Some(b) = body.and_then(|b| b["body"].as_str()) {
                i.body = b.into();
            }
            let rec = i.clone();
            let repo = r.clone();
            json_answer(200, &pull_json(s, base, &repo, &rec))
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments") => {
            let Some(n) = num("pull_number") else {
                return error(404, "Not Found");
            };
            let list: Vec<CommentRec> = s
                .comments
                .values()
                .filter(|c| c.review.is_some() && c.repo == full && c.issue == n)
                .cloned()
                .collect();
            let items: Vec<Value> = list
                .iter()
                .map(|c| {
                    let uid = s.user_id(&c.author);
                    shapes::review_comment(base, &full, c, uid)
                })
                .collect();
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies") => {
            let Some(text) = body_text() else {
                return error(422, "Validation Failed");
            };
            let (Some(n), Some(parent)) = (num("pull_number"), num("comment_id")) else {
                return error(404, "Not Found");
            };
            if !s
                .comments
                .get(&parent)
                .is_some_and(|c| c.review.is_some() && c.repo == full && c.issue == n)
            {
                return error(404, "Not Found");
            }
            let bot = format!("{APP_SLUG}[bot]");
            let id = insert_comment(s, &full, n, &bot, &text, Some(Some(parent)));
            let c = s.comments[&id].clone();
            let uid = s.user_id(&bot);
            json_answer(201, &shapes::review_comment(base, &full, &c, uid))
        }
        _ => error(404, "Not Found"),
    }
}

fn pull_json(s: &mut FakeState, base: &str, repo: &RepoRec, i: &IssueRec) -> Value {
    let pr = i.pull.clone().unwrap_or(PullRec {
        head_repo: repo.full_name(),
        head: String::new(),
        base: repo.default_branch.clone(),
        draft: false,
    });
    let uid = s.user_id(&i.author);
    let sha = |r: &RepoRec, b: &str| {
        r.bare
            .as_ref()
            .and_then(|d| git::git_maybe(d, &["rev-parse", "--verify", &format!("refs/heads/{b}")]))
            .map(|o| String::from_utf8_lossy(&o).trim().to_string())
            .unwrap_or_else(|| "0".repeat(40))
    };
    let head_repo = s
        .repo(&pr.head_repo)
        .cloned()
        .unwrap_or_else(|| repo.clone());
    let head_sha = sha(&head_repo, &pr.head);
    let base_sha = sha(repo, &pr.base);
    shapes::pull(
        base, repo, &head_repo, i, &pr.head, &head_sha, &pr.base, &base_sha, pr.draft, uid,
    )
}

async fn serve_git(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    // /owner/name.git/...
    let Some((repo_part, _)) = path.trim_start_matches('/').split_once(".git/") else {
        return plain(404, "Repository not found.");
    };
    let push = git_operation(path, query) == "git push";
    let (repo, user) = {
        let s = lock(&shared.state);
        let Some(repo) = s.repo(repo_part).cloned() else {
            return plain(404, "Repository not found.");
        };
        let token = basic_token(headers);
        let need = if push {
            ("contents", "write")
        } else {
            ("contents", "read")
        };
        let authed = token
            .as_deref()
            .map(|t| check_token(&s, Some(t), &repo, need).is_ok());
        match authed {
            Some(true) => (repo, Some("x-access-token")),
            // Anonymous reads of public repositories are fine; anything else asks for
            // credentials like GitHub does.
            None if !push && !repo.private => (repo, None),
            _ => {
                return Answer {
                    status: 401,
                    headers: vec![("www-authenticate".into(), "Basic realm=\"GitHub\"".into())],
                    body: b"Invalid username or token. Password authentication is not supported for Git operations.\n".to_vec(),
                }
            }
        }
    };
    let Some(bare) = repo.bare.clone() else {
        return plain(404, "Repository not found.");
    };
    let root = shared.repos_dir.path();
    let rel = bare
        .strip_prefix(root)
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let suffix = path.split_once(".git/").map(|(_, s)| s).unwrap_or("");
    let path_info = format!("/{}/{suffix}", rel.display());
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let git_protocol = header("git-protocol");
    let answer = git::http_backend(git::CgiRequest {
        project_root: root,
        path_info: &path_info,
        query,
        method: method.as_str(),
        content_type: content_type.as_deref(),
        content_encoding: content_encoding.as_deref(),
        git_protocol: git_protocol.as_deref(),
        remote_user: user,
        body,
    })
    .await;
    match answer {
        Ok(a) => Answer {
            status: a.status,
            headers: a.headers,
            body: a.body,
        },
        Err(e) => plain(500, &format!("git http-backend failed: {e}")),
    }
}

fn plain(status: u16, text: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: format!("{text}\n").into_bytes(),
    }
}

/// The password of `Basic x-access-token:<token>`.
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, token) = text.split_once(':')?;
    (user == "x-access-token").then(|| token.to_string())
}
