//! The whole bot in one test: the real router and store, real workers, the real Docker sandbox
//! and git, with the fake GitHub (REST + git over HTTP) and the scripted fake Messages API in
//! place of the services that cannot be reached. Tests read like scripts: a maintainer comments,
//! the bot reacts, a pull request appears.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backspace::agent::{AgentConfig, ModelProvider, ProviderSettings, RetryPolicy};
use backspace::github::{GithubApp, GithubAppConfig, IssueNumber, RepoName};
use backspace::job::JobState;
use backspace::runner::{RunnerSettings, Services, Workers};
use backspace::sandbox::Sandboxes;
use backspace::server::DoorsConfig;
use backspace::store::{Job, Store};
use backspace::trigger::TriggerContext;
use backspace::webhook::signature::sign;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::fake_anthropic::{FakeAnthropic, Step};
use super::fake_github::{self, FakeGithub};
use super::webhooks::{fixture, secrets, Ingress};

pub const MAINTAINER: &str = "maintainer";

pub struct Bot {
    pub gh: FakeGithub,
    pub model: FakeAnthropic,
    pub store: Store,
    pub ingress: Ingress,
    pub repo: RepoName,
    pub sandboxes: Sandboxes,
    workers: Option<Workers>,
    deliveries: std::sync::atomic::AtomicU64,
    _db: super::db::TestStore,
}

/// What a test may change in the bot's set-up.
pub struct Options {
    pub max_jobs: usize,
    pub store: Option<super::db::TestStore>,
    pub start_workers: bool,
    pub lease: Duration,
    /// The API, run page and setup settings (`github_url` is set to the fake's).
    pub doors: Option<DoorsConfig>,
    /// The Docker engine connection, when not the default one (a remote engine over TLS).
    pub sandboxes: Option<Sandboxes>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_jobs: 2,
            store: None,
            start_workers: true,
            lease: Duration::from_secs(30),
            doors: None,
            sandboxes: None,
        }
    }
}

pub fn model_provider(fake: &FakeAnthropic) -> Arc<dyn ModelProvider> {
    let mut s = ProviderSettings::new(
        url::Url::parse(&fake.base_url).expect("fake url"),
        Some(SecretString::from("sk-ant-e2e-key".to_owned())),
        "claude-sonnet-4-5",
    );
    s.retry = RetryPolicy::fast();
    s.build().expect("provider")
}

impl Bot {
    /// A repository `octo/app` with `files`, a maintainer with write access, the model scripted
    /// with `script`. `None` (a skip) only outside CI when Docker is missing.
    pub async fn start(files: &[(&str, &str)], script: Vec<Step>) -> Option<Bot> {
        Self::start_with(files, script, Options::default()).await
    }

    pub async fn start_with(
        files: &[(&str, &str)],
        script: Vec<Step>,
        opts: Options,
    ) -> Option<Bot> {
        let sandboxes = match opts.sandboxes {
            Some(s) => s,
            None => super::docker::sandboxes().await?,
        };
        let gh = FakeGithub::start().await;
        let repo = gh.repo_with_files("octo/app", files);
        gh.add_collaborator(&repo, MAINTAINER, "write");
        let model = FakeAnthropic::start(script).await;
        let db = match opts.store {
            Some(s) => s,
            None => super::db::sqlite().await,
        };
        let store = db.store.clone();
        let mut doors = opts.doors.unwrap_or_else(super::webhooks::test_doors);
        doors.github_url = gh.api_url();
        let ingress = Ingress::with_doors(store.clone(), &[fake_github::WEBHOOK_SECRET], doors);
        ingress.state.set_bot_login(gh.bot_login());
        let mut bot = Bot {
            gh,
            model,
            store,
            ingress,
            repo,
            sandboxes,
            workers: None,
            deliveries: Default::default(),
            _db: db,
        };
        if opts.start_workers {
            bot.start_workers(opts.max_jobs, opts.lease, "instance-a");
        }
        Some(bot)
    }

