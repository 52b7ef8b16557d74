//! The `backspace` binary as an operator runs it: started, signalled and killed for real, against
//! the fake GitHub and the fake Messages API, with the real Docker sandbox and a SQLite file.

mod support;
use support::within;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backspace::job::JobState;
use backspace::store::Store;
use backspace::webhook::signature::sign;
use secrecy::{ExposeSecret, SecretString};
use support::bot::{comment_payload, edit_script, MAINTAINER};
use support::fake_anthropic::{FakeAnthropic, Reply, Step};
use support::fake_github::{self, FakeGithub};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `backspace serve` process.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(env: &[(&str, String)]) -> Server {
        Self::start_with_stdout(env, Stdio::null())
    }

    /// A server whose log lines (stdout) are collected into the returned list as they come.
    fn start_logging(env: &[(&str, String)]) -> (Server, Arc<Mutex<Vec<String>>>) {
        let mut server = Self::start_with_stdout(env, Stdio::piped());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = server.child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        (server, lines)
    }

    fn start_with_stdout(env: &[(&str, String)], stdout: Stdio) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backspace"));
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            // Away from the checkout, whose .env (if a developer keeps one) serve would read.
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdout(stdout)
            .stderr(Stdio::inherit());
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", h);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server {
            child: cmd.spawn().expect("start backspace"),
            port,
        }
    }

    /// Waits until `/readyz` says a run could start (store, credentials, workers, engine).
    async fn ready(&mut self) {
        self.answers("/readyz").await;
    }

    /// Waits until the process serves HTTP (`/livez`), ready or not (setup mode).
    async fn live(&mut self) {
        self.answers("/livez").await;
    }

    async fn answers(&mut self, probe: &str) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{}{probe}", self.port))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("backspace exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("backspace never answered {probe} with 200");
    }

    async fn deliver(&self, event: &str, payload: &serde_json::Value) -> serde_json::Value {
        let body = serde_json::to_vec(payload).expect("json");
        let resp = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/github/webhooks",
                self.port
            ))
            .header("x-github-event", event)
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header(
                "x-hub-signature-256",
                sign(fake_github::WEBHOOK_SECRET, &body),
            )
            .body(body)
            .send()
            .await
            .expect("delivery");
        assert_eq!(resp.status(), 202);
        resp.json().await.expect("json")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "backspace did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every server of a test shares: the fakes, the database file and the environment.
struct World {
    gh: FakeGithub,
    model: FakeAnthropic,
    db_url: SecretString,
    repo: backspace::github::RepoName,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(script: Vec<Step>) -> World {
        Self::with_model(FakeAnthropic::start(script).await).await
    }

    /// A model that serves `script`, then `then` for every further request.
    async fn with_model_after(script: Vec<Step>, then: Step) -> World {
        Self::with_model(FakeAnthropic::start_then(script, Some(then)).await).await
    }

    async fn with_model(model: FakeAnthropic) -> World {
        let gh = FakeGithub::start().await;
        let repo = gh.repo_with_files(
            "octo/app",
            &[("src/app.js", "export const greet = (n) => 'hi ' + n;\n")],
        );
        gh.add_collaborator(&repo, MAINTAINER, "write");
        let dir = tempfile::tempdir().expect("dir");
        let db_url = SecretString::from(format!(
            "sqlite://{}",
            dir.path().join("backspace.db").display()
        ));
        World {
            gh,
            model,
            db_url,
            repo,
            _dir: dir,
        }
    }

