//! The GitHub App client against the fake GitHub (tests/support/fake_github): app JWT, scoped
//! and cached installation tokens, the permission gate, every REST call a run makes checked
//! against GitHub's OpenAPI subset, retries, coalesced progress comments, and real git over the
//! fake's smart HTTP. Every test runs under a timeout.

mod support;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use backspace::github::{
    convert_manifest, git_basic_auth_header, with_marker, CheckConclusion, CheckOutput,
    GateDecision, GithubApp, GithubAppConfig, GithubError, IssueNumber, NewCheckRun,
    NewPullRequest, PacingLimits, Permission, ProgressComment, ProgressConfig, ReactionContent,
    RepoClient, RepoName, RetryPolicy, DENIED_REPLY_MARKER, JWT_LIFETIME_SECS,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use support::fake_github::{app_private_key, other_private_key, FakeGithub, BOT_USER_ID};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

const ACCESS_TOKENS: &str = "POST /app/installations/{installation_id}/access_tokens";
const GET_ISSUE: &str = "GET /repos/{owner}/{repo}/issues/{issue_number}";
const PATCH_COMMENT: &str = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}";
const GET_PERMISSION: &str = "GET /repos/{owner}/{repo}/collaborators/{username}/permission";

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test took too long")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_total_wait: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

fn config(gh: &FakeGithub, key: SecretString) -> GithubAppConfig {
    let mut c = GithubAppConfig::new(gh.app_id(), key, gh.api_url());
    c.retry = fast_retries();
    c.pacing = PacingLimits {
        per_minute: 10_000,
        per_hour: 100_000,
        min_interval: Duration::ZERO,
        burst: 1,
    };
    c.gate.timeout = Duration::from_secs(2);
    c
}

fn app_for(gh: &FakeGithub) -> GithubApp {
    GithubApp::new(config(gh, app_private_key())).expect("app client")
}

/// A fake with `octo/hello` (README and settings file), an issue by alice, and the client.
struct World {
    gh: FakeGithub,
    app: GithubApp,
    repo: RepoName,
    client: RepoClient,
    issue: IssueNumber,
}

async fn world() -> World {
    let gh = FakeGithub::start().await;
    let repo = gh.repo_with_files(
        "octo/hello",
        &[
            ("README.md", "# Hello\n"),
            (".github/backspace.yml", "test: cargo test\n"),
        ],
    );
    gh.add_collaborator(&repo, "alice", "write");
    let issue = gh.open_issue(&repo, "alice", "Add validation", "The form takes anything.");
    let app = app_for(&gh);
    let client = app.repo(gh.installation_of(&repo), repo.clone());
    World {
        gh,
        app,
        repo,
        client,
        issue,
    }
}

// --- the app JWT ---