    /// The services of one Backspace instance named `instance`.
    pub fn services(&self, max_jobs: usize, lease: Duration, instance: &str) -> Services {
        let github = GithubApp::new(GithubAppConfig::new(
            self.gh.app_id(),
            fake_github::app_private_key(),
            self.gh.api_url(),
        ))
        .expect("app");
        self.ingress.state.set_github(github.clone());
        self.ingress.state.set_sandboxes(self.sandboxes.clone());
        let mut settings = RunnerSettings::new(
            format!(
                "{instance}:{}:{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            max_jobs,
            url::Url::parse("http://backspace.test/").expect("url"),
        );
        settings.lease = lease;
        settings.poll = Duration::from_millis(100);
        settings.grace = Duration::from_secs(5);
        settings.progress.min_edit_interval = Duration::from_millis(50);
        Services {
            store: self.store.clone(),
            github,
            sandboxes: self.sandboxes.clone(),
            model: model_provider(&self.model),
            agent: AgentConfig::default(),
            settings: Arc::new(settings),
            wake: self.ingress.state.wake(),
            run_link: Some(Arc::new(|id: &str| {
                Some(format!("http://backspace.test/runs/{id}?sig=test"))
            })),
        }
    }

    pub fn start_workers(&mut self, max_jobs: usize, lease: Duration, instance: &str) {
        self.workers = Some(Workers::start(self.services(max_jobs, lease, instance)));
    }

    pub async fn stop_workers(&mut self) {
        if let Some(w) = self.workers.take() {
            w.shutdown().await;
        }
    }

    /// Sends a signed delivery; returns the status and the answer's JSON.
    pub async fn deliver(&self, event: &str, payload: Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&payload).expect("json");
        let n = self
            .deliveries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = Request::post("/api/github/webhooks")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header(
                "x-github-delivery",
                format!("e2e-{}-{n}", uuid::Uuid::new_v4().simple()),
            )
            .header(
                "x-hub-signature-256",
                sign(fake_github::WEBHOOK_SECRET, &body),
            )
            .body(Body::from(body))
            .expect("request");
        self.ingress.send(req).await
    }

    fn base_payload(&self, fixture_path: &str, sender: &str) -> Value {
        let mut v: Value = serde_json::from_slice(&fixture(fixture_path)).expect("fixture");
        v["repository"] = self.gh.repository_json(&self.repo);
        v["sender"] = self.gh.user_json(sender);
        v["installation"] = json!({ "id": self.gh.installation_of(&self.repo).0, "node_id": "x" });
        v
    }

    /// `author` comments `body` on issue (or pull request) `n`, and GitHub delivers it.
    pub async fn comment(
        &self,
        n: IssueNumber,
        author: &str,
        body: &str,
    ) -> (StatusCode, Value, u64) {
        let id = self.gh.post_comment(&self.repo, n, author, body);
        let mut p = self.base_payload(
            "webhooks/issue_comment/created.with-installation.json",
            author,
        );
        p["action"] = json!("created");
        p["issue"] = self.gh.issue_json(&self.repo, n);
        p["comment"] = self.gh.comment_json(id);
        let (status, answer) = self.deliver("issue_comment", p).await;
        (status, answer, id)
    }

    /// `author` writes a review comment `body` on pull request `pr` (at `path`, line `line` of
    /// the diff), and GitHub delivers it.
    pub async fn review_comment(
        &self,
        pr: IssueNumber,
        author: &str,
        body: &str,
        path: &str,
        line: u64,
    ) -> (StatusCode, Value, u64) {
        let id = self.gh.post_review_comment(&self.repo, pr, author, body);
        let mut p = base_payload(
            &self.gh,
            &self.repo,
            "webhooks/pull_request_review_comment/created.json",
            author,
        );
        p["action"] = json!("created");
        let mut comment = self.gh.comment_json(id);
        comment["path"] = json!(path);
        comment["line"] = json!(line);
        comment["diff_hunk"] = json!(format!("@@ -1,3 +1,3 @@\n-old line\n+{path} line {line}"));
        p["comment"] = comment;
        self.point_at_pull(&mut p, pr);
        let (status, answer) = self.deliver("pull_request_review_comment", p).await;
        (status, answer, id)
    }

    /// The `pull_request` of a payload made from the review comment example, made `pr`.
    fn point_at_pull(&self, p: &mut Value, pr: IssueNumber) {
        let pull = self
            .gh
            .pulls(&self.repo)
            .into_iter()
            .find(|x| x.number == pr.0)
            .expect("the pull request");
        p["pull_request"]["number"] = json!(pr.0);
        p["pull_request"]["head"]["ref"] = json!(pull.head);
        p["pull_request"]["head"]["repo"] = self.gh.repository_json(&self.repo);
        p["pull_request"]["base"]["ref"] = json!(pull.base);
        p["pull_request"]["base"]["repo"] = self.gh.repository_json(&self.repo);
    }