    fn env(&self, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("APP_ID", self.gh.app_id().to_string()),
            (
                "PRIVATE_KEY",
                fake_github::app_private_key().expose_secret().to_owned(),
            ),
            ("WEBHOOK_SECRET", fake_github::WEBHOOK_SECRET.to_owned()),
            ("GITHUB_API_URL", self.gh.api_url().to_string()),
            ("ANTHROPIC_BASE_URL", self.model.base_url.clone()),
            ("ANTHROPIC_API_KEY", "sk-ant-process-test".to_owned()),
            ("DATABASE_URL", self.db_url.expose_secret().to_owned()),
            (
                "BACKSPACE_SANDBOX_IMAGE",
                support::docker::TEST_IMAGE.to_owned(),
            ),
            ("BACKSPACE_LEASE_SECS", "3".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    }

    async fn store(&self) -> Store {
        Store::connect(&self.db_url).await.expect("store")
    }

    async fn wait_for_model_calls(&self, n: usize) {
        for _ in 0..1200 {
            if self.model.requests().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the model was not called {n} times");
    }
}

async fn wait_state(
    store: &Store,
    id: &str,
    state: JobState,
    within: Duration,
) -> backspace::store::Job {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job = store.job(id).await.expect("store").expect("job");
        if job.state == state {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never reached {state}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn containers_of(run: &str) -> usize {
    let Some(sandboxes) = support::docker::sandboxes().await else {
        return 0;
    };
    sandboxes
        .containers_of_run(run)
        .await
        .expect("list containers")
        .len()
}

#[tokio::test]
async fn kill_dash_nine_mid_run_then_a_restart_ends_in_one_pull_request_and_no_container() {
    within(300, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        // Attempt 1 runs a command, then the model hangs (and the process is killed);
        // attempt 2 starts over and finishes.
        let mut script: Vec<Step> = vec![
            Reply::bash("echo attempt one").into(),
            Step::Stall(Duration::from_secs(120)),
        ];
        script.extend(edit_script(
            "src/app.js",
            "'hi '",
            "'Hello, '",
            "Greet properly",
        ));
        let world = World::new(script).await;
        let issue = world
            .gh
            .open_issue(&world.repo, MAINTAINER, "Rude greeting", "fix it");
        let mut first = Server::start(&world.env(&[]));
        first.ready().await;
        let (payload, _) = comment_payload(
            &world.gh,
            &world.repo,
            issue,
            MAINTAINER,
            "/backspace make greet say Hello",
        );
        let answer = first.deliver("issue_comment", &payload).await;
        let run = answer["job_id"].as_str().expect("job id").to_owned();
        world.wait_for_model_calls(2).await;
        assert_eq!(containers_of(&run).await, 1, "the run's sandbox is up");
        first.child.kill().expect("kill -9");
        first.wait_exit(Duration::from_secs(10)).await;

        let mut second = Server::start(&world.env(&[]));
        second.ready().await;
        let store = world.store().await;
        let job = wait_state(&store, &run, JobState::Succeeded, Duration::from_secs(120)).await;
        assert_eq!(job.attempts, 2, "{job:?}");
        let pulls = world.gh.pulls(&world.repo);
        assert_eq!(pulls.len(), 1, "exactly one pull request");
        let bot = world.gh.bot_login();
        let comments: Vec<_> = world
            .gh
            .comments(&world.repo, issue)
            .into_iter()
            .filter(|c| c.author == bot)
            .collect();
        assert_eq!(
            comments.len(),
            1,
            "one progress comment, found again after the restart"
        );
        assert!(
            comments[0].body.starts_with("### ✅ Opened pull request"),
            "{}",
            comments[0].body
        );
        assert!(comments[0]
            .history
            .iter()
            .any(|b| b.contains("started again after an interruption")));
        assert_eq!(
            containers_of(&run).await,
            0,
            "the orphan was reaped and the second sandbox removed"
        );
        // The second instance's metrics count the run and the calls it made.
        let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", second.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("backspace_runs_total{status=\"succeeded\"} 1"),
            "{metrics}"
        );
        for counter in [
            "backspace_github_calls_total",
            "backspace_model_calls_total",
            "backspace_sandbox_start_seconds_count",
        ] {
            let value: f64 = metrics
                .lines()
                .find(|l| l.starts_with(counter))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{counter} missing in {metrics}"));
            assert!(value >= 1.0, "{counter} = {value}");
        }
        second.signal("-TERM");
        assert!(second.wait_exit(Duration::from_secs(30)).await.success());
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_the_grace_period_pass_then_releases_the_running_job() {
    within(240, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        let world = World::new(vec![
            Reply::bash("echo working").into(),
            Step::Stall(Duration::from_secs(120)),
        ])
        .await;
        let issue = world.gh.open_issue(&world.repo, MAINTAINER, "x", "y");
        let mut server = Server::start(&world.env(&[("BACKSPACE_SHUTDOWN_GRACE_SECS", "1")]));
        server.ready().await;
        let (payload, _) = comment_payload(
            &world.gh,
            &world.repo,
            issue,
            MAINTAINER,
            "/backspace slow work",
        );
        let answer = server.deliver("issue_comment", &payload).await;
        let run = answer["job_id"].as_str().expect("job id").to_owned();
        world.wait_for_model_calls(2).await;
        server.signal("-TERM");
        let status = server.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "{status}");
        let job = world.store().await.job(&run).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.lease_owner),
            (JobState::Queued, None),
            "released for the next instance"
        );
        let bot = world.gh.bot_login();
        let comment = world
            .gh
            .comments(&world.repo, issue)
            .into_iter()
            .find(|c| c.author == bot)
            .expect("progress comment");
        assert!(comment.body.contains("restarting"), "{}", comment.body);
        assert_eq!(containers_of(&run).await, 0, "no container is left");
    })
    .await;
}

#[tokio::test]
async fn serve_without_credentials_starts_in_setup_mode_and_names_what_is_missing() {
    within(60, async {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_backspace"))
            .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("b.db").display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let mut server = Server { child, port };
        server.live().await;
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 503, "not ready in setup mode");
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/github/webhooks"))
            .header("x-github-event", "ping")
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 503);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("APP_ID, PRIVATE_KEY or PRIVATE_KEY_PATH, WEBHOOK_SECRET"),
            "{text}"
        );
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(10)).await.success());
        let mut stderr = String::new();
        use std::io::Read;
        server
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("setup mode") && stderr.contains("/setup"),
            "{stderr}"
        );
    })
    .await;
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)]
}

