//! `backspace doctor` as an operator runs it: the binary, with the settings `serve` reads,
//! against the fake GitHub and the fake Messages API, the real Docker engine (also over TLS)
//! and a real SQLite file. All good is exit 0; each broken part is a FAIL line that names it
//! and how to fix it, and exit 1.

mod support;

use std::path::Path;
use std::time::Duration;

use backspace::store::Store;
use secrecy::{ExposeSecret, SecretString};
use support::docker::TEST_IMAGE;
use support::docker_tls::TlsEngine;
use support::fake_anthropic::FakeAnthropic;
use support::fake_github::{self, FakeGithub};

const MODEL_KEY: &str = "sk-ant-doctor-test";

/// A fake GitHub with the app, a fake Messages API, a migrated SQLite store in `dir`.
struct World {
    gh: FakeGithub,
    model: FakeAnthropic,
    dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let url = SecretString::from(format!("sqlite://{}", db_path(dir.path())));
        Store::connect(&url).await.expect("store").close().await;
        World {
            gh: FakeGithub::start().await,
            model: FakeAnthropic::start(vec![]).await,
            dir,
        }
    }

    /// What a set-up operator has: every setting right.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("APP_ID", self.gh.app_id().to_string()),
            (
                "PRIVATE_KEY",
                fake_github::app_private_key().expose_secret().to_owned(),
            ),
            ("WEBHOOK_SECRET", fake_github::WEBHOOK_SECRET.to_owned()),
            ("GITHUB_API_URL", self.gh.api_url().to_string()),
            ("ANTHROPIC_BASE_URL", self.model.base_url.clone()),
            ("ANTHROPIC_API_KEY", MODEL_KEY.to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", db_path(self.dir.path())),
            ),
            ("BACKSPACE_SANDBOX_IMAGE", TEST_IMAGE.to_owned()),
            ("PUBLIC_URL", "https://bot.example.test".to_owned()),
        ]
    }

    /// Runs `backspace doctor` with `env` (and nothing else from this process but PATH and
    /// HOME) in the world's directory; returns the exit code and what it printed.
    async fn doctor(&self, env: &[(&str, String)]) -> (i32, String) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_backspace"));
        cmd.arg("doctor")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("doctor finished in time")
            .expect("run doctor");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

fn db_path(dir: &Path) -> String {
    dir.join("backspace.db").display().to_string()
}

fn with(
    env: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.into_iter().filter(|(k, _)| *k != key).collect();
    env.push((key, value.to_owned()));
    env
}

fn without(env: Vec<(&'static str, String)>, key: &str) -> Vec<(&'static str, String)> {
    env.into_iter().filter(|(k, _)| *k != key).collect()
}

/// The line of check `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        // "ok    " or "FAIL  ", then the name in a column of 13.
        .find(|l| l.get(6..19).map(str::trim_end) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in\n{report}"))
}

/// Skips (None) outside CI when Docker or the test image is missing.
async fn docker() -> Option<()> {
    support::docker::sandboxes().await.map(|_| ())
}

#[tokio::test]
async fn a_good_configuration_passes_every_check() {
    if docker().await.is_none() {
        return;
    }
    let w = World::new().await;
    let (code, report) = w.doctor(&w.env()).await;
    assert_eq!(code, 0, "{report}");
    for name in [
        "settings",
        "credentials",
        "store",
        "docker engine",
        "sandbox image",
        "sandbox",
        "egress",
        "model",
        "PUBLIC_URL",
    ] {
        assert!(line(&report, name).starts_with("ok "), "{name}:\n{report}");
    }
    assert!(
        line(&report, "egress").contains("no network for any run"),
        "{report}"
    );
    assert!(
        line(&report, "credentials").contains("\"backspace-test\""),
        "{report}"
    );
    assert!(line(&report, "store").contains("all current"), "{report}");
    assert!(line(&report, "sandbox").contains("no network"), "{report}");
    assert!(
        !report.contains(fake_github::WEBHOOK_SECRET) && !report.contains(MODEL_KEY),
        "no secret is printed:\n{report}"
    );
    // The one sandbox it started is gone.
    let run_id = line(&report, "sandbox")
        .split_whitespace()
        .find(|w| w.starts_with("doctor-"))
        .expect("the sandbox's run id")
        .to_owned();
    let sandboxes = support::docker::sandboxes().await.expect("docker");
    assert_eq!(
        sandboxes.containers_of_run(&run_id).await.expect("list"),
        Vec::<String>::new(),
        "doctor left its sandbox"
    );
}

#[tokio::test]
async fn the_operators_egress_hosts_are_shown_and_a_malformed_list_stops_doctor() {
    if docker().await.is_none() {
        return;
    }
    let w = World::new().await;
    let env = with(w.env(), "BACKSPACE_EGRESS_ALLOW", "pypi.org, *.npmjs.org");
    let (code, report) = w.doctor(&env).await;
    assert_eq!(code, 0, "{report}");
    let l = line(&report, "egress");
    assert!(l.starts_with("ok "), "{report}");
    assert!(l.contains("pypi.org") && l.contains("*.npmjs.org"), "{l}");
    // A list `serve` would refuse stops doctor the same way, before any check, naming it.
    let env = with(w.env(), "BACKSPACE_EGRESS_ALLOW", "https://pypi.org/simple");
    let (code, report) = w.doctor(&env).await;
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("--egress-allow"), "{report}");
    assert!(!report.contains("ok    "), "no check ran:\n{report}");
}