    /// `author` submits a review of pull request `pr` with `body` and inline `comments` (path,
    /// line, text), and GitHub delivers `pull_request_review` (action `submitted`); the shared
    /// fixtures have no example of it, so the payload is the review comment example's pull
    /// request, repository and sender with the review GitHub's reference describes.
    pub async fn review(
        &self,
        pr: IssueNumber,
        author: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> (StatusCode, Value, Vec<u64>) {
        let (id, comment_ids) = self
            .gh
            .submit_review(&self.repo, pr, author, body, comments);
        let mut p = base_payload(
            &self.gh,
            &self.repo,
            "webhooks/pull_request_review_comment/created.json",
            author,
        );
        if let Some(o) = p.as_object_mut() {
            o.remove("comment");
        }
        p["action"] = json!("submitted");
        p["review"] = self.gh.review_json(id);
        self.point_at_pull(&mut p, pr);
        let (status, answer) = self.deliver("pull_request_review", p).await;
        (status, answer, comment_ids)
    }

    /// `who` adds `label` to issue `n`.
    pub async fn label(&self, n: IssueNumber, who: &str, label: &str) -> (StatusCode, Value) {
        let mut p = self.base_payload("webhooks/issues/labeled.json", who);
        p["action"] = json!("labeled");
        p["issue"] = self.gh.issue_json(&self.repo, n);
        p["label"] = json!({ "id": 1, "name": label, "color": "ededed", "default": false });
        self.deliver("issues", p).await
    }

    pub fn issue(&self, title: &str, body: &str) -> IssueNumber {
        self.gh.open_issue(&self.repo, MAINTAINER, title, body)
    }

    /// Waits until job `id` has ended; returns it.
    pub async fn finished(&self, id: &str, within: Duration) -> Job {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.store.job(id).await.expect("store").expect("job");
            if job.state.is_final() {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "job {id} did not end within {within:?}: {job:?}\nevents: {:?}",
                    self.events(id).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until job `id` is in `state`.
    pub async fn reaches(&self, id: &str, state: JobState, within: Duration) -> Job {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.store.job(id).await.expect("store").expect("job");
            if job.state == state {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never reached {state}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The run's events, as their JSON `type`s.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        self.store
            .events_after(id, 0)
            .await
            .expect("events")
            .into_iter()
            .map(|e| serde_json::to_value(e.event).expect("json"))
            .collect()
    }

    /// The bot's comments on issue `n`.
    pub fn bot_comments(&self, n: IssueNumber) -> Vec<fake_github::FakeComment> {
        let bot = self.gh.bot_login();
        self.gh
            .comments(&self.repo, n)
            .into_iter()
            .filter(|c| c.author == bot)
            .collect()
    }

    /// Containers of run `id` still on the engine.
    pub async fn containers_of(&self, id: &str) -> usize {
        self.sandboxes
            .containers_of_run(id)
            .await
            .expect("list containers")
            .len()
    }
}

fn base_payload(gh: &FakeGithub, repo: &RepoName, fixture_path: &str, sender: &str) -> Value {
    let mut v: Value = serde_json::from_slice(&fixture(fixture_path)).expect("fixture");
    v["repository"] = gh.repository_json(repo);
    v["sender"] = gh.user_json(sender);
    v["installation"] = json!({ "id": gh.installation_of(repo).0, "node_id": "x" });
    v
}

/// GitHub's `issue_comment` payload for a new comment by `author` on `n` (posted on the fake);
/// returns it with the comment's id.
pub fn comment_payload(
    gh: &FakeGithub,
    repo: &RepoName,
    n: IssueNumber,
    author: &str,
    body: &str,
) -> (Value, u64) {
    let id = gh.post_comment(repo, n, author, body);
    let mut p = base_payload(
        gh,
        repo,
        "webhooks/issue_comment/created.with-installation.json",
        author,
    );
    p["action"] = json!("created");
    p["issue"] = gh.issue_json(repo, n);
    p["comment"] = gh.comment_json(id);
    (p, id)
}

/// A model script that edits `path` (replacing `old` with `new`), runs `cat`, and ends with a
/// title and summary.
pub fn edit_script(path: &str, old: &str, new: &str, title: &str) -> Vec<Step> {
    use super::fake_anthropic::Reply;
    vec![
        Reply::edit(json!({ "command": "view", "path": path })).into(),
        Reply::edit(
            json!({ "command": "str_replace", "path": path, "old_str": old, "new_str": new }),
        )
        .into(),
        Reply::bash(&format!("cat {path}")).into(),
        Reply::text(&format!(
            "TITLE: {title}\n\nSUMMARY:\nChanged `{path}` as asked."
        ))
        .into(),
    ]
}