/// Comments `/backspace greet run {n}` on a new issue and waits for its pull request: the time
/// from the delivery to 👀 and to the pull request.
async fn one_run(world: &World, server: &Server, n: usize) -> (Duration, Duration) {
    let issue = world
        .gh
        .open_issue(&world.repo, MAINTAINER, &format!("greet {n}"), "be polite");
    let (payload, comment) = comment_payload(
        &world.gh,
        &world.repo,
        issue,
        MAINTAINER,
        &format!("/backspace greet run {n}"),
    );
    let sent = std::time::Instant::now();
    server.deliver("issue_comment", &payload).await;
    let mut eyes = None;
    loop {
        if eyes.is_none() && !world.gh.reactions_on_comment(comment).is_empty() {
            eyes = Some(sent.elapsed());
        }
        if world
            .gh
            .pulls(&world.repo)
            .iter()
            .any(|p| p.body.contains(&format!("Closes #{}", issue.0)))
        {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(60),
            "run {n} took too long"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (eyes.unwrap_or_else(|| sent.elapsed()), sent.elapsed())
}

/// BENCHMARKS.md: delivery → 👀 and delivery → pull request with a model that answers at once,
/// on a small repository: first with the installation's write pacer idle (what one maintainer
/// sees), then runs back to back on one installation (writes paced at one a second after a
/// burst of five); then memory with 50 queued jobs and 2 running.
/// `cargo test --release --test process -- --ignored bench_ --nocapture`
#[tokio::test]
#[ignore = "a benchmark: run it by name"]
async fn bench_delivery_to_reaction_and_pull_request() {
    within(900, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        const RUNS: usize = 10;
        let mut script = Vec::new();
        for i in 0..2 * RUNS {
            script.extend(edit_script("src/app.js", "'hi '", &format!("'Hello {i}, '"), "Greet properly"));
            script.remove(script.len() - 2); // no `cat`: view, edit, answer
        }
        // Then every further call hangs: two runs stay in the agent while 50 wait.
        let stall = Step::Stall(Duration::from_secs(600));
        script.extend(std::iter::repeat_n(stall, 4));
        let world = World::new(script).await;
        let mut server = Server::start(&world.env(&[]));
        server.ready().await;
        let idle = rss_mb(server.child.id());
        let mut n = 0;
        for (phase, gap) in [("write pacer idle (6 s between runs)", Duration::from_secs(6)), ("back to back on one installation", Duration::ZERO)] {
            let (mut to_eyes, mut to_pr) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                n += 1;
                let (eyes, pr) = one_run(&world, &server, n).await;
                to_eyes.push(eyes);
                to_pr.push(pr);
                tokio::time::sleep(gap).await;
            }
            println!(
                "{phase}: delivery → eyes p50 {:?}, p95 {:?}; delivery → pull request p50 {:?}, p95 {:?} ({RUNS} runs)",
                percentile(&mut to_eyes, 0.50),
                percentile(&mut to_eyes, 0.95),
                percentile(&mut to_pr, 0.50),
                percentile(&mut to_pr, 0.95),
            );
        }
        let after_runs = rss_mb(server.child.id());
        for i in 0..52 {
            let issue = world.gh.open_issue(&world.repo, MAINTAINER, &format!("wait {i}"), "");
            let (payload, _) = comment_payload(&world.gh, &world.repo, issue, MAINTAINER, "/backspace wait your turn");
            server.deliver("issue_comment", &payload).await;
        }
        let store = world.store().await;
        for _ in 0..600 {
            let c = store.job_counts().await.unwrap();
            let calls = world.model.requests().len();
            if c.running == 2 && c.queued == 50 && calls >= 2 * RUNS * 3 + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let c = store.job_counts().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded = rss_mb(server.child.id());
        println!(
            "RSS: idle {idle:.1} MB, after {} runs {after_runs:.1} MB, with {} queued and {} running {loaded:.1} MB",
            2 * RUNS,
            c.queued,
            c.running
        );
    })
    .await;
}

/// A stand-in OpenTelemetry collector: records the bodies posted to `/v1/traces`.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    let got: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                axum::Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), got)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    within(120, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        let (endpoint, got) = collector().await;
        let world = World::new(vec![]).await;
        // The SDK's standard variables: JSON rather than the default protobuf, so that the
        // collector here can read it, and the service's name.
        let mut server = Server::start(&world.env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "backspace-under-test"),
        ]));
        server.ready().await;
        let issue = world.gh.open_issue(&world.repo, MAINTAINER, "x", "y");
        let (payload, _) =
            comment_payload(&world.gh, &world.repo, issue, MAINTAINER, "no command here");
        server.deliver("issue_comment", &payload).await;
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(30)).await.success());
        let bodies = got.lock().unwrap().join("\n");
        assert!(
            bodies.contains("\"delivery\""),
            "no delivery span in {bodies}"
        );
        assert!(
            bodies.contains("backspace-under-test"),
            "the service name from OTEL_SERVICE_NAME: {bodies}"
        );
    })
    .await;
}

