//! GitHub as it really behaves, against the fake in tests/support (which answers as GitHub
//! documents: 422 bodies with `errors`, a 502 after the work was done, 401 for an expired token,
//! the delivery log and its redelivery endpoint, branch protection): writes made once, the
//! acknowledgement ahead of queued edits, a fresh token on any 401, no push where Backspace must
//! not push, and lost deliveries asked for again and run once. The end-to-end half runs the
//! whole bot (real router, workers, git, Docker sandbox).

mod support;
use support::within;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backspace::github::{
    with_marker, GithubApp, GithubAppConfig, GithubError, IssueNumber, NewPullRequest,
    PacingLimits, ProgressComment, ProgressConfig, ReactionContent, RepoClient, RepoName,
    RetryPolicy,
};
use backspace::job::JobState;
use backspace::redelivery::{sweep, SweepSettings};
use backspace::webhook::signature::sign;
use support::bot::{comment_payload, edit_script, Bot, Options, MAINTAINER};
use support::fake_anthropic::{Reply, Step};
use support::fake_github::{self, app_private_key, FakeGithub};
use support::tester::Tester;

const POST_PULL: &str = "POST /repos/{owner}/{repo}/pulls";
const GET_PULLS: &str = "GET /repos/{owner}/{repo}/pulls";
const POST_COMMENT: &str = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
const PATCH_COMMENT: &str = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}";
const POST_REACTION: &str = "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions";
const LIST_REACTIONS: &str = "GET /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions";
const ACCESS_TOKENS: &str = "POST /app/installations/{installation_id}/access_tokens";
const REDELIVER: &str = "POST /app/hook/deliveries/{delivery_id}/attempts";

const APP_JS: &str = "export function greet(name) {\n  return 'hi ' + name;\n}\n";
const FILES: &[(&str, &str)] = &[("src/app.js", APP_JS), ("README.md", "# app\n")];

fn config(gh: &FakeGithub) -> GithubAppConfig {
    let mut c = GithubAppConfig::new(gh.app_id(), app_private_key(), gh.api_url());
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_total_wait: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    c
}

struct World {
    gh: FakeGithub,
    app: GithubApp,
    repo: RepoName,
    client: RepoClient,
    issue: IssueNumber,
}

async fn world_with(config_of: impl FnOnce(&FakeGithub) -> GithubAppConfig) -> World {
    let gh = FakeGithub::start().await;
    let repo = gh.repo_with_files("octo/hello", &[("README.md", "# Hello\n")]);
    gh.add_collaborator(&repo, "alice", "write");
    let issue = gh.open_issue(&repo, "alice", "Add validation", "The form takes anything.");
    let app = GithubApp::new(config_of(&gh)).expect("app client");
    let client = app.repo(gh.installation_of(&repo), repo.clone());
    World {
        gh,
        app,
        repo,
        client,
        issue,
    }
}

async fn world() -> World {
    world_with(config).await
}

fn statuses(gh: &FakeGithub, operation: &str) -> Vec<u16> {
    gh.requests_to(operation).iter().map(|r| r.status).collect()
}

// --- writes made once ---

