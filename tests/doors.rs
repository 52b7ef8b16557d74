//! The doors beside the webhook, through the real router over real stores: the HTTP API and its
//! event stream, the signed run page (in headless Chromium), one-click setup against the fake
//! GitHub, and `/metrics`. The runner is played by a small task that claims the job and appends
//! the events a run appends, so the stream is tested from `start` to `complete`.

mod support;

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use backspace::github::{GithubApp, GithubAppConfig};
use backspace::job::{
    AgentSpec, JobKind, JobRequest, JobResult, JobSource, JobSpec, JobState, RunReport,
};
use backspace::run_event::{RunEvent, RunStatus, Usage};
use backspace::server::{router, run_link, AppState, DoorsConfig, LinkKey};
use backspace::store::Store;
use backspace::trigger::TriggerContext;
use backspace::webhook::signature::sign;
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use support::db;
use support::fake_github::{self, FakeGithub};
use support::webhooks::{credentials, delivery, fixture, fixture_with, SECRET};
use tower::ServiceExt;

const KEY: &str = "test-api-key";
/// The repository of GitHub's `installation/created.json` example.
const REPO_URL: &str = "https://github.com/Codertocat/Hello-World";

async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the test finished in time")
}

fn doors(public_url: &str) -> DoorsConfig {
    let mut c = DoorsConfig::new(url::Url::parse(public_url).expect("url"));
    c.api_key = Some(SecretString::from(KEY));
    c.rate_limit.burst = 1000;
    c
}

struct Server {
    state: AppState,
    router: Router,
}

impl Server {
    fn new(store: Store, config: DoorsConfig) -> Server {
        let ctx = TriggerContext {
            bot_login: Some("backspace-test[bot]".into()),
            ..Default::default()
        };
        let state = AppState::new(store, config, ctx, Ok(credentials(&[SECRET])));
        Server {
            router: router(state.clone()),
            state,
        }
    }

    async fn send(&self, req: Request<Body>) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers")
    }

    async fn send_json(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.send(req).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Records the installation of GitHub's example (Codertocat/Hello-World).
    async fn install_example(&self) {
        let resp = self
            .send(delivery(
                "installation",
                "inst-1",
                fixture("webhooks/installation/created.json"),
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
}

/// `POST /api/code` with the key and a JSON content type.
fn post_code() -> axum::http::request::Builder {
    Request::post("/api/code")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
}

fn code_request(body: Value, accept_json: bool) -> Request<Body> {
    let b = post_code();
    let b = if accept_json {
        b.header(header::ACCEPT, "application/json")
    } else {
        b
    };
    b.body(Body::from(body.to_string())).expect("request")
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .expect("request")
}

/// One SSE frame: its id and its data parsed as JSON.
#[derive(Debug)]
struct Frame {
    id: Option<i64>,
    data: Value,
}

fn parse_sse(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then(|| Frame {
                id,
                data: serde_json::from_str(&data).expect("each data line is one JSON object"),
            })
        })
        .collect()
}

async fn read_sse(resp: axum::response::Response) -> Vec<Frame> {
    let bytes = within(30, resp.into_body().collect())
        .await
        .expect("stream")
        .to_bytes();
    parse_sse(&String::from_utf8_lossy(&bytes))
}

fn the_run_events(run_id: &str) -> Vec<RunEvent> {
    vec![
        RunEvent::Start {
            run_id: run_id.into(),
            repo: Some("Codertocat/Hello-World".into()),
            prompt: None,
        },
        RunEvent::Progress {
            stage: "sandbox".into(),
            message: "sandbox ready".into(),
            percentage: Some(20),
            usage: Some(Usage {
                input_tokens: 300,
                output_tokens: 40,
                ..Usage::default()
            }),
            cost_usd: Some(0.002),
        },
        RunEvent::Tool {
            name: "bash".into(),
            input: json!({ "command": "cargo test" }),
            output: "test result: ok".into(),
            exit_code: Some(0),
            duration_ms: Some(900),
        },
        RunEvent::AiMessage {
            text: "Added the validation.".into(),
        },
        RunEvent::PrCreated {
            pr_url: "https://github.com/Codertocat/Hello-World/pull/7".into(),
            files_changed: vec!["src/signup.rs".into()],
        },
        RunEvent::Complete {
            run_id: run_id.into(),
            status: RunStatus::Succeeded,
            duration_ms: 4200,
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 200,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 500,
            },
            cost_usd: 0.0123,
        },
    ]
}