#[tokio::test]
async fn a_missing_sandbox_image_fails_and_says_how_to_build_it() {
    if docker().await.is_none() {
        return;
    }
    let w = World::new().await;
    let env = with(
        w.env(),
        "BACKSPACE_SANDBOX_IMAGE",
        "backspace-sandbox:not-built",
    );
    let (code, report) = w.doctor(&env).await;
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "sandbox image");
    assert!(l.starts_with("FAIL"), "{report}");
    assert!(
        l.contains("backspace-sandbox:not-built is not on the Docker engine")
            && l.contains("docker build -t backspace-sandbox:not-built sandbox/"),
        "{l}"
    );
    assert!(line(&report, "credentials").starts_with("ok "), "{report}");
}

#[tokio::test]
async fn a_missing_webhook_secret_fails_naming_it() {
    let w = World::new().await;
    let (code, report) = w.doctor(&without(w.env(), "WEBHOOK_SECRET")).await;
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "credentials");
    assert!(
        l.starts_with("FAIL") && l.contains("missing WEBHOOK_SECRET"),
        "{l}"
    );
    assert!(l.contains("/setup"), "the fix: {l}");
}

#[tokio::test]
async fn a_rejected_model_key_fails_naming_the_key() {
    let w = World::new().await;
    w.model.revoke_key(MODEL_KEY);
    let (code, report) = w.doctor(&w.env()).await;
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "model");
    assert!(
        l.starts_with("FAIL")
            && l.contains("Anthropic refused ANTHROPIC_API_KEY")
            && l.contains("authentication_error: invalid x-api-key"),
        "{l}"
    );
    // The check asked the Models API, which costs nothing, not the Messages API.
    assert!(w.model.requests().is_empty(), "no message was sent");
}

#[tokio::test]
async fn an_unknown_model_and_a_refused_jwt_are_named() {
    let w = World::new().await;
    let env = with(w.env(), "BACKSPACE_MODEL", "gpt-nope");
    // Another app's id: GitHub refuses the JWT.
    let env = with(env, "APP_ID", &(w.gh.app_id() + 1).to_string());
    let (code, report) = w.doctor(&env).await;
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "model").contains("BACKSPACE_MODEL gpt-nope"),
        "{report}"
    );
    let l = line(&report, "credentials");
    assert!(l.starts_with("FAIL") && l.contains("GET /app"), "{l}");
}

#[tokio::test]
async fn localhost_public_url_fails_once_the_app_is_set_up() {
    let w = World::new().await;
    let (code, report) = w.doctor(&without(w.env(), "PUBLIC_URL")).await;
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "PUBLIC_URL");
    assert!(
        l.starts_with("FAIL") && l.contains("http://localhost:3000/") && l.contains("webhooks"),
        "{l}"
    );
}

#[tokio::test]
async fn a_store_not_created_yet_is_fine_and_a_bad_private_key_is_named() {
    let w = World::new().await;
    let env = with(
        w.env(),
        "DATABASE_URL",
        &format!("sqlite://{}", w.dir.path().join("new.db").display()),
    );
    let env = with(env, "PRIVATE_KEY", "not a key at all");
    let (code, report) = w.doctor(&env).await;
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "store").contains("does not exist yet"),
        "{report}"
    );
    assert!(
        !w.dir.path().join("new.db").exists(),
        "doctor creates nothing"
    );
    let l = line(&report, "credentials");
    assert!(
        l.starts_with("FAIL") && l.contains("PRIVATE_KEY is not a PEM private key"),
        "{l}"
    );
}

#[tokio::test]
async fn the_engine_over_tls_is_read_from_the_docker_variables() {
    if docker().await.is_none() {
        return;
    }
    let Some(engine) = TlsEngine::start() else {
        return;
    };
    let w = World::new().await;
    let tls = |certs: &Path| {
        let env = with(w.env(), "DOCKER_HOST", &engine.docker_host());
        let env = with(env, "DOCKER_TLS_VERIFY", "1");
        with(env, "DOCKER_CERT_PATH", &certs.display().to_string())
    };
    let (code, report) = w.doctor(&tls(&engine.good_certs())).await;
    assert_eq!(code, 0, "{report}");
    let address = engine.docker_host().replace("tcp://", "https://");
    assert!(
        line(&report, "docker engine").contains(&address),
        "{report}"
    );
    assert!(line(&report, "sandbox").starts_with("ok "), "{report}");

    let (code, report) = w.doctor(&tls(&engine.untrusted_client_certs())).await;
    assert_eq!(code, 1, "{report}");
    let l = line(&report, "docker engine");
    assert!(
        l.starts_with("FAIL") && l.contains("refused this client's certificate"),
        "{l}"
    );
}

#[tokio::test]
async fn a_dotenv_file_with_a_base64_key_is_read_as_probot_reads_it() {
    use base64::Engine as _;
    let w = World::new().await;
    let key = base64::engine::general_purpose::STANDARD
        .encode(fake_github::app_private_key().expose_secret());
    // The environment wins over the file: its wrong model id is not used.
    std::fs::write(
        w.dir.path().join(".env"),
        format!(
            "# written by hand\nPRIVATE_KEY={key}\nWEBHOOK_SECRET={}\nBACKSPACE_MODEL=from-the-file\n",
            fake_github::WEBHOOK_SECRET
        ),
    )
    .unwrap();
    let env = without(without(w.env(), "PRIVATE_KEY"), "WEBHOOK_SECRET");
    let env = with(env, "BACKSPACE_MODEL", "claude-sonnet-4-5");
    let (_, report) = w.doctor(&env).await;
    assert!(line(&report, "credentials").starts_with("ok "), "{report}");
    assert!(line(&report, "model").starts_with("ok "), "{report}");
}