/// The run ids a JSON log line is logged under (its span and every enclosing one).
fn run_ids_of(line: &serde_json::Value) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    for span in spans.iter().chain(std::iter::once(&line["span"])) {
        if let Some(id) = span["run_id"].as_str() {
            ids.insert(id.to_owned());
        }
    }
    ids
}

#[tokio::test]
async fn two_runs_at_once_log_every_line_under_their_own_run_id_only() {
    within(240, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        // Each run runs a command in its sandbox, then answers: both are alive at once.
        let script: Vec<Step> = vec![
            Reply::bash("sleep 1; echo one").into(),
            Reply::bash("sleep 1; echo two").into(),
            Reply::text("TITLE: A\n\nSUMMARY:\nAnswer.").into(),
            Reply::text("TITLE: B\n\nSUMMARY:\nAnswer.").into(),
        ];
        let world = World::new(script).await;
        let env = world.env(&[("LOG_FORMAT", "json")]);
        let (mut server, lines) = Server::start_logging(&env);
        server.ready().await;
        let mut runs = Vec::new();
        for title in ["first", "second"] {
            let issue = world.gh.open_issue(&world.repo, MAINTAINER, title, "?");
            let (payload, _) =
                comment_payload(&world.gh, &world.repo, issue, MAINTAINER, "/backspace look");
            let answer = server.deliver("issue_comment", &payload).await;
            runs.push(answer["job_id"].as_str().expect("job id").to_owned());
        }
        let store = world.store().await;
        for run in &runs {
            wait_state(&store, run, JobState::Succeeded, Duration::from_secs(120)).await;
        }
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(30)).await.success());

        let lines = lines.lock().unwrap().clone();
        let (mut started, mut finished, mut outside) = (Vec::new(), Vec::new(), 0);
        for raw in &lines {
            let line: serde_json::Value = serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {raw}"));
            let ids = run_ids_of(&line);
            assert!(ids.len() <= 1, "a line under two runs: {raw}");
            // A line that names a run anywhere (a container, a job id) is logged under that run.
            for run in &runs {
                let other = runs.iter().find(|r| *r != run).expect("two runs");
                let mut fields = line.clone();
                fields.as_object_mut().map(|o| o.remove("spans"));
                fields.as_object_mut().map(|o| o.remove("span"));
                if fields.to_string().contains(run.as_str()) {
                    assert!(!ids.contains(other), "{raw}");
                }
            }
            // What the webhook handler logs (a delivery's span) belongs to no run.
            let in_delivery = line["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "delivery"));
            if in_delivery || line["message"] == "listening" {
                assert!(ids.is_empty(), "a line outside the runs under one: {raw}");
                outside += 1;
            }
            match line["message"].as_str() {
                Some("job started") => started.extend(ids),
                Some("job finished") => finished.extend(ids),
                _ => {}
            }
        }
        started.sort();
        finished.sort();
        let mut expected = runs.clone();
        expected.sort();
        assert_eq!(started, expected, "each run logs its start under its id");
        assert_eq!(finished, expected, "each run logs its end under its id");
        assert!(
            outside >= 2,
            "lines of the deliveries, under no run: {outside}"
        );
    })
    .await;
}