#[tokio::test]
async fn a_pull_request_created_behind_a_502_is_found_by_its_head_branch_not_opened_again() {
    within(60, async {
        let w = world().await;
        w.gh.push_branch(&w.repo, "main", "backspace/1-x", &[("a.rs", "fn a() {}\n")]);
        w.gh.fail_after_work(POST_PULL, 502, 1);
        let pr = w
            .client
            .create_pull_request(&NewPullRequest {
                title: "Add validation".into(),
                head: "backspace/1-x".into(),
                base: "main".into(),
                body: "Closes #1".into(),
                draft: false,
            })
            .await
            .expect("the pull request the first attempt made");
        assert_eq!(w.gh.pulls(&w.repo).len(), 1);
        assert_eq!(pr.number, w.gh.pulls(&w.repo)[0].number);
        assert_eq!(
            statuses(&w.gh, POST_PULL),
            vec![502],
            "looked up, not sent again"
        );
        assert_eq!(statuses(&w.gh, GET_PULLS), vec![200]);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn githubs_422_is_read_whole_and_decided_on_its_errors() {
    within(60, async {
        let w = world().await;
        w.gh.push_branch(&w.repo, "main", "backspace/2-y", &[("b.rs", "fn b() {}\n")]);
        let new = NewPullRequest {
            title: "B".into(),
            head: "backspace/2-y".into(),
            base: "main".into(),
            body: "".into(),
            draft: false,
        };
        let first = w.client.create_pull_request(&new).await.expect("first");
        // The second gets GitHub's real 422 ("A pull request already exists for …" in
        // errors[].message, never in the top-level message) and finds the first.
        let again = w.client.create_pull_request(&new).await.expect("the same");
        assert_eq!(again.number, first.number);
        assert_eq!(statuses(&w.gh, POST_PULL), vec![201, 422]);

        // Another validation failure says what GitHub said, field and all.
        let err = w
            .client
            .create_pull_request(&NewPullRequest {
                head: "no-such-branch".into(),
                ..new
            })
            .await
            .expect_err("invalid head");
        assert_eq!(err.status(), Some(422));
        let body = err.body().expect("GitHub's body");
        assert_eq!(body.message, "Validation Failed");
        assert!(err.details()[0].is("PullRequest", "invalid"));
        assert_eq!(err.details()[0].field.as_deref(), Some("head"));
        assert!(body.documentation_url.is_some());
        assert!(
            err.to_string()
                .ends_with("Validation Failed: PullRequest.head: invalid"),
            "{err}"
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_comment_created_behind_a_502_is_found_by_its_marker() {
    within(60, async {
        let w = world().await;
        w.gh.fail_after_work(POST_COMMENT, 502, 1);
        let made = w
            .client
            .create_comment(w.issue, "On it.")
            .await
            .expect("the comment the first attempt made");
        let comments = w.gh.comments(&w.repo, w.issue);
        assert_eq!(comments.len(), 1, "{comments:?}");
        assert_eq!(comments[0].id, made.id);
        assert!(comments[0]
            .body
            .starts_with("On it.\n\n<!-- backspace:write:"));
        assert_eq!(statuses(&w.gh, POST_COMMENT), vec![502]);

        // The progress comment carries its run marker and is found the same way.
        w.gh.fail_after_work(POST_COMMENT, 503, 1);
        let progress = ProgressComment::start(
            w.client.clone(),
            w.issue,
            "run-9",
            "Queued",
            ProgressConfig::default(),
        )
        .await
        .expect("progress comment");
        assert_eq!(w.gh.comments(&w.repo, w.issue).len(), 2);
        progress.finish("Done").await.expect("final");
        let last = w.gh.comment(progress_id(&w, "run-9")).expect("comment");
        assert_eq!(last.body, with_marker("Done", "run-9"));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

fn progress_id(w: &World, run: &str) -> u64 {
    let marker = backspace::github::progress_marker(run);
    w.gh.comments(&w.repo, w.issue)
        .into_iter()
        .find(|c| c.body.contains(&marker))
        .expect("the run's comment")
        .id
}

#[tokio::test]
async fn a_reaction_made_behind_a_502_is_found_by_listing() {
    within(60, async {
        let w = world().await;
        let asked =
            w.gh.post_comment(&w.repo, w.issue, "alice", "/backspace go");
        w.gh.fail_after_work(POST_REACTION, 502, 1);
        w.client
            .react_to_comment(asked, ReactionContent::Eyes)
            .await
            .expect("the reaction the first attempt made");
        assert_eq!(w.gh.reactions_on_comment(asked), vec!["eyes"]);
        assert_eq!(statuses(&w.gh, POST_REACTION), vec![502]);
        assert_eq!(statuses(&w.gh, LIST_REACTIONS), vec![200]);
        // A 502 where nothing was made: looked up, not found, sent again.
        w.gh.fail(POST_REACTION, 502, None, 1);
        w.client
            .react_to_comment(asked, ReactionContent::Rocket)
            .await
            .expect("rocket");
        assert_eq!(w.gh.reactions_on_comment(asked), vec!["eyes", "rocket"]);
        assert_eq!(statuses(&w.gh, POST_REACTION), vec![502, 502, 201]);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- a fresh token on any 401 ---

#[tokio::test]
async fn a_progress_edit_refused_with_401_mints_a_new_token_and_lands() {
    within(60, async {
        let w = world().await;
        let progress = ProgressComment::start(
            w.client.clone(),
            w.issue,
            "run-401",
            "Queued",
            ProgressConfig {
                min_edit_interval: Duration::from_millis(5),
            },
        )
        .await
        .expect("comment");
        let id = progress.comment_id();
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 1);
        // The token expires (or is revoked) on GitHub's side mid-run.
        w.gh.expire_all_tokens();
        progress.update("Agent turn 2");
        progress.flush().await.expect("the edit lands");
        assert_eq!(
            w.gh.comment(id).expect("comment").body,
            with_marker("Agent turn 2", "run-401")
        );
        assert_eq!(statuses(&w.gh, PATCH_COMMENT), vec![401, 200]);
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2, "minted again");
        progress.finish("Done").await.expect("final");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- the acknowledgement first ---

#[tokio::test]
async fn the_acknowledgement_goes_ahead_of_queued_progress_edits() {
    within(60, async {
        // A shrunk copy of GitHub's limits: 6 writes a window of 3 s, edits a half of it.
        let w = world_with(|gh| {
            let mut c = config(gh);
            c.pacing = PacingLimits {
                windows: vec![(Duration::from_secs(3), 6)],
                edit_share: 0.5,
                ..PacingLimits::default()
            };
            c
        })
        .await;
        let asked =
            w.gh.post_comment(&w.repo, w.issue, "maintainer", "/backspace go");
        let progress = ProgressComment::start(
            w.client.clone(),
            w.issue,
            "run-busy",
            "Queued",
            ProgressConfig {
                min_edit_interval: Duration::ZERO,
            },
        )
        .await
        .expect("comment");
        // Edits until they have used their share of the window and the next one waits.
        for i in 0..3 {
            progress.update(format!("step {i}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress.update("step 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let edits_before = w.gh.requests_to(PATCH_COMMENT).len();
        let started = Instant::now();
        w.client
            .react_to_comment(asked, ReactionContent::Eyes)
            .await
            .expect("eyes");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "👀 waited {took:?}");
        assert_eq!(
            w.gh.requests_to(PATCH_COMMENT).len(),
            edits_before,
            "the waiting edit is still waiting"
        );
        progress.finish("Done").await.expect("final");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- the delivery log ---

/// What the stand-in receiver got: (`X-GitHub-Delivery`, `X-Hub-Signature-256`, body).
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A stand-in webhook receiver: answers 202 and keeps what it got.
async fn receiver() -> (String, Received) {
    use axum::routing::post;
    let got: Received = Default::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    sink.lock().expect("sink").push((
                        h("x-github-delivery"),
                        h("x-hub-signature-256"),
                        body.to_vec(),
                    ));
                    axum::http::StatusCode::ACCEPTED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>, secs: u64) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {secs} s in vain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_delivery_log_is_read_by_cursor_and_a_redelivery_keeps_its_guid() {
    within(60, async {
        let w = world().await;
        let (hook, got) = receiver().await;
        w.gh.set_hook_url(&hook);
        for i in 0..130 {
            let body = format!(r#"{{"action":"created","n":{i}}}"#);
            let status = if i == 7 { 0 } else { 202 };
            w.gh.record_delivery(
                &format!("guid-{i}"),
                "issue_comment",
                body.as_bytes(),
                status,
            );
        }
        let first = w.app.hook_deliveries(None, 100).await.expect("page 1");
        assert_eq!(first.deliveries.len(), 100);
        assert_eq!(first.deliveries[0].guid, "guid-129", "newest first");
        let cursor = first.next_cursor.expect("a next page");
        let second = w
            .app
            .hook_deliveries(Some(&cursor), 100)
            .await
            .expect("page 2");
        assert_eq!(second.deliveries.len(), 30);
        assert_eq!(second.next_cursor, None);
        let lost = second
            .deliveries
            .iter()
            .find(|d| d.guid == "guid-7")
            .expect("the lost one");
        assert_eq!(
            (lost.status_code, lost.status.as_str()),
            (0, "failed to connect")
        );

        w.app.redeliver(lost.id).await.expect("202");
        let (guid, signature, body) =
            wait_for(|| got.lock().expect("got").first().cloned(), 10).await;
        assert_eq!(guid, "guid-7");
        assert_eq!(body, br#"{"action":"created","n":7}"#);
        assert_eq!(signature, sign(fake_github::WEBHOOK_SECRET, &body));
        assert_eq!(statuses(&w.gh, REDELIVER), vec![202]);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_sweep_asks_again_only_for_what_never_arrived_once_across_instances() {
    within(90, async {
        let mut stores = vec![("sqlite", support::db::sqlite().await)];
        if let Some(pg) = support::db::postgres().await {
            stores.push(("postgres", pg));
        }
        for (backend, db) in stores {
            let w = world().await;
            let (hook, got) = receiver().await;
            w.gh.set_hook_url(&hook);
            let run = |s: &str| format!("{backend}-{s}");
            let payload = |s: &str| format!(r#"{{"action":"created","which":"{s}"}}"#);
            // Stored: delivered once to a server whose store later went away, then not.
            let stored = run("stored");
            let (effect, d) = stored_delivery(&stored);
            db.store.record_delivery(&d, effect).await.expect("store");
            w.gh.record_delivery(&stored, "issue_comment", payload("stored").as_bytes(), 503);
            w.gh.record_delivery(
                &run("fine"),
                "issue_comment",
                payload("fine").as_bytes(),
                202,
            );
            w.gh.record_delivery(&run("down"), "issue_comment", payload("down").as_bytes(), 0);
            w.gh.record_delivery(&run("503"), "issue_comment", payload("503").as_bytes(), 503);

            // Two instances on the same store sweep at once: one of them asks.
            let other = second_handle(&db).await;
            let settings = SweepSettings::default();
            let (a, b) = tokio::join!(
                sweep(&w.app, &db.store, "instance-a", &settings),
                sweep(&w.app, &other, "instance-b", &settings),
            );
            let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
            assert!(
                a.skipped != b.skipped,
                "{backend}: exactly one sweeps: {a:?} {b:?}"
            );
            let swept = if a.skipped { b } else { a };
            let mut asked = swept.redelivered.clone();
            asked.sort();
            assert_eq!(asked, vec![run("503"), run("down")], "{backend}");
            let arrived = wait_for(
                || {
                    let g = got.lock().expect("got");
                    let mine: Vec<String> = g
                        .iter()
                        .map(|(guid, _, _)| guid.clone())
                        .filter(|guid| guid.starts_with(backend))
                        .collect();
                    (mine.len() == 2).then_some(mine)
                },
                10,
            )
            .await;
            assert_eq!(arrived.len(), 2);
            // The next sweep sees the 2xx redeliveries and asks for nothing.
            let again = sweep(
                &w.app,
                &db.store,
                if swept.skipped {
                    "instance-b"
                } else {
                    "instance-a"
                },
                &settings,
            )
            .await;
            let again = again.expect("sweep");
            let mine: Vec<&String> = again
                .redelivered
                .iter()
                .filter(|g| g.starts_with(backend))
                .collect();
            assert!(mine.is_empty(), "{backend}: {again:?}");
            w.gh.assert_requests_fit_openapi();
        }
    })
    .await
}

/// A second handle on a test store, as another instance would have.
async fn second_handle(db: &support::db::TestStore) -> backspace::store::Store {
    backspace::store::Store::connect(&db.url)
        .await
        .expect("a second handle")
}

fn stored_delivery(
    guid: &str,
) -> (
    backspace::store::DeliveryEffect<'static>,
    backspace::store::NewDelivery,
) {
    (
        backspace::store::DeliveryEffect::Nothing { reason: "test" },
        backspace::store::NewDelivery {
            delivery_id: guid.to_string(),
            event: "issue_comment".into(),
            action: Some("created".into()),
            installation_id: None,
            repository: None,
            replay_keys: vec![],
        },
    )
}

// --- the whole bot ---

fn greet_script() -> Vec<Step> {
    edit_script("src/app.js", "'hi '", "'Hello, '", "Greet people properly")
}

#[tokio::test]
async fn a_502_after_the_pull_request_and_the_comment_leaves_one_of_each_and_a_successful_run() {
    within(180, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        let issue = t.open_issue("Greeting is rude", "It says hi.");
        // GitHub (or the proxy before it) answers 502 after making the progress comment and
        // after opening the pull request.
        t.bot.gh.fail_after_work(POST_COMMENT, 502, 1);
        t.bot.gh.fail_after_work(POST_PULL, 502, 1);
        let (job, comment) = t
            .comment(issue, MAINTAINER, "/backspace make greet say Hello")
            .await;
        t.ends(&job, JobState::Succeeded).await;
        t.expect_model_calls(4);
        t.expect_pushes(1);
        let pull = t.expect_pull();
        let progress = t.expect_comment(issue);
        assert!(
            progress.body.contains("Opened pull request"),
            "{}",
            progress.body
        );
        assert!(
            progress.body.contains(&format!("/pull/{}", pull.number)),
            "{}",
            progress.body
        );
        t.expect_reactions(comment, &["eyes", "rocket"]);
        assert_eq!(statuses(&t.bot.gh, POST_COMMENT), vec![502]);
        assert_eq!(statuses(&t.bot.gh, POST_PULL), vec![502]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_from_main_into_release_gets_a_reply_and_no_push() {
    within(120, async {
        let Some(mut t) = Tester::start(FILES, greet_script()).await else {
            return;
        };
        let repo = t.bot.repo.clone();
        t.bot
            .gh
            .push_branch(&repo, "main", "release", &[("CHANGELOG.md", "1.0\n")]);
        let main_before = t.bot.gh.branch_sha(&repo, "main");
        let pr = t
            .bot
            .gh
            .open_pull(&repo, MAINTAINER, &repo, "main", "release", "Release 1.0");
        t.expect_pull();
        let (job, comment) = t
            .comment(pr, MAINTAINER, "/backspace add a greet script")
            .await;
        t.ends(&job, JobState::Failed).await;
        let reply = t.expect_comment(pr);
        assert!(
            reply
                .body
                .contains("`main`, the repository's default branch"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains("Ask for the change on an issue"),
            "{}",
            reply.body
        );
        t.expect_reactions(comment, &["eyes", "confused"]);
        t.expect_model_calls(0);
        t.expect_pushes(0);
        assert_eq!(t.bot.gh.branch_sha(&repo, "main"), main_before);

        // A protected head branch is refused the same way.
        t.bot
            .gh
            .push_branch(&repo, "main", "hotfix", &[("fix.txt", "x\n")]);
        t.bot.gh.protect_branch(&repo, "hotfix");
        let pr = t
            .bot
            .gh
            .open_pull(&repo, MAINTAINER, &repo, "hotfix", "main", "Hotfix");
        t.expect_pull();
        let before = t.bot.gh.branch_sha(&repo, "hotfix");
        let (job, comment) = t.comment(pr, MAINTAINER, "/backspace tidy it").await;
        t.ends(&job, JobState::Failed).await;
        let reply = t.expect_comment(pr);
        assert!(
            reply.body.contains("`hotfix` is protected"),
            "{}",
            reply.body
        );
        t.expect_reactions(comment, &["eyes", "confused"]);
        t.expect_pushes(0);
        assert_eq!(t.bot.gh.branch_sha(&repo, "hotfix"), before);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_mid_run_is_minted_again_for_the_edits_and_the_push() {
    within(180, async {
        let script = vec![
            Reply::edit(serde_json::json!({ "command": "view", "path": "src/app.js" })).into(),
            Reply::bash("sleep 2").into(),
            Reply::edit(serde_json::json!({
                "command": "str_replace", "path": "src/app.js",
                "old_str": "'hi '", "new_str": "'Hello, '"
            }))
            .into(),
            Reply::text("TITLE: Greet properly\n\nSUMMARY:\nChanged `src/app.js`.").into(),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("Greeting", "be polite");
        let (_, answer, _) = bot
            .comment(issue, MAINTAINER, "/backspace greet properly")
            .await;
        let job = answer["job_id"].as_str().expect("job").to_owned();
        // While the agent sleeps, every token GitHub gave out expires (the progress edits
        // meet it first and mint a new one); then the push is refused as an expired token is.
        wait_for(|| (bot.model.requests().len() >= 2).then_some(()), 60).await;
        bot.gh.expire_all_tokens();
        let www = (
            "www-authenticate".to_string(),
            "Basic realm=\"GitHub\"".to_string(),
        );
        bot.gh.fail_with_headers("git push", 401, vec![www], 1);
        let done = bot.finished(&job, Duration::from_secs(120)).await;
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.result);
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1);
        let pushes: Vec<u16> = bot
            .gh
            .requests_to("git push")
            .iter()
            .map(|r| r.status)
            .collect();
        assert!(
            pushes.contains(&401),
            "the push was refused first: {pushes:?}"
        );
        assert_eq!(pushes.last(), Some(&200), "{pushes:?}");
        // One token at the start, one after the edits' 401, one after the push's.
        assert!(bot.gh.requests_to(ACCESS_TOKENS).len() >= 3);
        assert!(statuses(&bot.gh, PATCH_COMMENT).contains(&401));
        bot.gh.assert_requests_fit_openapi();
    })
    .await;
}

#[tokio::test]
async fn a_job_waiting_for_a_worker_is_acknowledged_within_a_second() {
    within(180, async {
        let mut script = vec![
            Reply::bash("sleep 4").into(),
            Reply::text("TITLE: Slept\n\nSUMMARY:\nNothing to change.").into(),
        ];
        script.push(Reply::text("TITLE: Answer\n\nSUMMARY:\nIt is in src/app.js.").into());
        let opts = Options {
            max_jobs: 1,
            ..Options::default()
        };
        let Some(mut t) = Tester::start_with(FILES, script, opts).await else {
            return;
        };
        let busy = t.open_issue("Busy", "one at a time");
        let waiting = t.open_issue("Waiting", "second");
        let (first, first_comment) = t
            .comment(busy, MAINTAINER, "/backspace take your time")
            .await;
        wait_for(|| (!t.bot.model.requests().is_empty()).then_some(()), 60).await;
        let sent = Instant::now();
        let (second, second_comment) = t
            .comment(waiting, MAINTAINER, "/backspace where is greet?")
            .await;
        let acked = wait_for(
            || {
                let eyes = !t.bot.gh.reactions_on_comment(second_comment).is_empty();
                let comment = t.bot.bot_comments(waiting).into_iter().next();
                (eyes && comment.is_some()).then(|| (sent.elapsed(), comment))
            },
            10,
        )
        .await;
        assert!(
            acked.0 < Duration::from_secs(1),
            "acknowledged after {:?}",
            acked.0
        );
        let queued = acked.1.expect("comment");
        assert!(
            queued.body.contains("waiting for a free worker"),
            "{}",
            queued.body
        );
        let still = t.bot.store.job(&second).await.expect("store").expect("job");
        assert_eq!(
            still.state,
            JobState::Queued,
            "acknowledged while it waited"
        );

        t.ends(&first, JobState::Succeeded).await;
        t.ends(&second, JobState::Succeeded).await;
        t.expect_model_calls(3);
        let done = t.expect_comment(waiting);
        assert_eq!(done.id, queued.id, "the same comment, edited");
        assert!(done.body.contains("💬 Answered"), "{}", done.body);
        t.expect_comment(busy);
        t.expect_reactions(first_comment, &["eyes", "rocket"]);
        t.expect_reactions(second_comment, &["eyes", "rocket"]);
        t.finish();
    })
    .await;
}

#[tokio::test]
async fn a_command_posted_while_the_server_was_down_runs_once_after_it_is_back() {
    within(180, async {
        let opts = Options {
            start_workers: false,
            ..Options::default()
        };
        let Some(mut bot) = Bot::start_with(FILES, greet_script(), opts).await else {
            return;
        };
        let issue = bot.issue("Greeting is rude", "It says hi.");
        // GitHub tried to deliver the comment while the server was stopped.
        let (payload, _) = comment_payload(
            &bot.gh,
            &bot.repo,
            issue,
            MAINTAINER,
            "/backspace make greet say Hello",
        );
        let body = serde_json::to_vec(&payload).expect("json");
        let guid = format!("lost-{}", uuid::Uuid::new_v4());
        bot.gh.record_delivery(&guid, "issue_comment", &body, 0);
        assert!(bot
            .store
            .jobs_for(&bot.repo.full_name(), issue.0)
            .await
            .expect("jobs")
            .is_empty());

        // The server is back: listening, workers running, then the start-up sweep.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = bot.ingress.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        bot.gh
            .set_hook_url(&format!("http://{addr}/api/github/webhooks"));
        bot.start_workers(2, Duration::from_secs(30), "instance-a");
        let app = GithubApp::new(GithubAppConfig::new(
            bot.gh.app_id(),
            app_private_key(),
            bot.gh.api_url(),
        ))
        .expect("app");
        let settings = SweepSettings::default();
        let swept = sweep(&app, &bot.store, "instance-a", &settings)
            .await
            .expect("sweep");
        assert_eq!(swept.redelivered, vec![guid.clone()]);

        let repo = bot.repo.full_name();
        let job = wait_for_job(&bot, &repo, issue).await;
        let done = bot.finished(&job, Duration::from_secs(120)).await;
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.result);
        assert_eq!(bot.gh.pulls(&bot.repo).len(), 1);

        // Later sweeps ask for nothing: the redelivery arrived, and exactly one job ran.
        let again = sweep(&app, &bot.store, "instance-a", &settings)
            .await
            .expect("sweep");
        assert_eq!(again.redelivered, Vec::<String>::new());
        let attempts: Vec<(bool, u16)> = bot
            .gh
            .hook_deliveries()
            .iter()
            .filter(|d| d.guid == guid)
            .map(|d| (d.redelivery, d.status_code))
            .collect();
        assert_eq!(attempts, vec![(false, 0), (true, 202)]);
        assert_eq!(
            bot.store
                .jobs_for(&repo, issue.0)
                .await
                .expect("jobs")
                .len(),
            1
        );
        bot.stop_workers().await;
        bot.gh.assert_requests_fit_openapi();
    })
    .await;
}

async fn wait_for_job(bot: &Bot, repo: &str, issue: IssueNumber) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = bot.store.jobs_for(repo, issue.0).await.expect("jobs");
        if let Some(j) = jobs.first() {
            return j.id.clone();
        }
        assert!(Instant::now() < deadline, "the redelivery made no job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn errors_never_decide_on_a_substring_of_the_message() {
    // A message that reads like the duplicate-PR case but has no such entry in `errors`.
    let e = GithubError::Api {
        status: 422,
        method: "POST".into(),
        path: "/repos/o/r/pulls".into(),
        body: backspace::github::ErrorBody::parse(
            br#"{"message":"A pull request already exists for o:b.","errors":[]}"#,
        ),
    };
    assert!(!e.details().iter().any(|d| d.is("PullRequest", "custom")));
    assert!(!e.may_have_gone_through());
}

// --- what the chores ask of the store ---

fn waiting_run(number: u64) -> backspace::job::JobRequest {
    backspace::job::JobRequest {
        spec: backspace::job::JobSpec::Run(Default::default()),
        source: backspace::job::JobSource::Comment,
        installation_id: Some(7),
        repository: "octo/app".into(),
        clone_url: None,
        default_branch: Some("main".into()),
        number: Some(number),
        is_pull_request: false,
        comment_id: Some(99),
        requester: "alice".into(),
        prompt: "do it".into(),
    }
}

#[tokio::test]
async fn a_lease_has_one_owner_until_it_runs_out_and_a_job_is_acknowledged_once() {
    within(60, async {
        for (backend, db) in support::db::all().await {
            let clock = backspace::clock::Clock::manual_now();
            let store = db.store.clone().with_clock(clock.clone());
            let ttl = Duration::from_secs(60);
            assert!(
                store.try_lease("sweep", "a", ttl).await.expect("lease"),
                "{backend}"
            );
            assert!(
                !store.try_lease("sweep", "b", ttl).await.expect("lease"),
                "{backend}"
            );
            assert!(
                store.try_lease("sweep", "a", ttl).await.expect("lease"),
                "{backend}: kept"
            );
            clock.advance(Duration::from_secs(61));
            assert!(
                store.try_lease("sweep", "b", ttl).await.expect("lease"),
                "{backend}: expired"
            );
            assert!(
                !store.try_lease("sweep", "a", ttl).await.expect("lease"),
                "{backend}"
            );

            let id = store.insert_job(&waiting_run(5)).await.expect("job");
            assert!(
                store
                    .unacknowledged_jobs(Duration::from_secs(1), 10)
                    .await
                    .expect("jobs")
                    .is_empty(),
                "{backend}: too new"
            );
            clock.advance(Duration::from_secs(2));
            let waiting = store
                .unacknowledged_jobs(Duration::from_secs(1), 10)
                .await
                .expect("jobs");
            assert_eq!(
                waiting.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
                vec![id.clone()],
                "{backend}"
            );
            let (a, b) = tokio::join!(store.acknowledge(&id), store.acknowledge(&id));
            assert!(
                a.expect("ack") != b.expect("ack"),
                "{backend}: exactly one acknowledges"
            );
            assert!(
                store
                    .unacknowledged_jobs(Duration::ZERO, 10)
                    .await
                    .expect("jobs")
                    .is_empty(),
                "{backend}"
            );
            // A job the lane left to its worker is not listed again, and its worker still
            // acknowledges it.
            let left = store.insert_job(&waiting_run(6)).await.expect("job");
            store.pass_acknowledgement(&left).await.expect("pass");
            assert!(
                store
                    .unacknowledged_jobs(Duration::ZERO, 10)
                    .await
                    .expect("jobs")
                    .is_empty(),
                "{backend}"
            );
            assert!(store.acknowledge(&left).await.expect("ack"), "{backend}");
            assert!(!store.acknowledge(&left).await.expect("ack"), "{backend}");

            let known = store
                .stored_deliveries(&["nope".to_string()])
                .await
                .expect("lookup");
            assert!(known.is_empty(), "{backend}");
        }
    })
    .await
}

#[tokio::test]
async fn a_job_cancelled_while_it_waits_gets_its_comment_closed() {
    within(180, async {
        let script = vec![
            Reply::bash("sleep 30").into(),
            Step::Stall(Duration::from_secs(60)),
        ];
        let Some(bot) = Bot::start(FILES, script).await else {
            return;
        };
        let issue = bot.issue("Slow", "one at a time per issue");
        let (_, first, _) = bot.comment(issue, MAINTAINER, "/backspace slow work").await;
        let first = first["job_id"].as_str().expect("job").to_owned();
        wait_for(|| (!bot.model.requests().is_empty()).then_some(()), 60).await;
        // A second request on the same issue waits for the first: the lane answers it.
        let (_, second, asked) = bot.comment(issue, MAINTAINER, "/backspace more work").await;
        let second = second["job_id"].as_str().expect("job").to_owned();
        let marker = backspace::github::progress_marker(&second);
        let queued = wait_for(
            || {
                bot.bot_comments(issue)
                    .into_iter()
                    .find(|c| c.body.contains(&marker))
            },
            10,
        )
        .await;
        assert!(
            queued.body.contains("waiting for a free worker"),
            "{}",
            queued.body
        );
        assert_eq!(bot.gh.reactions_on_comment(asked), vec!["eyes"]);

        let (_, cancel, _) = bot.comment(issue, MAINTAINER, "/backspace cancel").await;
        bot.finished(
            cancel["job_id"].as_str().expect("job"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            bot.finished(&second, Duration::from_secs(30)).await.state,
            JobState::Cancelled
        );
        assert_eq!(
            bot.finished(&first, Duration::from_secs(30)).await.state,
            JobState::Cancelled
        );
        let closed = wait_for(
            || {
                bot.gh
                    .comment(queued.id)
                    .filter(|c| c.body.contains("Cancelled before it started"))
            },
            10,
        )
        .await;
        assert!(closed.body.contains(&marker), "{}", closed.body);
        bot.gh.assert_requests_fit_openapi();
    })
    .await;
}