/// Plays the runner: claims the next job, appends a run's events with pauses, finishes it.
async fn play_runner(store: Store, pause: Duration) -> String {
    let job = loop {
        if let Some(j) = store
            .claim_next("test-worker", Duration::from_secs(60))
            .await
            .expect("claim")
        {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for e in the_run_events(&job.id) {
        tokio::time::sleep(pause).await;
        store.append_event(&job.id, &e).await.expect("append");
    }
    store
        .finish(
            &job.id,
            "test-worker",
            JobState::Succeeded,
            &JobResult::Succeeded(RunReport {
                pr_url: Some("https://github.com/Codertocat/Hello-World/pull/7".into()),
                ..Default::default()
            }),
        )
        .await
        .expect("finish");
    job.id
}

// ---------------------------------------------------------------- API: access and input

#[tokio::test]
async fn the_api_is_off_without_a_key_and_says_so() {
    within(30, async {
        let t = db::sqlite().await;
        let mut config = doors("http://localhost:3000");
        config.api_key = None;
        let s = Server::new(t.store.clone(), config);
        let (status, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "x"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("BACKSPACE_API_KEY"));
        let (status, _) = s.send_json(get("/api/runs/abc")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_with_401() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        for auth in [None, Some("Bearer nope"), Some("Basic dGVzdA=="), Some(KEY)] {
            let mut b = Request::post("/api/code").header(header::CONTENT_TYPE, "application/json");
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let resp = s
                .send(
                    b.body(Body::from(r#"{"repoUrl":"x","prompt":"y"}"#))
                        .unwrap(),
                )
                .await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let (status, _) = s
            .send_json(
                Request::get("/api/runs/abc/events")
                    .header(header::AUTHORIZATION, "Bearer wrong")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.store.job_counts().await.unwrap().queued, 0);
    })
    .await
}

#[tokio::test]
async fn every_bad_input_is_a_400_that_names_the_field() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let long = "x".repeat(16_001);
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "body"),
            (json!({"prompt": "fix"}).to_string(), "repoUrl"),
            (
                json!({"repoUrl": "Codertocat/Hello-World", "prompt": "fix"}).to_string(),
                "repoUrl",
            ),
            (
                json!({"repoUrl": "https://gitlab.com/Codertocat/Hello-World", "prompt": "fix"})
                    .to_string(),
                "repoUrl",
            ),
            (
                json!({"repoUrl": "https://github.com/Codertocat", "prompt": "fix"}).to_string(),
                "repoUrl",
            ),
            (json!({"repoUrl": REPO_URL}).to_string(), "prompt"),
            (
                json!({"repoUrl": REPO_URL, "prompt": ""}).to_string(),
                "prompt",
            ),
            (
                json!({"repoUrl": REPO_URL, "prompt": long}).to_string(),
                "prompt",
            ),
        ];
        for (body, field) in cases {
            let (status, answer) = s
                .send_json(post_code().body(Body::from(body.clone())).unwrap())
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.80}");
            assert_eq!(answer["field"], field, "{body:.80}: {answer}");
            assert!(answer["error"].is_string());
        }
        // Not JSON at all, by content type.
        let (status, answer) = s
            .send_json(
                Request::post("/api/code")
                    .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(Body::from(
                        json!({"repoUrl": REPO_URL, "prompt": "x"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], "content-type");
        assert_eq!(t.store.job_counts().await.unwrap().queued, 0);
    })
    .await
}

#[tokio::test]
async fn a_repository_without_the_app_is_a_404_that_says_so() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (status, body) = s
            .send_json(code_request(
                json!({"repoUrl": "https://github.com/someone/else", "prompt": "fix"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("not installed on someone/else"));
        assert_eq!(t.store.job_counts().await.unwrap().queued, 0);
    })
    .await
}

#[tokio::test]
async fn too_many_runs_from_one_key_are_refused_with_retry_after() {
    within(30, async {
        let t = db::sqlite().await;
        let mut config = doors("http://localhost:3000");
        config.rate_limit.burst = 2;
        config.rate_limit.per_minute = 1;
        let s = Server::new(t.store.clone(), config);
        s.install_example().await;
        let body = json!({"repoUrl": REPO_URL, "prompt": "fix"});
        for _ in 0..2 {
            let (status, _) = s.send_json(code_request(body.clone(), true)).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let resp = s.send(code_request(body, true)).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(t.store.job_counts().await.unwrap().queued, 2);
    })
    .await
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_even_after_the_rate_limit_is_spent() {
    within(30, async {
        let t = db::sqlite().await;
        let mut config = doors("http://localhost:3000");
        config.rate_limit.burst = 2;
        config.rate_limit.per_minute = 1;
        let s = Server::new(t.store.clone(), config);
        s.install_example().await;
        let good = json!({"repoUrl": REPO_URL, "prompt": "fix"});
        for _ in 0..2 {
            let (status, _) = s.send_json(code_request(good.clone(), true)).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let (status, answer) = s
            .send_json(code_request(
                json!({"repoUrl": "not a url", "prompt": "fix"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["field"], "repoUrl");
        // A 2 MB prompt is refused by its size, unread.
        let huge = json!({"repoUrl": REPO_URL, "prompt": "x".repeat(2 * 1024 * 1024)});
        let (status, answer) = s.send_json(code_request(huge, true)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_eq!(answer["field"], "body");
        let (status, answer) = s
            .send_json(code_request(
                json!({"repoUrl": "https://github.com/someone/else", "prompt": "fix"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        // Only a request that would start a run meets the limit.
        let (status, _) = s.send_json(code_request(good, true)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(t.store.job_counts().await.unwrap().queued, 2);
    })
    .await
}

// ---------------------------------------------------------------- API: runs and streams

#[tokio::test]
async fn accept_json_queues_an_api_run_and_answers_202_at_once() {
    within(30, async {
        for (name, t) in db::all().await {
            let s = Server::new(t.store.clone(), doors("https://bot.example.com/"));
            s.install_example().await;
            let (status, body) = s
                .send_json(code_request(
                    json!({"repo_url": format!("{REPO_URL}.git"), "prompt": " add input validation "}),
                    true,
                ))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
            assert_eq!(body["status"], "queued");
            let id = body["runId"].as_str().unwrap();
            assert_eq!(
                body["eventsUrl"],
                format!("https://bot.example.com/api/runs/{id}/events")
            );
            assert!(body["runUrl"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://bot.example.com/runs/{id}?exp=")));
            let job = t.store.job(id).await.unwrap().expect("the job is stored");
            assert_eq!(job.kind(), JobKind::Run);
            assert_eq!(job.source, JobSource::Api);
            assert_eq!(job.state, JobState::Queued);
            assert_eq!(job.number, None);
            assert_eq!(job.requester, "api");
            assert_eq!(job.repository, "Codertocat/Hello-World");
            assert_eq!(job.installation_id, Some(957387));
            assert_eq!(job.prompt, "add input validation");
            assert_eq!(
                job.clone_url.as_deref(),
                Some("https://github.com/Codertocat/Hello-World.git")
            );
        }
    })
    .await
}

#[tokio::test]
async fn the_default_answer_streams_the_run_from_start_to_complete_with_the_pr_url() {
    within(60, async {
        for (name, t) in db::all().await {
            let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
            s.install_example().await;
            let resp = s
                .send(code_request(
                    json!({"repoUrl": REPO_URL, "prompt": "add validation"}),
                    false,
                ))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
            let run_id = resp.headers()["x-backspace-run-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let runner = tokio::spawn(play_runner(t.store.clone(), Duration::from_millis(150)));
            let frames = read_sse(resp).await;
            assert_eq!(runner.await.unwrap(), run_id);
            let types: Vec<&str> = frames
                .iter()
                .map(|f| f.data["type"].as_str().unwrap())
                .collect();
            assert_eq!(
                types,
                [
                    "start",
                    "progress",
                    "tool",
                    "ai_message",
                    "pr_created",
                    "complete"
                ],
                "{name}"
            );
            let ids: Vec<i64> = frames.iter().map(|f| f.id.unwrap()).collect();
            assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
            assert_eq!(
                frames[4].data["pr_url"],
                "https://github.com/Codertocat/Hello-World/pull/7"
            );
            assert_eq!(frames[5].data["status"], "succeeded");
            assert_eq!(frames[5].data["run_id"], run_id.as_str());
        }
    })
    .await
}

#[tokio::test]
async fn an_api_run_through_the_real_workers_streams_to_a_pull_request() {
    within(240, async {
        // The whole bot: real workers, Docker sandbox and git, the fake GitHub and model.
        let opts = support::bot::Options {
            doors: Some(doors("http://backspace.test")),
            ..Default::default()
        };
        let Some(bot) = support::bot::Bot::start_with(
            &[("src/app.js", "export const greet = (n) => 'hi ' + n;\n")],
            support::bot::edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly"),
            opts,
        )
        .await
        else {
            return;
        };
        let repo_url = format!("{}octo/app", bot.gh.api_url());
        let resp = bot
            .ingress
            .router
            .clone()
            .oneshot(code_request(
                json!({"repoUrl": repo_url, "prompt": "make greet say Hello"}),
                false,
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let frames = within(180, read_sse(resp)).await;
        let types: Vec<&str> = frames
            .iter()
            .map(|f| f.data["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(types.first(), Some(&"start"), "{types:?}");
        assert_eq!(types.last(), Some(&"complete"), "{types:?}");
        assert!(
            types.contains(&"tool") && types.contains(&"ai_message"),
            "{types:?}"
        );
        let pr = frames
            .iter()
            .find(|f| f.data["type"] == "pr_created")
            .expect("a pr_created event");
        let complete = frames.last().unwrap();
        assert_eq!(complete.data["status"], "succeeded", "{frames:?}");
        let pulls = bot.gh.pulls(&bot.repo);
        assert_eq!(pulls.len(), 1);
        assert!(pr.data["pr_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pull/{}", pulls[0].number)));
        assert_eq!(pr.data["files_changed"], json!(["src/app.js"]));
        let file = bot
            .gh
            .file_on_branch(&bot.repo, &pulls[0].head, "src/app.js")
            .unwrap();
        assert!(file.contains("'Hello, ' + n"), "{file}");
    })
    .await
}

#[tokio::test]
async fn last_event_id_resumes_after_that_event() {
    within(60, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "x"}),
                true,
            ))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        play_runner(t.store.clone(), Duration::ZERO).await;

        let all = read_sse(s.send(get(&format!("/api/runs/{id}/events"))).await).await;
        assert_eq!(all.len(), 6);
        let mut req = get(&format!("/api/runs/{id}/events"));
        req.headers_mut()
            .insert("last-event-id", "4".parse().unwrap());
        let rest = read_sse(s.send(req).await).await;
        let ids: Vec<i64> = rest.iter().map(|f| f.id.unwrap()).collect();
        assert_eq!(ids, [5, 6]);
        assert_eq!(rest[0].data["type"], "pr_created");

        let mut bad = get(&format!("/api/runs/{id}/events"));
        bad.headers_mut()
            .insert("last-event-id", "soon".parse().unwrap());
        let (status, answer) = s.send_json(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], "last-event-id");
        let (status, _) = s.send_json(get("/api/runs/nope/events")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await
}

#[tokio::test]
async fn a_live_stream_gets_events_appended_after_it_opened() {
    within(60, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "x"}),
                true,
            ))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        let resp = s.send(get(&format!("/api/runs/{id}/events"))).await;
        let mut stream = resp.into_body().into_data_stream();
        let runner = tokio::spawn(play_runner(t.store.clone(), Duration::from_millis(300)));
        use futures::StreamExt;
        // The first event arrives on its own, before the run is over.
        let first = within(10, async {
            loop {
                let chunk = stream.next().await.expect("more").expect("chunk");
                let text = String::from_utf8_lossy(&chunk).to_string();
                if text.contains("data:") {
                    return text;
                }
            }
        })
        .await;
        assert!(first.contains("\"type\":\"start\""), "{first}");
        assert!(!runner.is_finished(), "the run was still going");
        runner.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn open_streams_end_when_the_server_shuts_down() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "x"}),
                true,
            ))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        // A queued run with no events: the stream would wait for ever.
        let resp = s.send(get(&format!("/api/runs/{id}/events"))).await;
        let reading = tokio::spawn(async move { resp.into_body().collect().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reading.is_finished());
        s.state.close_streams();
        assert!(
            within(5, reading).await.unwrap(),
            "the stream ended cleanly"
        );
    })
    .await
}

#[tokio::test]
async fn a_run_cancelled_before_it_started_still_ends_its_stream() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        // A comment job (issue #1 of the example), cancelled while queued: no events at all.
        let id = t
            .store
            .insert_job(&JobRequest {
                spec: JobSpec::Run(AgentSpec::default()),
                source: JobSource::Comment,
                installation_id: Some(1),
                repository: "o/r".into(),
                clone_url: None,
                default_branch: None,
                number: Some(1),
                is_pull_request: false,
                comment_id: None,
                requester: "alice".into(),
                prompt: "x".into(),
            })
            .await
            .unwrap();
        t.store
            .request_cancel("o/r", 1, "cancelled by alice")
            .await
            .unwrap();
        let frames = read_sse(s.send(get(&format!("/api/runs/{id}/events"))).await).await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data["type"], "complete");
        assert_eq!(frames[0].data["status"], "cancelled");
        let (_, run) = s.send_json(get(&format!("/api/runs/{id}"))).await;
        assert_eq!(run["state"], "cancelled");
        assert_eq!(run["error"], "cancelled by alice");
    })
    .await
}

#[tokio::test]
async fn a_run_reports_its_state_pr_usage_and_cost() {
    within(60, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "x"}),
                true,
            ))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        let (status, run) = s.send_json(get(&format!("/api/runs/{id}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(run["state"], "queued");
        assert_eq!(run["prUrl"], Value::Null);

        play_runner(t.store.clone(), Duration::ZERO).await;
        let (_, run) = s.send_json(get(&format!("/api/runs/{id}"))).await;
        assert_eq!(run["runId"], id.as_str());
        assert_eq!(run["state"], "succeeded");
        assert_eq!(run["status"], "succeeded");
        assert_eq!(
            run["prUrl"],
            "https://github.com/Codertocat/Hello-World/pull/7"
        );
        assert_eq!(run["filesChanged"], json!(["src/signup.rs"]));
        assert_eq!(run["usage"]["input_tokens"], 1000);
        assert_eq!(run["usage"]["output_tokens"], 200);
        assert_eq!(run["costUsd"], 0.0123);
        assert_eq!(run["durationMs"], 4200);
        assert_eq!(run["source"], "api");
        let (status, _) = s.send_json(get("/api/runs/0123456789abcdef")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await
}

#[tokio::test]
async fn the_installation_is_asked_of_github_when_no_event_recorded_it() {
    within(60, async {
        let gh = FakeGithub::start().await;
        let repo = gh.repo_with_files("acme/widgets", &[("README.md", "hi\n")]);
        let t = db::sqlite().await;
        let mut config = doors("http://localhost:3000");
        config.github_url = url::Url::parse("https://github.com").unwrap();
        let s = Server::new(t.store.clone(), config);
        let mut app_config =
            GithubAppConfig::new(gh.app_id(), fake_github::app_private_key(), gh.api_url());
        app_config.retry.max_attempts = 1;
        s.state
            .set_github(GithubApp::new(app_config).expect("app client"));
        let (status, body) = s
            .send_json(code_request(
                json!({"repoUrl": "https://github.com/acme/widgets", "prompt": "x"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let job = t
            .store
            .job(body["runId"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.installation_id, Some(gh.installation_of(&repo).0));
        let (status, _) = s
            .send_json(code_request(
                json!({"repoUrl": "https://github.com/acme/nothing-here", "prompt": "x"}),
                true,
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await
}

// ---------------------------------------------------------------- the run page

fn query_of(link: &str) -> String {
    link.split_once('?').expect("a query").1.to_owned()
}

#[tokio::test]
async fn the_run_page_needs_a_valid_unexpired_link_and_says_why_not() {
    within(30, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(
                json!({"repoUrl": REPO_URL, "prompt": "fix <b>it</b>"}),
                true,
            ))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        let link = s.state.run_link(&id).expect("a link");
        let q = query_of(&link);

        let resp = s
            .send(
                Request::get(format!("/runs/{id}?{q}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .to_string();
        assert!(page.contains("fix &lt;b&gt;it&lt;/b&gt;"));
        assert!(page.contains(&format!("/runs/{id}/events?")));

        let key = LinkKey::from_secrets([SECRET.as_bytes()]);
        let expired = run_link(
            &url::Url::parse("http://localhost:3000").unwrap(),
            &id,
            &key,
            1_000,
            Duration::from_secs(60),
        );
        let forged = format!("exp=99999999999&sig={}", "0".repeat(64));
        let other_key = LinkKey::from_secrets(["not-the-secret".as_bytes()]);
        let other = query_of(&run_link(
            &url::Url::parse("http://localhost:3000").unwrap(),
            &id,
            &other_key,
            run_link_now(),
            Duration::from_secs(600),
        ));
        for (q, says) in [
            (query_of(&expired), "expired"),
            (forged, "not valid"),
            (other, "not valid"),
            (String::new(), "not valid"),
        ] {
            for path in [format!("/runs/{id}?{q}"), format!("/runs/{id}/events?{q}")] {
                let resp = s
                    .send(Request::get(&path).body(Body::empty()).unwrap())
                    .await;
                assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
                let text =
                    String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
                        .to_string();
                assert!(
                    text.contains("<h1>") && text.contains(says),
                    "{path}: {text}"
                );
            }
        }
        // A valid link to another run does not open this one.
        let other_run = s.state.run_link("someotherrun").unwrap();
        let resp = s
            .send(
                Request::get(format!("/runs/{id}?{}", query_of(&other_run)))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    })
    .await
}

fn run_link_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_run_page_shows_events_as_they_arrive_in_headless_chromium() {
    within(120, async {
        let Some(mut browser) = support::browser::Browser::start().await else {
            return;
        };
        let t = db::sqlite().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = Server::new(t.store.clone(), doors(&format!("http://{addr}")));
        let app = s.router.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        s.install_example().await;
        let (_, body) = s
            .send_json(code_request(json!({"repoUrl": REPO_URL, "prompt": "add validation"}), true))
            .await;
        let id = body["runId"].as_str().unwrap().to_owned();
        let job = t
            .store
            .claim_next("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.id, id);
        let events = the_run_events(&id);
        for e in &events[..2] {
            t.store.append_event(&id, e).await.unwrap();
        }

        let link = body["runUrl"].as_str().unwrap();
        browser.open(link).await;
        let count = "document.querySelectorAll('#log .event').length";
        browser
            .wait_for(count, Duration::from_secs(20), |v| v == &json!(2))
            .await;
        assert_eq!(
            browser
                .eval("document.getElementById('status').textContent")
                .await,
            "sandbox"
        );
        // Tokens and cost so far, from the progress event.
        assert_eq!(
            browser
                .eval("document.getElementById('totals').textContent")
                .await,
            "300 input / 40 output tokens · $0.0020"
        );

        // While the page is open, the run goes on.
        t.store.append_event(&id, &events[2]).await.unwrap();
        t.store
            .append_event(
                &id,
                &RunEvent::AiMessage {
                    text: "<img src=x onerror=\"document.title='pwned'\"> done".into(),
                },
            )
            .await
            .unwrap();
        browser
            .wait_for(count, Duration::from_secs(20), |v| v == &json!(4))
            .await;
        let tool = browser
            .eval("(function(){var d=document.querySelector('#log details.tool');return d&&(d.querySelector('summary').textContent+'|'+d.querySelector('pre').textContent)})()")
            .await;
        assert_eq!(tool, "bash: cargo test exit 0|test result: ok");
        assert_eq!(browser.eval("document.querySelectorAll('#log img').length").await, 0);
        assert!(browser
            .eval("document.querySelector('#log .msg').textContent")
            .await
            .as_str()
            .unwrap()
            .contains("<img src=x"));

        // A connection the egress proxy refused, with the settings change that allows it.
        let blocked = RunEvent::EgressBlocked {
            host: "cdn.example.com".into(),
            port: 443,
            count: 3,
            command: Some("npm ci".into()),
            reason: "Backspace's egress proxy refused the connection".into(),
            suggested_allow: Some(vec!["registry.npmjs.org".into(), "cdn.example.com".into()]),
            operator_change: None,
        };
        t.store.append_event(&id, &blocked).await.unwrap();
        browser
            .wait_for(count, Duration::from_secs(20), |v| v == &json!(5))
            .await;
        assert_eq!(
            browser
                .eval("(function(){var d=document.querySelector('#log [data-type=egress_blocked]');return d.firstChild.textContent+'|'+d.querySelector('pre').textContent})()")
                .await,
            "Network blocked: cdn.example.com:443 (3×) by npm ci|network:\n  allow:\n    - registry.npmjs.org\n    - cdn.example.com"
        );

        for e in &events[4..] {
            t.store.append_event(&id, e).await.unwrap();
        }
        browser
            .wait_for(
                "document.getElementById('status').textContent",
                Duration::from_secs(20),
                |v| v == "succeeded",
            )
            .await;
        let totals = browser
            .eval("document.getElementById('totals').textContent")
            .await;
        assert_eq!(totals, "1500 input / 200 output tokens · $0.0123 · 4.2 s");
        assert_eq!(
            browser.eval("document.querySelector('#log .pr a').href").await,
            "https://github.com/Codertocat/Hello-World/pull/7"
        );
        assert_ne!(browser.eval("document.title").await, "pwned");
        assert_eq!(browser.eval(count).await, json!(7));
        browser.close().await;
        server.abort();
    })
    .await
}

// ---------------------------------------------------------------- one-click setup

fn setup_server(store: Store, gh: &FakeGithub, creds: &std::path::Path) -> (AppState, Router) {
    let missing = backspace::config::MissingCredentials(vec!["APP_ID"]);
    let mut config = doors("https://bot.example.com");
    // The fake serves the web pages' base and the API alike.
    config.github_url = gh.api_url();
    config.github_api_url = gh.api_url();
    config.credentials_path = Some(creds.to_owned());
    let state = AppState::new(store, config, TriggerContext::default(), Err(missing));
    (state.clone(), router(state))
}

async fn html_of(router: &Router, uri: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).to_string(), headers)
}

fn attr<'a>(html: &'a str, before: &str) -> &'a str {
    let start = html.find(before).expect(before) + before.len();
    let rest = &html[start..];
    &rest[..rest.find('"').expect("closing quote")]
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn setup_goes_from_the_form_to_saved_credentials_to_a_verified_webhook() {
    within(60, async {
        let gh = FakeGithub::start().await;
        let t = db::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let creds_path = dir.path().join("backspace-credentials.json");
        let (state, router) = setup_server(t.store.clone(), &gh, &creds_path);
        let mut watch = state.credentials_watch();
        assert!(watch.borrow().app().is_none());

        // Before setup, webhooks are answered 503.
        let body = fixture("webhooks/ping/ping.json");
        let ping = |secret: &str| {
            Request::post("/api/github/webhooks")
                .header("content-type", "application/json")
                .header("x-github-event", "ping")
                .header("x-github-delivery", format!("ping-{secret}"))
                .header("x-hub-signature-256", sign(secret, &body))
                .body(Body::from(body.clone()))
                .unwrap()
        };
        let resp = router
            .clone()
            .oneshot(ping(fake_github::WEBHOOK_SECRET))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

        // Only the link serve prints opens setup.
        for uri in ["/setup", "/setup?token=guess"] {
            let (status, page, _) = html_of(&router, uri).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
            assert!(page.contains("server&#39;s output") || page.contains("server's output"));
        }
        let link = state.setup_link();
        assert!(
            link.starts_with("https://bot.example.com/setup?token="),
            "{link}"
        );
        let setup_uri = link
            .trim_start_matches("https://bot.example.com")
            .to_owned();

        // The page posts the manifest, filled with PUBLIC_URL, to GitHub's new-app page.
        let (status, page, _) = html_of(&router, &setup_uri).await;
        assert_eq!(status, StatusCode::OK);
        let action = unescape(attr(&page, "action=\""));
        let base = gh.api_url().as_str().trim_end_matches('/').to_owned();
        assert!(
            action.starts_with(&format!("{base}/settings/apps/new?state=")),
            "{action}"
        );
        let state_param = action.split("state=").nth(1).unwrap().to_owned();
        let manifest: Value =
            serde_json::from_str(&unescape(attr(&page, "name=\"manifest\" value=\""))).unwrap();
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://bot.example.com/api/github/webhooks"
        );
        assert_eq!(
            manifest["redirect_url"],
            "https://bot.example.com/setup/callback"
        );

        // GitHub sends the operator back with a code and the state.
        let code = gh.manifest_code();
        let (status, _, headers) = html_of(
            &router,
            &format!("/setup/callback?code={code}&state={state_param}"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let location = headers[header::LOCATION].to_str().unwrap();
        assert!(location.ends_with("/installations/new"), "{location}");

        // Saved, readable by the owner only, and loadable on the next start.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let saved = backspace::setup_store::load_saved_credentials(&creds_path)
            .unwrap()
            .expect("saved credentials");
        assert_eq!(saved.app_id, fake_github::APP_ID);
        assert_eq!(
            saved.private_key.expose_secret(),
            fake_github::app_private_key().expose_secret()
        );
        assert_eq!(
            saved.webhook_secrets[0].expose_secret(),
            fake_github::WEBHOOK_SECRET
        );

        // Published for the workers, without a restart.
        within(5, watch.changed()).await.unwrap();
        assert_eq!(
            watch.borrow().app().map(|c| c.app_id),
            Some(fake_github::APP_ID)
        );

        // Webhooks are verified with the new secret from now on.
        let resp = router
            .clone()
            .oneshot(ping(fake_github::WEBHOOK_SECRET))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = router.clone().oneshot(ping("wrong-secret")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

        // And setup is closed.
        let (status, page, _) = html_of(&router, &setup_uri).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(page.contains("already set up"));
        let (status, _, _) = html_of(
            &router,
            &format!(
                "/setup/callback?code={}&state={state_param}",
                gh.manifest_code()
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
    })
    .await
}

#[tokio::test]
async fn a_setup_callback_without_a_state_from_this_server_is_refused() {
    within(60, async {
        let gh = FakeGithub::start().await;
        let t = db::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let creds_path = dir.path().join("creds.json");
        let (state, router) = setup_server(t.store.clone(), &gh, &creds_path);
        for uri in [
            format!("/setup/callback?code={}", gh.manifest_code()),
            format!("/setup/callback?code={}&state=forged", gh.manifest_code()),
        ] {
            let (status, page, _) = html_of(&router, &uri).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
            assert!(page.contains("Start again at /setup"));
        }
        // A spent or unknown code: GitHub refuses, nothing is saved.
        let setup_uri = state
            .setup_link()
            .trim_start_matches("https://bot.example.com")
            .to_owned();
        let (_, page, _) = html_of(&router, &setup_uri).await;
        let action = unescape(attr(&page, "action=\""));
        let state_param = action.split("state=").nth(1).unwrap().to_owned();
        let (status, _, _) = html_of(
            &router,
            &format!("/setup/callback?code=not-a-code&state={state_param}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(!creds_path.exists());
        assert!(state.credentials_watch().borrow().app().is_none());
        assert!(state.link_key().is_none(), "still in setup mode");
    })
    .await
}

// ---------------------------------------------------------------- metrics

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_deliveries_jobs_and_runs() {
    within(60, async {
        let t = db::sqlite().await;
        let s = Server::new(t.store.clone(), doors("http://localhost:3000"));
        let command = fixture_with(
            "webhooks/issue_comment/created.with-installation.json",
            |v| v["comment"]["body"] = json!("/backspace add validation"),
        );
        let chatter = fixture_with(
            "webhooks/issue_comment/created.with-installation.json",
            |v| v["comment"]["body"] = json!("looks good"),
        );
        for (status, req) in [
            (
                StatusCode::ACCEPTED,
                delivery("issue_comment", "m-1", command.clone()),
            ),
            (
                StatusCode::OK,
                delivery("issue_comment", "m-1", command.clone()),
            ),
            (
                StatusCode::ACCEPTED,
                delivery("issue_comment", "m-2", chatter),
            ),
            (
                StatusCode::ACCEPTED,
                delivery(
                    "installation",
                    "m-3",
                    fixture("webhooks/installation/created.json"),
                ),
            ),
        ] {
            assert_eq!(s.send(req).await.status(), status);
        }
        let unsigned = Request::post("/api/github/webhooks")
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", "m-4")
            .body(Body::from(command))
            .unwrap();
        assert_eq!(s.send(unsigned).await.status(), StatusCode::UNAUTHORIZED);
        s.state.metrics().run_finished(
            Duration::from_secs(90),
            &Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            0.5,
            RunStatus::Succeeded,
        );
        s.state
            .metrics()
            .sandbox_started(Duration::from_millis(800));
        s.state.metrics().github_call(true);
        s.state.metrics().model_call(false);

        let resp = s
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"));
        let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .to_string();
        for (series, value) in [
            (
                "backspace_webhook_deliveries_total{event=\"issue_comment\",result=\"queued\"}",
                1.0,
            ),
            (
                "backspace_webhook_deliveries_total{event=\"issue_comment\",result=\"duplicate\"}",
                1.0,
            ),
            (
                "backspace_webhook_deliveries_total{event=\"issue_comment\",result=\"ignored\"}",
                1.0,
            ),
            (
                "backspace_webhook_deliveries_total{event=\"installation\",result=\"recorded\"}",
                1.0,
            ),
            (
                "backspace_webhook_deliveries_total{event=\"unknown\",result=\"unauthorized\"}",
                1.0,
            ),
            ("backspace_jobs{state=\"queued\"}", 1.0),
            ("backspace_jobs{state=\"running\"}", 0.0),
            ("backspace_runs_total{status=\"succeeded\"}", 1.0),
            ("backspace_run_duration_seconds_count", 1.0),
            ("backspace_run_duration_seconds_bucket{le=\"60.0\"}", 0.0),
            ("backspace_run_duration_seconds_bucket{le=\"120.0\"}", 1.0),
            ("backspace_model_tokens_total{kind=\"input\"}", 10.0),
            ("backspace_model_cost_usd_total", 0.5),
            ("backspace_sandbox_start_seconds_count", 1.0),
            ("backspace_github_calls_total", 1.0),
            ("backspace_github_retried_calls_total", 1.0),
            ("backspace_model_calls_total", 1.0),
        ] {
            assert_eq!(metric(&text, series), Some(value), "{series} in\n{text}");
        }
    })
    .await
}

// ---------------------------------------------------------------- backspace run

const APP_JS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";

/// A git repository with one commit on `main` holding `src/app.js`, and an ignored `.env`.
fn local_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("src")).unwrap();
    std::fs::write(p.join("src/app.js"), APP_JS).unwrap();
    std::fs::write(p.join(".gitignore"), ".env\n").unwrap();
    std::fs::write(p.join(".env"), "SECRET_TOKEN=do-not-copy\n").unwrap();
    for args in [
        &["init", "--quiet", "--initial-branch", "main"][..],
        &["add", "--all"],
        &[
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "--quiet",
            "-m",
            "first",
        ],
        &["config", "user.name", "Dev"],
        &["config", "user.email", "dev@example.com"],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(p)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
    dir
}

fn git_out(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn backspace_run(
    repo: &std::path::Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_backspace"));
    cmd.arg("run").arg("--repo").arg(repo).args(args);
    for k in [
        "ANTHROPIC_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn backspace_run_commits_on_a_new_branch_and_leaves_the_checkout_alone() {
    within(240, async {
        // The sandbox image is built (or found) through the shared helper first.
        let Some(_sandboxes) = support::docker::sandboxes().await else {
            return;
        };
        let mut script =
            support::bot::edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly");
        // The agent looks for the ignored .env: it must not be in the sandbox.
        script.insert(
            0,
            support::fake_anthropic::Reply::bash("cat .env 2>/dev/null || echo no-env-here").into(),
        );
        let model = support::fake_anthropic::FakeAnthropic::start(script).await;
        let repo = local_repo();
        let out = backspace_run(
            repo.path(),
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-local-test"),
                ("ANTHROPIC_BASE_URL", &model.base_url),
                ("BACKSPACE_SANDBOX_IMAGE", support::docker::TEST_IMAGE),
            ],
            &["make greet say Hello"],
        )
        .output()
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let branch = "backspace/make-greet-say-hello";
        assert!(stdout.contains(&format!("on branch {branch}")), "{stdout}");
        // Events were printed as they came.
        assert!(stderr.contains("▶ run on"), "{stderr}");
        assert!(
            stderr.contains("$ bash: cat src/app.js (exit 0)"),
            "{stderr}"
        );
        assert!(stderr.contains("■ succeeded"), "{stderr}");

        // The branch holds one new commit with the change, by the repository's user.
        let p = repo.path();
        let file = git_out(p, &["show", &format!("{branch}:src/app.js")]);
        assert!(file.contains("'Hello, ' + name"), "{file}");
        assert_eq!(
            git_out(p, &["log", "-1", "--format=%s", branch]),
            "Greet people properly"
        );
        assert_eq!(git_out(p, &["log", "-1", "--format=%an", branch]), "Dev");
        assert_eq!(
            git_out(p, &["rev-list", "--count", &format!("main..{branch}")]),
            "1"
        );
        // The checkout is where it was: same branch, same file, .env never sent (not in the
        // clean clone).
        assert_eq!(git_out(p, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(
            std::fs::read_to_string(p.join("src/app.js")).unwrap(),
            APP_JS
        );
        assert_eq!(git_out(p, &["status", "--porcelain"]), "");
        let sent: String = model
            .requests()
            .iter()
            .map(|r| format!("{:?}", r))
            .collect();
        assert!(
            sent.contains("no-env-here"),
            "the agent's look for .env came back"
        );
        assert!(!sent.contains("do-not-copy"));
    })
    .await
}

#[tokio::test]
async fn backspace_run_refuses_bad_input_with_exit_code_2() {
    within(60, async {
        let repo = local_repo();
        let key = [("ANTHROPIC_API_KEY", "sk-ant-x")];
        let not_repo = tempfile::tempdir().unwrap();
        let cases: Vec<(tokio::process::Command, &str)> = vec![
            (
                backspace_run(not_repo.path(), &key, &["fix"]),
                "not inside a git checkout",
            ),
            (backspace_run(repo.path(), &key, &["  "]), "prompt is empty"),
            (
                backspace_run(repo.path(), &key, &["--branch", "main", "fix"]),
                "exists already",
            ),
            (
                backspace_run(repo.path(), &key, &["--branch", "bad..name", "fix"]),
                "not a valid branch name",
            ),
            (
                backspace_run(repo.path(), &[], &["fix"]),
                "ANTHROPIC_API_KEY",
            ),
        ];
        for (mut cmd, says) in cases {
            let out = cmd.output().await.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{says}: {stderr}");
            assert!(stderr.contains(says), "{says}: {stderr}");
        }
        std::fs::write(repo.path().join("src/app.js"), "changed\n").unwrap();
        let out = backspace_run(repo.path(), &key, &["fix"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("uncommitted changes"));
        // Without a prompt at all: clap's usage error, also 2.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_backspace"))
            .args(["run", "--repo", "."])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    })
    .await
}

#[tokio::test]
async fn backspace_run_that_changes_nothing_answers_and_makes_no_branch() {
    within(240, async {
        let Some(sandboxes) = support::docker::sandboxes().await else {
            return;
        };
        let model = support::fake_anthropic::FakeAnthropic::start(vec![
            support::fake_anthropic::Reply::text(
                "TITLE: Nothing to change\n\nSUMMARY:\ngreet already works.",
            )
            .into(),
        ])
        .await;
        let repo = local_repo();
        let req = backspace::local_run::prepare(repo.path(), None, "is greet fine?")
            .await
            .unwrap();
        let agent = backspace::agent::Agent::new(
            support::bot::model_provider(&model),
            backspace::agent::AgentConfig::default(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let outcome = backspace::local_run::run_local(&sandboxes, &agent, &req, &tx)
            .await
            .unwrap();
        assert_eq!(outcome.exit_code(), 3);
        assert!(
            matches!(&outcome, backspace::local_run::LocalOutcome::Answered { answer } if answer.contains("greet already works")),
            "{outcome:?}"
        );
        drop(tx);
        let mut last = None;
        while let Some(e) = rx.recv().await {
            last = Some(e);
        }
        assert!(matches!(
            last,
            Some(RunEvent::Complete {
                status: RunStatus::Answered,
                ..
            })
        ));
        assert_eq!(git_out(repo.path(), &["branch", "--list", "backspace/*"]), "");
    })
    .await
}