/// Writes to GitHub's REST API (not git, not the app's own token requests) made so far, by kind.
fn writes(gh: &FakeGithub) -> std::collections::BTreeMap<String, usize> {
    let mut by_kind = std::collections::BTreeMap::new();
    for r in gh.requests() {
        let Some(op) = r.operation.as_deref() else {
            continue;
        };
        if op.starts_with("git ") || op.starts_with("GET ") || op.contains("/access_tokens") {
            continue;
        }
        *by_kind.entry(op.to_owned()).or_insert(0) += 1;
    }
    by_kind
}

fn per_run(
    before: &std::collections::BTreeMap<String, usize>,
    after: &std::collections::BTreeMap<String, usize>,
    runs: usize,
) -> (f64, String) {
    let mut total = 0;
    let mut parts = Vec::new();
    for (op, n) in after {
        let d = n - before.get(op).copied().unwrap_or(0);
        if d == 0 {
            continue;
        }
        total += d;
        let short = op
            .rsplit_once(' ')
            .map(|(m, p)| format!("{m} …{}", p.trim_start_matches("/repos/{owner}/{repo}")))
            .unwrap_or_else(|| op.clone());
        parts.push(format!("{short}: {:.1}", d as f64 / runs as f64));
    }
    (total as f64 / runs as f64, parts.join(", "))
}

/// One line of the acknowledgement benchmark: times to 👀 and to the pull request, and the
/// writes each run made.
fn summary(
    label: &str,
    eyes: &mut [Duration],
    prs: &mut [Duration],
    writes: (f64, String),
) -> String {
    let eyes_line = format!(
        "delivery → eyes p50 {:?}, p95 {:?}, max {:?}",
        percentile(eyes, 0.50),
        percentile(eyes, 0.95),
        percentile(eyes, 1.0)
    );
    let pr_line = format!(
        "delivery → pull request p50 {:?}, p95 {:?}",
        percentile(prs, 0.50),
        percentile(prs, 0.95)
    );
    let (per_run, detail) = writes;
    format!("{label}: {eyes_line}; {pr_line}; writes per run {per_run:.1} ({detail})")
}

