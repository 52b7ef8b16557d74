//! A faithful fake GitHub for tests: an axum server on 127.0.0.1 with a random port, holding an
//! app (with the RSA public key of `tests/fixtures/github-app-test-key.pem`), installations,
//! repositories (bare git repos served over smart HTTP by `git http-backend`), collaborators,
//! issues, comments, reactions and pull requests. It checks the app JWT on `/app/...` routes and
//! installation tokens (its own, unexpired, scoped to the repository, with the permission the
//! route needs) on repository routes, answering like GitHub otherwise; answers are built from the
//! examples of GitHub's OpenAPI description, and every request is recorded with the problems the
//! OpenAPI subset finds in it. Faults (a status, `retry-after` or other headers, N times) and
//! delays can be injected per operation, also after the work was done (the 502 a proxy gives
//! when GitHub created the pull request but the answer was lost). Errors carry GitHub's bodies
//! (`422 Validation Failed` with its `errors`). It keeps the app's webhook delivery log
//! (`GET /app/hook/deliveries`, paged by cursor) and redelivers on
//! `POST /app/hook/deliveries/{id}/attempts` to the hook URL a test sets, signed, same GUID.
//! Branches can be protected. Helpers read like a script:
//! `gh.add_collaborator(&repo, "alice", "write")`, `gh.comments(&repo, issue)`.

pub mod git;
pub mod openapi;
mod server;
mod shapes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backspace::github::{format_github_time, InstallationId, IssueNumber, RepoName};
use secrecy::SecretString;
use serde_json::{json, Value};

/// The app's id in the fake.
pub const APP_ID: u64 = 4242;
/// The app's slug; the bot's login is `backspace-test[bot]`.
pub const APP_SLUG: &str = "backspace-test";
/// The bot user's id (`GET /users/backspace-test[bot]`): like on GitHub, not the app's id.
pub const BOT_USER_ID: u64 = 180_004_242;
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
    pub requested_reviewers: Vec<String>,
}

/// A check run as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCheckRun {
    pub id: u64,
    pub repo: String,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    /// The last `output` sent.
    pub output: Value,
    /// Every status it had, in order (creation included).
    pub statuses: Vec<String>,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    status: u16,
    headers: Vec<(String, String)>,
    times: usize,
    /// The work is done first and only the answer is lost.
    after: bool,
}

/// One attempt at delivering a webhook, as GitHub's delivery log keeps it.
#[derive(Debug, Clone)]
pub struct HookRec {
    pub id: u64,
    pub guid: String,
    pub delivered_at: u64,
    pub redelivery: bool,
    pub status: String,
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    /// The exact body sent (redeliveries send it again).
    pub body: Vec<u8>,
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
    reviewers: Vec<String>,
}

#[derive(Debug, Clone)]
struct ReviewRec {
    id: u64,
    repo: String,
    pull: u64,
    author: String,
    body: String,
    commit_id: String,
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
    /// The review a review comment belongs to.
    review_id: Option<u64>,
    /// Where a review comment sits, when the test said.
    path: Option<String>,
    line: Option<u64>,
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
    /// What the installation's owner granted (less than the app asks for until they accept a
    /// change of the app's permissions).
    granted: Value,
}

struct FakeState {
    base_url: String,
    installations: BTreeMap<u64, InstallationRec>,
    repos: BTreeMap<String, RepoRec>,
    users: HashMap<String, u64>,
    comments: BTreeMap<u64, CommentRec>,
    reactions: Vec<ReactionRec>,
    check_runs: BTreeMap<u64, FakeCheckRun>,
    reviews: BTreeMap<u64, ReviewRec>,
    tokens: HashMap<String, TokenGrant>,
    token_ttl: Duration,
    faults: Vec<Fault>,
    delays: Vec<Delay>,
    requests: Vec<RecordedRequest>,
    response_problems: Vec<String>,
    manifest_codes: Vec<String>,
    /// Protected branches, `owner/name:branch` in lower case.
    protected: std::collections::HashSet<String>,
    hook_url: Option<String>,
    hook_deliveries: Vec<HookRec>,
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