#[tokio::test]
async fn app_jwt_is_rs256_signed_by_the_app_key_with_backdated_iat_and_ten_minute_exp() {
    within(async {
        let gh = FakeGithub::start().await;
        let app = app_for(&gh);
        let jwt = app.jwt().expect("jwt");
        let header = jsonwebtoken::decode_header(jwt.expose_secret()).expect("header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);

        let public = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github-app-test-key.pub.pem"),
        )
        .expect("public key");
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(jwt.expose_secret(), &key, &v)
            .expect("signed by the app key")
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let iat = claims["iat"].as_u64().expect("iat");
        let exp = claims["exp"].as_u64().expect("exp");
        assert_eq!(claims["iss"], json!(gh.app_id().to_string()));
        assert!((now - 62..=now - 58).contains(&iat), "iat {iat} now {now}");
        assert!(exp > now && exp <= now + 600, "exp {exp} now {now}");
        assert!(exp - iat <= JWT_LIFETIME_SECS);

        // And GitHub (the fake) takes it.
        assert_eq!(
            app.bot_login().await.expect("GET /app"),
            "backspace-test[bot]"
        );
        let get_app = gh.requests_to("GET /app");
        assert_eq!(get_app.len(), 1);
        assert_eq!(get_app[0].auth, "jwt");
        gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_refused_like_github() {
    within(async {
        let gh = FakeGithub::start().await;
        let app = GithubApp::new(config(&gh, other_private_key())).expect("client");
        let err = app.bot_login().await.expect_err("wrong key");
        assert_eq!(err.status(), Some(401));

        // GitHub's error body, straight from the wire.
        let jwt = app.jwt().expect("jwt");
        let res = reqwest::Client::new()
            .get(gh.api_url().join("app").expect("url"))
            .header("user-agent", "test")
            .bearer_auth(jwt.expose_secret())
            .send()
            .await
            .expect("answer");
        assert_eq!(res.status().as_u16(), 401);
        let body: serde_json::Value = res.json().await.expect("json");
        assert!(body["message"].is_string());
        assert!(body["documentation_url"].is_string());
        gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn jwts_that_github_would_refuse_are_refused() {
    within(async {
        let gh = FakeGithub::start().await;
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(app_private_key().expose_secret().as_bytes())
                .expect("key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let id = gh.app_id().to_string();
        let status_for = |claims: serde_json::Value| {
            let jwt = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &key,
            )
            .expect("sign");
            let url = gh.api_url().join("app").expect("url");
            async move {
                reqwest::Client::new()
                    .get(url)
                    .header("user-agent", "test")
                    .bearer_auth(jwt)
                    .send()
                    .await
                    .expect("answer")
                    .status()
                    .as_u16()
            }
        };
        // The shape Backspace sends is accepted...
        assert_eq!(
            status_for(json!({"iss": id, "iat": now - 60, "exp": now + 540})).await,
            200
        );
        // ...an expired one, one living past ten minutes, another app's, or no iat are not.
        assert_eq!(
            status_for(json!({"iss": id, "iat": now - 700, "exp": now - 100})).await,
            401
        );
        assert_eq!(
            status_for(json!({"iss": id, "iat": now - 60, "exp": now + 1200})).await,
            401
        );
        assert_eq!(
            status_for(json!({"iss": "1", "iat": now - 60, "exp": now + 540})).await,
            401
        );
        assert_eq!(status_for(json!({"iss": id, "exp": now + 540})).await, 401);
    })
    .await
}

#[tokio::test]
async fn installation_routes_refuse_a_missing_or_non_jwt_credential() {
    within(async {
        let w = world().await;
        let token = w.client.git_token().await.expect("token");
        let inst = w.gh.installation_of(&w.repo);
        for auth in [None, Some(token.expose_secret().to_string())] {
            let mut req = reqwest::Client::new()
                .get(
                    w.gh.api_url()
                        .join(&format!("app/installations/{inst}"))
                        .expect("url"),
                )
                .header("user-agent", "test");
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            let res = req.send().await.expect("answer");
            assert_eq!(res.status().as_u16(), 401);
        }
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_manifest_code_converts_once_into_the_apps_credentials() {
    within(async {
        let gh = FakeGithub::start().await;
        let code = gh.manifest_code();
        let app = convert_manifest(&gh.api_url(), &code, fast_retries())
            .await
            .expect("conversion");
        assert_eq!(app.id, gh.app_id());
        assert_eq!(app.slug, "backspace-test");
        assert_eq!(
            app.webhook_secret
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
            Some(support::fake_github::WEBHOOK_SECRET.to_string())
        );
        assert!(!format!("{app:?}").contains("PRIVATE KEY"));
        // The key it hands out signs JWTs GitHub accepts.
        let client = GithubApp::new(config(&gh, app.pem.clone())).expect("client");
        assert_eq!(
            client.bot_login().await.expect("login"),
            "backspace-test[bot]"
        );
        // A code works once.
        let again = convert_manifest(&gh.api_url(), &code, fast_retries()).await;
        assert_eq!(again.expect_err("used").status(), Some(404));
        gh.assert_requests_fit_openapi();
    })
    .await
}

// --- installation tokens ---

/// An installation made before the app asked for `checks: write` has not granted it until its
/// owner accepts: GitHub refuses a token that asks for it, so the token is asked again without
/// it, and the check run (only) is refused.
#[tokio::test]
async fn an_installation_that_has_not_granted_checks_still_gets_a_token_without_them() {
    within(async {
        let w = world().await;
        w.gh.withhold_permission(w.client.installation(), "checks");
        w.client.git_token().await.expect("a token");
        let asked = w.gh.requests_to(ACCESS_TOKENS);
        let statuses: Vec<u16> = asked.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![422, 201]);
        assert_eq!(
            asked[1]
                .body
                .as_ref()
                .map(|b| b["permissions"].get("checks").is_none()),
            Some(true)
        );
        // The run's other calls work with it.
        w.client.get_issue(w.issue).await.expect("the issue");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_token_is_asked_for_the_one_repository_and_the_run_permissions_only() {
    within(async {
        let w = world().await;
        w.gh.repo_with_files("octo/other", &[("a", "b")]);
        let token = w.client.git_token().await.expect("token");

        let asked = w.gh.requests_to(ACCESS_TOKENS);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].auth, "jwt");
        assert_eq!(
            asked[0].body,
            Some(json!({
                "repositories": ["hello"],
                "permissions": {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"}
            }))
        );
        let grants = w.gh.tokens();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].repositories, Some(vec!["hello".to_string()]));
        assert_eq!(grants[0].installation, w.client.installation().0);
        let last = w.gh.last_requests(1);
        assert_eq!(last[0].operation.as_deref(), Some(ACCESS_TOKENS));
        // The token works for octo/hello and not for the installation's other repository.
        let get = |repo: &str| {
            reqwest::Client::new()
                .get(w.gh.api_url().join(&format!("repos/{repo}")).expect("url"))
                .header("user-agent", "test")
                .bearer_auth(token.expose_secret())
                .send()
        };
        assert_eq!(get("octo/hello").await.expect("answer").status().as_u16(), 200);
        assert_eq!(get("octo/other").await.expect("answer").status().as_u16(), 403);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn tokens_are_cached_per_installation_and_repository() {
    within(async {
        let w = world().await;
        let other = w.gh.repo_with_files("octo/other", &[("a", "b")]);
        let inst = w.gh.installation_of(&w.repo);

        let first = w.client.git_token().await.expect("token");
        w.client.get_issue(w.issue).await.expect("issue");
        let again = w
            .app
            .installation_token(inst, &w.repo)
            .await
            .expect("token");
        assert_eq!(first.expose_secret(), again.expose_secret());
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 1, "cache hit");

        let other_token = w.app.installation_token(inst, &other).await.expect("token");
        assert_ne!(first.expose_secret(), other_token.expose_secret());
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2);

        // Many callers at once still mint one token per repository.
        let third = w.gh.repo_with_files("octo/third", &[("a", "b")]);
        let calls = (0..8).map(|_| w.app.installation_token(inst, &third));
        for t in futures::future::join_all(calls).await {
            t.expect("token");
        }
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 3);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_token_within_five_minutes_of_expiry_is_replaced_before_use() {
    within(async {
        let w = world().await;
        w.gh.set_token_ttl(Duration::from_secs(4 * 60));
        let short = w.client.git_token().await.expect("token");
        w.gh.set_token_ttl(Duration::from_secs(3600));
        let fresh = w.client.git_token().await.expect("token");
        assert_ne!(short.expose_secret(), fresh.expose_secret());
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2);
        // The fresh one (an hour) is kept.
        let again = w.client.git_token().await.expect("token");
        assert_eq!(fresh.expose_secret(), again.expose_secret());
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2);

        // Six minutes left is still fine.
        let w2 = world().await;
        w2.gh.set_token_ttl(Duration::from_secs(6 * 60));
        let a = w2.client.git_token().await.expect("token");
        let b = w2.client.git_token().await.expect("token");
        assert_eq!(a.expose_secret(), b.expose_secret());
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_revoked_token_is_dropped_and_the_call_succeeds_with_a_new_one() {
    within(async {
        let w = world().await;
        w.client.get_issue(w.issue).await.expect("issue");
        w.gh.expire_all_tokens();
        w.client
            .get_issue(w.issue)
            .await
            .expect("issue with a fresh token");
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2);
        let statuses: Vec<u16> =
            w.gh.requests_to(GET_ISSUE)
                .iter()
                .map(|r| r.status)
                .collect();
        assert_eq!(statuses, vec![200, 401, 200]);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn an_uninstalled_app_fails_and_keeps_nothing_cached() {
    within(async {
        let w = world().await;
        w.client.get_issue(w.issue).await.expect("issue");
        w.gh.uninstall(w.gh.installation_of(&w.repo));
        let err = w.client.get_issue(w.issue).await.expect_err("uninstalled");
        assert_eq!(err.status(), Some(404), "{err}");
        let err = w.client.git_token().await.expect_err("no token");
        assert_eq!(err.status(), Some(404));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_suspended_installation_gets_no_token() {
    within(async {
        let w = world().await;
        w.gh.suspend_installation(w.client.installation());
        let err = w.client.git_token().await.expect_err("suspended");
        assert_eq!(err.status(), Some(403));
        assert_eq!(
            w.gh.requests_to(ACCESS_TOKENS).len(),
            1,
            "a 403 is not retried"
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn forgetting_an_installation_mints_a_new_token_next_time() {
    within(async {
        let w = world().await;
        let a = w.client.git_token().await.expect("token");
        w.app.forget_installation(w.client.installation());
        let b = w.client.git_token().await.expect("token");
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(w.gh.requests_to(ACCESS_TOKENS).len(), 2);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn secrets_never_show_in_debug_output_or_errors() {
    within(async {
        let w = world().await;
        let token = w.client.git_token().await.expect("token");
        w.gh.fail(GET_ISSUE, 422, None, 1);
        let err = w.client.get_issue(w.issue).await.expect_err("422");
        for text in [
            format!("{:?}", w.app),
            format!("{:?}", w.client),
            format!("{err:?}"),
            err.to_string(),
            format!("{token:?}"),
        ] {
            assert!(!text.contains(token.expose_secret()), "{text}");
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- the permission gate ---

#[tokio::test]
async fn only_admin_maintain_and_write_pass_the_gate() {
    within(async {
        let w = world().await;
        for (user, role) in [
            ("ada", "admin"),
            ("mae", "maintain"),
            ("will", "write"),
            ("tri", "triage"),
            ("rea", "read"),
        ] {
            w.gh.add_collaborator(&w.repo, user, role);
        }
        let cases = [
            ("ada", GateDecision::Allowed(Permission::Admin)),
            ("mae", GateDecision::Allowed(Permission::Maintain)),
            ("will", GateDecision::Allowed(Permission::Write)),
            ("tri", GateDecision::Denied(Permission::Triage)),
            ("rea", GateDecision::Denied(Permission::Read)),
            // Not a collaborator of a public repository: read.
            ("stranger", GateDecision::Denied(Permission::Read)),
        ];
        for (user, want) in cases {
            assert_eq!(w.client.may_start_run(user).await, want, "{user}");
        }
        w.gh.set_private(&w.repo, true);
        assert_eq!(
            w.client.may_start_run("stranger").await,
            GateDecision::Denied(Permission::None)
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_gate_fails_closed_on_an_api_error() {
    within(async {
        let w = world().await;
        w.gh.fail(GET_PERMISSION, 500, None, 100);
        let d = w.client.may_start_run("alice").await;
        assert!(matches!(d, GateDecision::Unknown(_)), "{d:?}");
        assert!(!d.is_allowed());
        w.gh.fail(GET_PERMISSION, 500, None, 0);

        let w = world().await;
        w.gh.fail(GET_PERMISSION, 404, None, 1);
        assert!(matches!(
            w.client.may_start_run("alice").await,
            GateDecision::Unknown(_)
        ));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_gate_fails_closed_on_a_timeout() {
    within(async {
        let gh = FakeGithub::start().await;
        let repo = gh.repo_with_files("octo/hello", &[("a", "b")]);
        gh.add_collaborator(&repo, "alice", "admin");
        let mut c = config(&gh, app_private_key());
        c.gate.timeout = Duration::from_millis(300);
        let app = GithubApp::new(c).expect("client");
        let client = app.repo(gh.installation_of(&repo), repo);
        gh.delay(GET_PERMISSION, Duration::from_secs(10), 10);
        let started = Instant::now();
        let d = client.may_start_run("alice").await;
        assert!(matches!(d, GateDecision::Unknown(_)), "{d:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_denied_user_gets_at_most_one_reply_per_issue() {
    within(async {
        let w = world().await;
        let text = "Sorry, only people with write access can start Backspace.";
        let replies = (0..4).map(|_| w.client.reply_denied_once(w.issue, text));
        let posted: Vec<bool> = futures::future::join_all(replies)
            .await
            .into_iter()
            .map(|r| r.expect("reply"))
            .collect();
        assert_eq!(posted.iter().filter(|p| **p).count(), 1, "{posted:?}");
        assert!(!w
            .client
            .reply_denied_once(w.issue, text)
            .await
            .expect("reply"));
        let comments = w.gh.comments(&w.repo, w.issue);
        assert_eq!(comments.len(), 1);
        assert!(comments[0].body.starts_with(text));
        assert!(comments[0].body.contains(DENIED_REPLY_MARKER));
        assert!(w.client.denied_reply_exists(w.issue).await.expect("check"));

        // A human pasting the marker does not silence the bot on another issue.
        let other = w.gh.open_issue(&w.repo, "bob", "x", "y");
        w.gh.post_comment(&w.repo, other, "bob", DENIED_REPLY_MARKER);
        assert!(w
            .client
            .reply_denied_once(other, text)
            .await
            .expect("reply"));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- the calls of a run, against the OpenAPI subset ---

#[tokio::test]
async fn every_request_of_a_run_matches_the_openapi_subset_and_so_do_the_answers() {
    within(async {
        let w = world().await;
        let (gh, client, issue) = (&w.gh, &w.client, w.issue);
        let human = gh.post_comment(&w.repo, issue, "alice", "/backspace add validation");

        assert_eq!(w.app.bot_login().await.expect("login"), gh.bot_login());
        assert_eq!(
            w.app
                .installation_for_repo(&w.repo)
                .await
                .expect("installation"),
            client.installation()
        );
        assert!(client.may_start_run("alice").await.is_allowed());
        client
            .react_to_comment(human, ReactionContent::Eyes)
            .await
            .expect("eyes");
        client
            .react_to_issue(issue, ReactionContent::Rocket)
            .await
            .expect("rocket");
        let got = client.get_issue(issue).await.expect("issue");
        assert_eq!(got.title, "Add validation");
        assert!(!got.is_pull_request());
        let comments = client.list_issue_comments(issue).await.expect("comments");
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].author(), Some("alice"));

        let settings = client
            .file(".github/backspace.yml", None)
            .await
            .expect("file");
        assert_eq!(settings.as_deref(), Some(&b"test: cargo test\n"[..]));
        assert_eq!(client.file("nope.yml", None).await.expect("missing"), None);
        assert!(matches!(
            client.file(".github", None).await,
            Err(GithubError::Decode { .. })
        ));
        assert_eq!(
            client
                .file("README.md", Some("main"))
                .await
                .expect("file")
                .as_deref(),
            Some(&b"# Hello\n"[..])
        );
        let info = client.repository().await.expect("repo");
        assert_eq!(info.default_branch, "main");
        assert_eq!(info.clone_url, gh.clone_url(&w.repo));

        let progress = client
            .create_comment(issue, "Queued")
            .await
            .expect("comment");
        client
            .update_comment(progress.id, "Running")
            .await
            .expect("edit");
        assert_eq!(
            client.get_comment(progress.id).await.expect("get").body(),
            "Running"
        );

        gh.push_branch(
            &w.repo,
            "main",
            "backspace/issue-1",
            &[("form.rs", "validate();\n")],
        );
        assert!(client
            .find_open_pull_request("backspace/issue-1")
            .await
            .expect("none")
            .is_none());
        let pr = client
            .create_pull_request(&NewPullRequest {
                title: "Add validation".into(),
                head: "backspace/issue-1".into(),
                base: "main".into(),
                body: "Closes #1".into(),
                draft: false,
            })
            .await
            .expect("pr");
        assert!(pr.head_is_in(&w.repo));
        let found = client
            .find_open_pull_request("backspace/issue-1")
            .await
            .expect("find")
            .expect("open pr");
        assert_eq!(found.number, pr.number);
        // Asking again for the same branch returns the same pull request, not a second one.
        let again = client
            .create_pull_request(&NewPullRequest {
                title: "Add validation".into(),
                head: "backspace/issue-1".into(),
                base: "main".into(),
                body: "Closes #1".into(),
                draft: false,
            })
            .await
            .expect("the existing pr");
        assert_eq!(again.number, pr.number);
        let updated = client
            .update_pull_request(IssueNumber(pr.number), None, Some("Closes #1\n\nMore."))
            .await
            .expect("update");
        assert_eq!(updated.body.as_deref(), Some("Closes #1\n\nMore."));
        let read = client
            .get_pull_request(IssueNumber(pr.number))
            .await
            .expect("pr");
        assert_eq!(read.head.branch, "backspace/issue-1");
        assert_eq!(
            read.head.sha,
            gh.branch_sha(&w.repo, "backspace/issue-1").expect("sha")
        );

        let review = gh.post_review_comment(
            &w.repo,
            IssueNumber(pr.number),
            "alice",
            "/backspace rename it",
        );
        client
            .react_to_review_comment(review, ReactionContent::Eyes)
            .await
            .expect("reaction");
        client
            .reply_to_review_comment(IssueNumber(pr.number), review, "On it.")
            .await
            .expect("reply");
        client
            .react_to_comment(human, ReactionContent::Confused)
            .await
            .expect("confused");

        // The state the script left.
        assert_eq!(gh.reactions_on_comment(human), vec!["eyes", "confused"]);
        assert_eq!(gh.reactions_on_issue(&w.repo, issue), vec!["rocket"]);
        assert_eq!(gh.reactions_on_review_comment(review), vec!["eyes"]);
        assert_eq!(gh.review_comments(&w.repo, IssueNumber(pr.number)).len(), 2);
        assert_eq!(gh.pulls(&w.repo).len(), 1);

        // Every request is an operation of the subset with the body it requires, and every
        // answer has the fields GitHub documents.
        let requests = gh.requests();
        for r in &requests {
            assert!(
                r.operation.is_some(),
                "{} {} is not a known operation",
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
            let expected_404 = r.path.ends_with("/contents/nope.yml");
            let expected_422 = r.method == "POST" && r.path.ends_with("/pulls");
            assert!(
                (200..300).contains(&r.status)
                    || (expected_404 && r.status == 404)
                    || (expected_422 && r.status == 422),
                "{} {} answered {}",
                r.method,
                r.path,
                r.status
            );
        }
        assert_eq!(gh.response_problems(), Vec::<String>::new());
        let mut operations: Vec<String> = requests
            .iter()
            .filter_map(|r| r.operation.clone())
            .collect();
        operations.sort();
        operations.dedup();
        assert_eq!(operations.len(), 19, "{operations:#?}");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_bots_own_comments_carry_the_login_that_bot_login_reports() {
    within(async {
        let w = world().await;
        let login = w.app.bot_login().await.expect("login");
        assert_eq!(login, "backspace-test[bot]");
        w.client
            .create_comment(w.issue, "hello")
            .await
            .expect("comment");
        let listed = w
            .client
            .list_issue_comments(w.issue)
            .await
            .expect("comments");
        let user = listed[0].user.as_ref().expect("user");
        assert_eq!(user.login, login);
        assert!(user.is_bot());
        // Asked once, then remembered.
        w.app.bot_login().await.expect("login");
        assert_eq!(w.gh.requests_to("GET /app").len(), 1);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_fakes_json_for_webhook_payloads_has_githubs_shapes() {
    within(async {
        let w = world().await;
        let id =
            w.gh.post_comment(&w.repo, w.issue, "alice", "/backspace go");
        let comment = w.gh.comment_json(id);
        assert_eq!(comment["id"], json!(id));
        assert_eq!(comment["user"]["login"], "alice");
        assert_eq!(comment["body"], "/backspace go");
        let repo = w.gh.repository_json(&w.repo);
        assert_eq!(repo["full_name"], "octo/hello");
        assert_eq!(repo["clone_url"], json!(w.gh.clone_url(&w.repo)));
        assert_eq!(
            w.gh.issue_json(&w.repo, w.issue)["number"],
            json!(w.issue.0)
        );
        assert_eq!(w.gh.user_json("alice")["type"], "User");
        assert_eq!(w.gh.user_json("backspace-test[bot]")["type"], "Bot");
        // The same shapes the REST answers have.
        let from_api = w.client.get_comment(id).await.expect("comment");
        assert_eq!(
            from_api.html_url,
            comment["html_url"].as_str().expect("url")
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_pull_request_from_a_fork_is_recognised_as_not_ours() {
    within(async {
        let w = world().await;
        let fork = w.gh.fork(&w.repo, "mallory");
        let pr =
            w.gh.open_pull(&w.repo, "mallory", &fork, "patch-1", "main", "Please merge");
        let read = w.client.get_pull_request(pr).await.expect("pr");
        assert_eq!(
            read.head.repo.as_ref().expect("repo").full_name,
            "mallory/hello"
        );
        assert!(!read.head_is_in(&w.repo));
        assert!(w
            .client
            .get_issue(pr)
            .await
            .expect("issue")
            .is_pull_request());
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn listing_comments_follows_pages() {
    within(async {
        let w = world().await;
        for i in 0..130 {
            w.gh.post_comment(&w.repo, w.issue, "alice", &format!("c{i}"));
        }
        let all = w
            .client
            .list_issue_comments(w.issue)
            .await
            .expect("comments");
        assert_eq!(all.len(), 130);
        assert_eq!(all[129].body(), "c129");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- retries ---

#[tokio::test]
async fn retries_wait_as_long_as_retry_after_says_then_succeed() {
    within(async {
        let w = world().await;
        w.client.git_token().await.expect("token");
        w.gh.fail(GET_ISSUE, 429, Some(1), 2);
        let started = Instant::now();
        w.client
            .get_issue(w.issue)
            .await
            .expect("issue after retries");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let statuses: Vec<u16> =
            w.gh.requests_to(GET_ISSUE)
                .iter()
                .map(|r| r.status)
                .collect();
        assert_eq!(statuses, vec![429, 429, 200]);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn secondary_rate_limits_are_retried_after_their_hint() {
    within(async {
        let w = world().await;
        w.client.git_token().await.expect("token");
        // A 403 with retry-after, then a 403 with an exhausted quota and its reset time.
        w.gh.fail(GET_ISSUE, 403, Some(1), 1);
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 1;
        w.gh.fail_with_headers(
            GET_ISSUE,
            403,
            vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset.to_string()),
            ],
            1,
        );
        let started = Instant::now();
        w.client.get_issue(w.issue).await.expect("issue");
        assert!(started.elapsed() >= Duration::from_secs(1));
        let statuses: Vec<u16> =
            w.gh.requests_to(GET_ISSUE)
                .iter()
                .map(|r| r.status)
                .collect();
        assert_eq!(statuses, vec![403, 403, 200]);

        // A plain 403 is a refusal, not a rate limit.
        w.gh.fail(GET_ISSUE, 403, None, 1);
        assert_eq!(
            w.client.get_issue(w.issue).await.expect_err("403").status(),
            Some(403)
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn retries_stop_at_their_bound() {
    within(async {
        let w = world().await;
        w.client.git_token().await.expect("token");
        w.gh.fail(GET_ISSUE, 503, None, 100);
        let err = w.client.get_issue(w.issue).await.expect_err("gives up");
        assert_eq!(err.status(), Some(503));
        assert_eq!(
            w.gh.requests_to(GET_ISSUE).len(),
            fast_retries().max_attempts as usize
        );
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_retry_after_beyond_the_wait_budget_fails_at_once() {
    within(async {
        let w = world().await;
        w.client.git_token().await.expect("token");
        w.gh.fail(GET_ISSUE, 429, Some(3600), 1);
        let started = Instant::now();
        let err = w.client.get_issue(w.issue).await.expect_err("too long");
        assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(w.gh.requests_to(GET_ISSUE).len(), 1);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    within(async {
        let w = world().await;
        w.client.git_token().await.expect("token");
        for status in [400, 404, 410, 422] {
            w.gh.clear_requests();
            w.gh.fail(GET_ISSUE, status, None, 1);
            let err = w.client.get_issue(w.issue).await.expect_err("fails");
            assert_eq!(err.status(), Some(status));
            assert_eq!(w.gh.requests_to(GET_ISSUE).len(), 1);
        }
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn writes_are_paced_per_installation_and_reads_are_not() {
    within(async {
        let gh = FakeGithub::start().await;
        let repo = gh.repo_with_files("octo/hello", &[("a", "b")]);
        let issue = gh.open_issue(&repo, "alice", "t", "b");
        let mut c = config(&gh, app_private_key());
        c.pacing.min_interval = Duration::from_millis(150);
        c.pacing.burst = 1;
        let app = GithubApp::new(c).expect("client");
        let client = app.repo(gh.installation_of(&repo), repo.clone());
        client.git_token().await.expect("token");

        let started = Instant::now();
        for _ in 0..3 {
            client.get_issue(issue).await.expect("read");
        }
        assert!(started.elapsed() < Duration::from_millis(300));

        let started = Instant::now();
        for i in 0..3 {
            client
                .create_comment(issue, &format!("c{i}"))
                .await
                .expect("write");
        }
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(gh.comments(&repo, issue).len(), 3);
        gh.assert_requests_fit_openapi();
    })
    .await
}

// --- the progress comment ---

fn progress_config() -> ProgressConfig {
    ProgressConfig {
        min_edit_interval: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn the_newest_progress_state_lands_last_despite_faults() {
    within(async {
        let w = world().await;
        // Five faults in a row fit in this client's retry bound (8 attempts per state).
        let mut c = config(&w.gh, app_private_key());
        c.retry.max_attempts = 8;
        let app = GithubApp::new(c).expect("client");
        let client = app.repo(w.client.installation(), w.repo.clone());
        let progress =
            ProgressComment::start(client, w.issue, "run-1", "Queued", progress_config())
                .await
                .expect("comment");
        let id = progress.comment_id();
        w.gh.fail(PATCH_COMMENT, 502, None, 3);
        w.gh.fail(PATCH_COMMENT, 429, None, 2);
        for i in 1..=60 {
            progress.update(format!("step {i}"));
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        progress
            .finish("Done: step 61")
            .await
            .expect("final state lands");

        let comment = w.gh.comment(id).expect("comment");
        assert_eq!(comment.body, with_marker("Done: step 61", "run-1"));
        // Coalesced: far fewer edits than updates, and never an older state after a newer one.
        assert!(
            comment.history.len() < 40,
            "{} edits",
            comment.history.len()
        );
        let steps: Vec<u32> = comment
            .history
            .iter()
            .filter_map(|b| {
                b.split("step ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(steps.windows(2).all(|p| p[0] < p[1]), "{steps:?}");
        let failed =
            w.gh.requests_to(PATCH_COMMENT)
                .iter()
                .filter(|r| r.status >= 400)
                .count();
        assert_eq!(failed, 5);
        assert_eq!(w.gh.comments(&w.repo, w.issue).len(), 1);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_final_state_that_cannot_be_written_is_reported() {
    within(async {
        let w = world().await;
        let progress = ProgressComment::start(
            w.client.clone(),
            w.issue,
            "run-2",
            "Queued",
            progress_config(),
        )
        .await
        .expect("comment");
        w.gh.fail(PATCH_COMMENT, 500, None, 100);
        assert!(progress.finish("Done").await.is_err());
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_progress_comment_is_found_again_after_a_restart() {
    within(async {
        let w = world().await;
        w.gh.post_comment(&w.repo, w.issue, "alice", "/backspace go");
        let first = ProgressComment::start(
            w.client.clone(),
            w.issue,
            "run-7",
            "Agent turn 3",
            progress_config(),
        )
        .await
        .expect("comment");
        let id = first.comment_id();
        first.flush().await.expect("flushed");
        drop(first);

        // A new process: a new client, the same run id.
        let app = app_for(&w.gh);
        let client = app.repo(w.client.installation(), w.repo.clone());
        let again = ProgressComment::start(client, w.issue, "run-7", "Resumed", progress_config())
            .await
            .expect("comment");
        assert_eq!(again.comment_id(), id);
        again.finish("Finished").await.expect("final");
        let comments = w.gh.comments(&w.repo, w.issue);
        assert_eq!(comments.len(), 2, "no second progress comment");
        assert_eq!(comments[1].body, with_marker("Finished", "run-7"));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- git over the fake's smart HTTP ---

async fn run_git(dir: &Path, args: &[&str], auth: Option<&SecretString>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_AUTHOR_NAME", "Backspace")
        .env("GIT_AUTHOR_EMAIL", "backspace@example.invalid")
        .env("GIT_COMMITTER_NAME", "Backspace")
        .env("GIT_COMMITTER_EMAIL", "backspace@example.invalid")
        .kill_on_drop(true);
    if let Some(token) = auth {
        let header = git_basic_auth_header(token);
        cmd.arg("-c").arg(format!(
            "http.extraHeader=Authorization: {}",
            header.expose_secret()
        ));
    }
    cmd.args(args).output().await.expect("git runs")
}

async fn clone_and_commit(
    gh: &FakeGithub,
    repo: &RepoName,
    token: Option<&SecretString>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_git(
        dir.path(),
        &["clone", "-q", &gh.clone_url(repo), "work"],
        token,
    )
    .await;
    assert!(
        out.status.success(),
        "clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let work = dir.path().join("work");
    std::fs::write(work.join("NEW.md"), "new\n").expect("write");
    for args in [
        vec!["checkout", "-q", "-b", "backspace/run-1"],
        vec!["add", "-A"],
        vec!["commit", "-q", "-m", "Add NEW.md"],
    ] {
        let out = run_git(&work, &args, None).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

#[tokio::test]
async fn git_clone_and_push_with_an_installation_token_succeed() {
    within(async {
        let w = world().await;
        w.gh.set_private(&w.repo, true);
        let token = w.client.git_token().await.expect("token");
        let dir = clone_and_commit(&w.gh, &w.repo, Some(&token)).await;
        let work = dir.path().join("work");
        assert_eq!(
            std::fs::read_to_string(work.join("README.md")).expect("cloned"),
            "# Hello\n"
        );
        let out = run_git(
            &work,
            &["push", "-q", "origin", "backspace/run-1"],
            Some(&token),
        )
        .await;
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            w.gh.file_on_branch(&w.repo, "backspace/run-1", "NEW.md")
                .as_deref(),
            Some("new\n")
        );
        // The token never landed in the clone's config.
        let config = std::fs::read_to_string(work.join(".git/config")).expect("config");
        assert!(!config.contains(token.expose_secret()));
        assert!(w.gh.requests_to("git push").iter().any(|r| r.status == 200));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn git_push_without_a_token_is_refused() {
    within(async {
        let w = world().await;
        // A public repository clones anonymously, but pushing needs a token.
        let dir = clone_and_commit(&w.gh, &w.repo, None).await;
        let work = dir.path().join("work");
        let out = run_git(&work, &["push", "-q", "origin", "backspace/run-1"], None).await;
        assert!(!out.status.success());
        assert_eq!(w.gh.branch_sha(&w.repo, "backspace/run-1"), None);

        // A private repository does not even clone.
        w.gh.set_private(&w.repo, true);
        let dir = tempfile::tempdir().expect("tmp");
        let out = run_git(
            dir.path(),
            &["clone", "-q", &w.gh.clone_url(&w.repo), "x"],
            None,
        )
        .await;
        assert!(!out.status.success());
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn git_push_with_an_expired_token_is_refused() {
    within(async {
        let w = world().await;
        let token = w.client.git_token().await.expect("token");
        let dir = clone_and_commit(&w.gh, &w.repo, Some(&token)).await;
        w.gh.expire_token(token.expose_secret());
        let out = run_git(
            &dir.path().join("work"),
            &["push", "-q", "origin", "backspace/run-1"],
            Some(&token),
        )
        .await;
        assert!(!out.status.success());
        assert_eq!(w.gh.branch_sha(&w.repo, "backspace/run-1"), None);

        // A token for another repository does not push here either.
        let other = w.gh.repo_with_files("octo/other", &[("a", "b")]);
        let wrong = SecretString::from(w.gh.issue_token(&other));
        let out = run_git(
            &dir.path().join("work"),
            &["push", "-q", "origin", "backspace/run-1"],
            Some(&wrong),
        )
        .await;
        assert!(!out.status.success());
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

// --- checks, users, reviews ---

#[tokio::test]
async fn a_check_run_started_again_for_the_same_run_is_the_same_check_run() {
    within(async {
        let w = world().await;
        let sha = w.gh.branch_sha(&w.repo, "main").expect("main");
        let new = NewCheckRun {
            head_sha: &sha,
            details_url: Some("https://bs.example/runs/r1"),
            external_id: "r1",
            output: CheckOutput {
                title: "working".into(),
                summary: "…".into(),
                text: None,
            },
        };
        let first = w.client.start_check_run(&new).await.expect("start");
        let again = w.client.start_check_run(&new).await.expect("start again");
        assert_eq!(first.id, again.id);
        assert_eq!(first.status, "in_progress");
        let output = CheckOutput {
            title: "npm test passed".into(),
            summary: "ok".into(),
            text: Some("12 passing".into()),
        };
        let done = w
            .client
            .complete_check_run(first.id, CheckConclusion::Success, &output)
            .await
            .expect("complete");
        assert_eq!(
            (done.status.as_str(), done.conclusion.as_deref()),
            ("completed", Some("success"))
        );
        let runs = w.gh.check_runs(&w.repo);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].details_url.as_deref(),
            Some("https://bs.example/runs/r1")
        );
        // A commit GitHub does not have is refused as GitHub does.
        let missing = NewCheckRun {
            head_sha: "0123456789012345678901234567890123456789",
            ..new
        };
        let e = w
            .client
            .start_check_run(&missing)
            .await
            .expect_err("no such commit");
        assert_eq!(e.status(), Some(422));
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn the_bot_user_is_asked_for_once_and_has_its_own_id() {
    within(async {
        let w = world().await;
        let bot = w.app.bot_user(&w.client).await.expect("bot user");
        let again = w.app.bot_user(&w.client).await.expect("bot user");
        assert_eq!(bot, again);
        assert_eq!(
            (bot.login.as_str(), bot.id),
            ("backspace-test[bot]", BOT_USER_ID)
        );
        assert_ne!(bot.id, w.app.app_id());
        assert_eq!(w.gh.requests_to("GET /users/{username}").len(), 1);
        w.gh.assert_requests_fit_openapi();
    })
    .await
}

#[tokio::test]
async fn a_reviewer_must_be_a_collaborator_and_a_reviews_comments_are_listed() {
    within(async {
        let w = world().await;
        let branch_files = [("README.md", "# Hello again\n")];
        w.gh.push_branch(&w.repo, "main", "feature", &branch_files);
        let pr = w.gh.open_pull(
            &w.repo,
            "backspace-test[bot]",
            &w.repo,
            "feature",
            "main",
            "Change",
        );
        w.client
            .request_reviewers(pr, &["alice"])
            .await
            .expect("alice may review");
        let stranger = w.client.request_reviewers(pr, &["mallory"]).await;
        assert_eq!(
            stranger.expect_err("not a collaborator").status(),
            Some(422)
        );
        let pulls = w.gh.pulls(&w.repo);
        assert_eq!(
            pulls
                .iter()
                .find(|p| p.number == pr.0)
                .map(|p| p.requested_reviewers.clone()),
            Some(vec!["alice".to_string()])
        );
        let (review, ids) = w.gh.submit_review(
            &w.repo,
            pr,
            "alice",
            "/backspace fix",
            &[("README.md", 1, "say hi")],
        );
        let comments = w
            .client
            .review_comments(pr, review)
            .await
            .expect("comments");
        assert_eq!(comments.len(), 1);
        assert_eq!(
            (comments[0].id, comments[0].path.as_str(), comments[0].line),
            (ids[0], "README.md", Some(1))
        );
        assert_eq!(comments[0].body, "say hi");
        w.gh.assert_requests_fit_openapi();
    })
    .await
}