/// `count` commands sent at once, each on its own issue: the acknowledgement benchmark's line.
async fn at_once(
    world: &World,
    server: &Server,
    n: &mut usize,
    count: usize,
    label: &str,
) -> String {
    let before = writes(&world.gh);
    let mut pending = Vec::new();
    for _ in 0..count {
        *n += 1;
        let title = format!("greet {n}");
        let issue = world
            .gh
            .open_issue(&world.repo, MAINTAINER, &title, "be polite");
        let command = format!("/backspace greet run {n}");
        let (payload, comment) =
            comment_payload(&world.gh, &world.repo, issue, MAINTAINER, &command);
        pending.push((issue, comment, payload));
    }
    let sends = pending.iter().map(|(_, _, payload)| {
        let server = &server;
        async move {
            let sent = std::time::Instant::now();
            server.deliver("issue_comment", payload).await;
            sent
        }
    });
    let sent: Vec<std::time::Instant> = futures::future::join_all(sends).await;
    let mut eyes: Vec<Option<Duration>> = vec![None; count];
    let mut prs: Vec<Option<Duration>> = vec![None; count];
    let started = std::time::Instant::now();
    while prs.iter().any(Option::is_none) {
        let pulls = world.gh.pulls(&world.repo);
        for (i, (issue, comment, _)) in pending.iter().enumerate() {
            if eyes[i].is_none() && !world.gh.reactions_on_comment(*comment).is_empty() {
                eyes[i] = Some(sent[i].elapsed());
            }
            let closes = format!("Closes #{}", issue.0);
            if prs[i].is_none() && pulls.iter().any(|p| p.body.contains(&closes)) {
                prs[i] = Some(sent[i].elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the runs took too long"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut to_eyes: Vec<Duration> = eyes.into_iter().flatten().collect();
    let mut to_pr: Vec<Duration> = prs.into_iter().flatten().collect();
    let made = per_run(&before, &writes(&world.gh), count);
    summary(label, &mut to_eyes, &mut to_pr, made)
}

/// BENCHMARKS.md (issue 13): delivery → 👀 and → pull request for 10 commands back to back on
/// one installation (each sent when the previous one's pull request is open) and for 5 sent at
/// once (right after, and again a minute later when the write window has emptied), with the
/// default two workers, and the writes each run makes. A model that answers at
/// once (view, edit, final answer), a one-file repository, the real binary.
/// `cargo test --release --test process -- --ignored bench_acknowledgement --nocapture`
#[tokio::test]
#[ignore = "a benchmark: run it by name"]
async fn bench_acknowledgement_back_to_back_and_at_once() {
    within(900, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        const BACK_TO_BACK: usize = 10;
        const AT_ONCE: usize = 5;
        // Every run: view, edit, answer, whatever order the runs' requests come in.
        let mut turns = edit_script("src/app.js", "'hi '", "'Hello, '", "Greet properly");
        turns.remove(turns.len() - 2); // no `cat`
        let turns = turns
            .into_iter()
            .filter_map(|s| match s {
                Step::Reply(r) => Some(r),
                _ => None,
            })
            .collect();
        let world = World::with_model_after(vec![], Step::ByTurn(turns)).await;
        let mut server = Server::start(&world.env(&[]));
        server.ready().await;
        let mut n = 0;

        let before = writes(&world.gh);
        let (mut to_eyes, mut to_pr) = (Vec::new(), Vec::new());
        for _ in 0..BACK_TO_BACK {
            n += 1;
            let (eyes, pr) = one_run(&world, &server, n).await;
            to_eyes.push(eyes);
            to_pr.push(pr);
        }
        // The last run's closing writes (final edit, 🚀) land just after its pull request.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let made = per_run(&before, &writes(&world.gh), BACK_TO_BACK);
        let label = format!("{BACK_TO_BACK} back to back");
        println!("{}", summary(&label, &mut to_eyes, &mut to_pr, made));

        // Right after: the minute's window holds the ten runs' writes (GitHub allows 80).
        let label = format!("{AT_ONCE} at once, right after");
        println!(
            "{}",
            at_once(&world, &server, &mut n, AT_ONCE, &label).await
        );
        // Once the window has emptied.
        tokio::time::sleep(Duration::from_secs(61)).await;
        let label = format!("{AT_ONCE} at once, a minute later");
        println!(
            "{}",
            at_once(&world, &server, &mut n, AT_ONCE, &label).await
        );
        world.gh.assert_requests_fit_openapi();
    })
    .await;
}

/// BENCHMARKS.md (issue 11): a writer's 👀 and pull request behind 300 refused commands spread
/// over 30 issues, with a model that answers at once and the default two workers: first with no
/// flood, then behind 300 commands from someone who is no collaborator (refused at the door),
/// then behind 300 from a collaborator with read access (refused by the permission API), sent
/// 16 at a time just before the writer's.
/// `cargo test --release --test process -- --ignored bench_flood --nocapture`
#[tokio::test]
#[ignore = "a benchmark: run it by name"]
async fn bench_flood_a_writer_behind_300_refused_commands() {
    within(900, async {
        if support::docker::sandboxes().await.is_none() {
            return;
        }
        let mut turns = edit_script("src/app.js", "'hi '", "'Hello, '", "Greet properly");
        turns.remove(turns.len() - 2); // no `cat`
        let turns = turns
            .into_iter()
            .filter_map(|s| match s {
                Step::Reply(r) => Some(r),
                _ => None,
            })
            .collect();
        let world = World::with_model_after(vec![], Step::ByTurn(turns)).await;
        world.gh.add_collaborator(&world.repo, "reader", "read");
        let mut server = Server::start(&world.env(&[]));
        server.ready().await;
        let (eyes, pr) = one_run(&world, &server, 1).await;
        println!("no flood: delivery → eyes {eyes:?}, → pull request {pr:?}");
        let mut n = 1;
        for who in ["outsider", "reader"] {
            let issues: Vec<_> = (0..30)
                .map(|i| {
                    world
                        .gh
                        .open_issue(&world.repo, MAINTAINER, &format!("{who} {i}"), "x")
                })
                .collect();
            let permission_before = world.gh.requests_to(PERMISSION).len();
            let payloads: Vec<_> = (0..300)
                .map(|i| {
                    let body = format!("/backspace do thing {i}");
                    comment_payload(&world.gh, &world.repo, issues[i % 30], who, &body).0
                })
                .collect();
            let sent = std::time::Instant::now();
            for chunk in payloads.chunks(16) {
                futures::future::join_all(chunk.iter().map(|p| server.deliver("issue_comment", p)))
                    .await;
            }
            let flood_took = sent.elapsed();
            n += 1;
            let (eyes, pr) = one_run(&world, &server, n).await;
            // The replies go last and at most 20 a minute: count them once they are all in.
            let replies_by = std::time::Instant::now() + Duration::from_secs(200);
            let replies = loop {
                let replies = replies_on(&world, &issues);
                if replies >= 30 || std::time::Instant::now() > replies_by {
                    break replies;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let replied_in = sent.elapsed();
            let asked = world.gh.requests_to(PERMISSION).len() - permission_before;
            println!(
                "behind 300 commands from a {who} (sent in {flood_took:?}): delivery → eyes {eyes:?}, → pull request {pr:?}; permission calls {asked} (the writer's included); replies {replies} on 30 issues, all in {replied_in:?} from the first command"
            );
        }
        assert_eq!(world.model.requests().len(), 3 * 3, "only the writer's runs");
    })
    .await;
}

const PERMISSION: &str = "GET /repos/{owner}/{repo}/collaborators/{username}/permission";

/// The bot's comments on these issues.
fn replies_on(world: &World, issues: &[backspace::github::IssueNumber]) -> usize {
    issues
        .iter()
        .map(|i| {
            world
                .gh
                .comments(&world.repo, *i)
                .iter()
                .filter(|c| c.author.ends_with("[bot]"))
                .count()
        })
        .sum()
}