    /// A comment's `author_association`, as GitHub derives it: the owner, a collaborator (any
    /// role, read included), or nobody to the repository.
    fn association(&self, full: &str, login: &str) -> &'static str {
        let owner = full.split('/').next().unwrap_or_default();
        if login.eq_ignore_ascii_case(owner) {
            return "OWNER";
        }
        match self.repo(full) {
            Some(r) if r.collaborators.contains_key(&login.to_ascii_lowercase()) => "COLLABORATOR",
            _ => "NONE",
        }
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
            users: HashMap::from([(format!("{APP_SLUG}[bot]"), BOT_USER_ID)]),
            comments: BTreeMap::new(),
            reactions: Vec::new(),
            check_runs: BTreeMap::new(),
            reviews: BTreeMap::new(),
            tokens: HashMap::new(),
            token_ttl: Duration::from_secs(3600),
            faults: Vec::new(),
            delays: Vec::new(),
            requests: Vec::new(),
            response_problems: Vec::new(),
            manifest_codes: Vec::new(),
            protected: Default::default(),
            hook_url: None,
            hook_deliveries: Vec::new(),
            next_id: 1000,
        }));
        let repos_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let shared = Shared {
            state: state.clone(),
            repos_dir: repos_dir.clone(),
            public_key: Arc::new(public_key),
        };
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared);
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

    /// The bot user's id, as `GET /users/{login}` gives it.
    pub fn bot_user_id(&self) -> u64 {
        BOT_USER_ID
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
                granted: default_permissions(),
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

    /// The installation's owner has not granted `permission` (an installation made before the
    /// app asked for it): tokens that ask for it are refused with GitHub's 422.
    pub fn withhold_permission(&self, id: InstallationId, permission: &str) {
        if let Some(i) = self.state().installations.get_mut(&id.0) {
            if let Some(o) = i.granted.as_object_mut() {
                o.remove(permission);
            }
        }
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
                reviewers: Vec::new(),
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

    /// `author` submits a review of pull request `pull` with `body` and inline `comments`
    /// (path, line, text); returns the review's id and its comments' ids.
    pub fn submit_review(
        &self,
        repo: &RepoName,
        pull: IssueNumber,
        author: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> (u64, Vec<u64>) {
        let sha = self
            .pulls(repo)
            .into_iter()
            .find(|p| p.number == pull.0)
            .and_then(|p| self.branch_sha(repo, &p.head))
            .unwrap_or_else(|| "0".repeat(40));
        let mut s = self.state();
        s.user_id(author);
        let id = s.id();
        s.reviews.insert(
            id,
            ReviewRec {
                id,
                repo: repo.full_name(),
                pull: pull.0,
                author: author.into(),
                body: body.into(),
                commit_id: sha,
            },
        );
        let mut ids = Vec::new();
        for (path, line, text) in comments {
            let c = insert_comment(&mut s, &repo.full_name(), pull.0, author, text, Some(None));
            if let Some(rec) = s.comments.get_mut(&c) {
                rec.review_id = Some(id);
                rec.path = Some((*path).to_owned());
                rec.line = Some(*line);
            }
            ids.push(c);
        }
        (id, ids)
    }

    /// A review as GitHub renders it (`review` in `pull_request_review` payloads).
    pub fn review_json(&self, id: u64) -> Value {
        let mut s = self.state();
        let r = s.reviews.get(&id).expect("review").clone();
        let uid = s.user_id(&r.author);
        let base = s.base_url.clone();
        shapes::review(&base, &r, uid)
    }

    /// The check runs created on `repo`, oldest first.
    pub fn check_runs(&self, repo: &RepoName) -> Vec<FakeCheckRun> {
        self.state()
            .check_runs
            .values()
            .filter(|c| c.repo.eq_ignore_ascii_case(&repo.full_name()))
            .cloned()
            .collect()
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
            after: false,
        });
    }

    /// The next `times` requests of `operation` are carried out, then answered `status` (a
    /// proxy's 502 after GitHub made the pull request or the comment).
    pub fn fail_after_work(&self, operation: &str, status: u16, times: usize) {
        self.state().faults.push(Fault {
            operation: operation.into(),
            status,
            headers: Vec::new(),
            times,
            after: true,
        });
    }

    /// Turns branch protection on for `branch` of `repo`.
    pub fn protect_branch(&self, repo: &RepoName, branch: &str) {
        self.state().protected.insert(format!(
            "{}:{branch}",
            repo.full_name().to_ascii_lowercase()
        ));
    }

    /// Closes issue or pull request `n`.
    pub fn close(&self, repo: &RepoName, n: IssueNumber) {
        if let Some(i) = self
            .state()
            .repo_mut(&repo.full_name())
            .and_then(|r| r.issues.get_mut(&n.0))
        {
            i.state = "closed".into();
        }
    }

    // --- the app's webhook and its delivery log ---

    /// Where the app's webhook points (redeliveries are POSTed there).
    pub fn set_hook_url(&self, url: &str) {
        self.state().hook_url = Some(url.to_string());
    }

    /// Records an attempt GitHub made at delivering `body` (answered `status_code`, 0 when the
    /// receiver could not be reached), as its delivery log shows it; returns the attempt's id.
    pub fn record_delivery(&self, guid: &str, event: &str, body: &[u8], status_code: u16) -> u64 {
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut s = self.state();
        let id = s.id();
        s.hook_deliveries.push(HookRec {
            id,
            guid: guid.to_string(),
            delivered_at: now(),
            redelivery: false,
            status: hook_status(status_code),
            status_code,
            event: event.to_string(),
            action: payload["action"].as_str().map(str::to_string),
            installation_id: payload["installation"]["id"].as_u64(),
            repository_id: payload["repository"]["id"].as_u64(),
            body: body.to_vec(),
        });
        id
    }

    /// Every attempt in the delivery log, oldest first.
    pub fn hook_deliveries(&self) -> Vec<HookRec> {
        self.state().hook_deliveries.clone()
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
                            requested_reviewers: p.reviewers.clone(),
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
        let mut v = if c.review.is_some() {
            shapes::review_comment(&base, &c.repo, &c, uid)
        } else {
            shapes::comment(&base, &c.repo, &c, uid)
        };
        v["author_association"] = serde_json::json!(s.association(&c.repo, &c.author));
        v
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

    /// `git log -1 --format=<format>` of a branch (`%an <%ae>`, `%B`), if it exists.
    pub fn last_commit(&self, repo: &RepoName, branch: &str, format: &str) -> Option<String> {
        let out = git::git_maybe(
            &self.bare(repo),
            &[
                "log",
                "-1",
                &format!("--format={format}"),
                &format!("refs/heads/{branch}"),
            ],
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

/// What GitHub's delivery log says about an answer.
fn hook_status(status_code: u16) -> String {
    match status_code {
        0 => "failed to connect".into(),
        200..=299 => "OK".into(),
        other => format!("Invalid HTTP Response: {other}"),
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
            review_id: None,
            path: None,
            line: None,
        },
    );
    id
}

fn default_permissions() -> Value {
    json!({"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"})
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
