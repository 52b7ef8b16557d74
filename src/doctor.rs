//! `backspace doctor`: with the settings `serve` reads, checks each part a run needs and prints
//! one line per check, `ok` or `FAIL` with what is wrong and how to fix it:
//! the settings themselves, the GitHub App's credentials (GitHub accepts a JWT signed with the
//! key: `GET /app`, which names the app), the job store (reachable, its migrations the ones this
//! build knows), the Docker engine, the sandbox image (present; a sandbox from it starts as a
//! non-root user with no network), the model (the key is accepted: `GET /v1/models/{model}`,
//! which costs nothing) and `PUBLIC_URL` (not localhost once the app is set up, since GitHub
//! cannot deliver webhooks there). It changes nothing: the store is opened read-only and the one
//! sandbox it starts is removed. Exit code 0 when every check passes, 1 otherwise.
//!
//! The verdicts are pure functions of what each part answered, tested without servers; `serve`
//! prints [`startup_warnings`] at start for the traps a newcomer meets first.

use std::time::Duration;

use secrecy::ExposeSecret;
use url::Url;

use crate::config::{AppCredentials, MissingCredentials, ModelArgs, ServeArgs};
use crate::sandbox::{DockerEndpoint, SandboxSettings, Sandboxes};

/// How long one part may take to answer.
const PART_TIMEOUT: Duration = Duration::from_secs(30);
/// The Messages API version Backspace speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok(String),
    Fail { problem: String, fix: String },
}

impl Verdict {
    fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Verdict {
        Verdict::Fail {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.verdict {
            Verdict::Ok(what) => write!(f, "ok    {:<13} {what}", self.name),
            Verdict::Fail { problem, fix } => {
                write!(f, "FAIL  {:<13} {problem} — fix: {fix}", self.name)
            }
        }
    }
}

/// Runs the checks, printing each line as it is known; returns the exit code.
pub async fn main(args: ServeArgs) -> u8 {
    let mut failed = 0;
    for check in checks(&args).await {
        if !check.verdict.passed() {
            failed += 1;
        }
        println!("{check}");
    }
    if failed == 0 {
        println!("all checks passed: `backspace serve` has what a run needs");
        0
    } else {
        println!("{failed} check(s) failed");
        1
    }
}

/// Every check, in the order a run meets the parts.
pub async fn checks(args: &ServeArgs) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(Check {
        name: "settings",
        verdict: match args.validate() {
            Ok(()) => Verdict::Ok("the settings parse".into()),
            Err(e) => Verdict::fail(e.to_string(), "correct that setting"),
        },
    });
    let credentials = credentials(args);
    let set_up = matches!(credentials, Ok(Ok(_)));
    out.push(Check {
        name: "credentials",
        verdict: check_credentials(args, credentials).await,
    });
    out.push(Check {
        name: "store",
        verdict: check_store(args.database_url.expose_secret()).await,
    });
    let (engine, sandbox) = check_docker(args).await;
    out.push(Check {
        name: "docker engine",
        verdict: engine,
    });
    out.extend(sandbox);
    out.push(Check {
        name: "egress",
        verdict: egress_verdict(&args.egress_allow),
    });
    out.push(Check {
        name: "model",
        verdict: check_model(&args.model).await,
    });
    out.push(Check {
        name: "PUBLIC_URL",
        verdict: public_url_verdict(&args.public_url(), set_up),
    });
    out
}

type Credentials = Result<Result<AppCredentials, MissingCredentials>, String>;

/// As `serve` finds them: the environment, else the file `/setup` saved.
fn credentials(args: &ServeArgs) -> Credentials {
    match args.app_credentials().map_err(|e| e.to_string())? {
        Ok(c) => Ok(Ok(c)),
        Err(missing) => {
            match crate::setup_store::load_saved_credentials(&args.credentials_path()) {
                Ok(Some(saved)) => Ok(Ok(saved)),
                Ok(None) => Ok(Err(missing)),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

const SETUP_FIX: &str =
    "take them from the GitHub App's settings page, or run `backspace serve` and register the app at the /setup link it prints";

async fn check_credentials(args: &ServeArgs, credentials: Credentials) -> Verdict {
    let creds = match credentials {
        Err(e) => return Verdict::fail(e, "correct the private key or the credentials file"),
        Ok(Err(missing)) => return Verdict::fail(format!("missing {missing}"), SETUP_FIX),
        Ok(Ok(c)) => c,
    };
    let app = match crate::github::GithubApp::new(crate::github::GithubAppConfig::new(
        creds.app_id,
        creds.private_key.clone(),
        args.github_api_url.clone(),
    )) {
        Ok(app) => app,
        Err(e) => {
            return Verdict::fail(
                format!("the private key cannot sign a JWT: {e}"),
                "PRIVATE_KEY or PRIVATE_KEY_PATH must hold the app's .pem (PEM or base64)",
            )
        }
    };
    match tokio::time::timeout(PART_TIMEOUT, app.bot_login()).await {
        Ok(Ok(login)) => Verdict::Ok(format!(
            "GitHub accepts the app's JWT: app {:?} (APP_ID {})",
            login.trim_end_matches("[bot]"),
            creds.app_id
        )),
        Ok(Err(e)) => Verdict::fail(
            format!("GET /app with the app's JWT failed: {e}"),
            "APP_ID and the private key must belong to the same app (a key deleted on GitHub stops working); GITHUB_API_URL must be the API of that GitHub",
        ),
        Err(_) => Verdict::fail(
            format!("GitHub did not answer GET /app within {PART_TIMEOUT:?}"),
            "check GITHUB_API_URL and the network",
        ),
    }
}

/// The store, opened read-only: it answers, and its migrations are those this build knows.
async fn check_store(url: &str) -> Verdict {
    let known: Vec<(i64, Vec<u8>)> = crate::store::migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    let connect_url = match url.strip_prefix("sqlite:") {
        Some(rest) => {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Verdict::Ok("SQLite in memory (nothing kept across restarts)".into());
            }
            if !std::path::Path::new(path).exists() {
                return Verdict::Ok(format!(
                    "the SQLite file {path} does not exist yet: serve creates it and applies {} migration(s)",
                    known.len()
                ));
            }
            format!("sqlite://{path}?mode=ro")
        }
        None => url.to_owned(),
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&connect_url)
        .await;
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            return Verdict::fail(
                format!("cannot open the store: {e}"),
                "check DATABASE_URL and that the database server runs",
            )
        }
    };
    let rows: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(&pool)
            .await;
    pool.close().await;
    let applied = match rows {
        Ok(r) => r,
        // No table: a database that serve never opened.
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => vec![],
        Err(e) => {
            return Verdict::fail(
                format!("the store answered, but not to reading its migrations: {e}"),
                "check that DATABASE_URL is Backspace's database",
            )
        }
    };
    migrations_verdict(&known, &applied)
}

/// Pure: whether the applied migrations are the known ones.
fn migrations_verdict(known: &[(i64, Vec<u8>)], applied: &[(i64, Vec<u8>)]) -> Verdict {
    let unknown: Vec<i64> = applied
        .iter()
        .filter(|(v, _)| !known.iter().any(|(k, _)| k == v))
        .map(|(v, _)| *v)
        .collect();
    if !unknown.is_empty() {
        return Verdict::fail(
            format!("the store has migrations this build does not know ({unknown:?}): a newer Backspace migrated it"),
            "run the same (or a newer) version of Backspace as the other instances",
        );
    }
    let changed: Vec<i64> = applied
        .iter()
        .filter(|(v, sum)| known.iter().any(|(k, s)| k == v && s != sum))
        .map(|(v, _)| *v)
        .collect();
    if !changed.is_empty() {
        return Verdict::fail(
            format!("migrations {changed:?} were applied from different files than this build's"),
            "restore the store from a backup made by this version, or start from a new one",
        );
    }
    let pending = known.len() - applied.len().min(known.len());
    if pending > 0 {
        return Verdict::fail(
            format!("{pending} migration(s) of this build are not applied yet"),
            "start `backspace serve` once: it applies them",
        );
    }
    Verdict::Ok(format!(
        "reachable, {} migration(s), all current",
        known.len()
    ))
}

/// The engine, then the image and a sandbox started from it.
async fn check_docker(args: &ServeArgs) -> (Verdict, Vec<Check>) {
    const ENGINE_FIX: &str = "start the Docker engine, or set DOCKER_HOST (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for an engine over TLS)";
    let endpoint = match DockerEndpoint::from_env() {
        Ok(e) => e,
        Err(e) => return (Verdict::fail(e.to_string(), ENGINE_FIX), vec![]),
    };
    let settings = SandboxSettings {
        image: args.sandbox_image.clone(),
        instance_id: crate::sandbox::new_instance_id(),
        ..SandboxSettings::default()
    };
    let connected =
        tokio::time::timeout(PART_TIMEOUT, Sandboxes::connect_to(&endpoint, settings)).await;
    let sandboxes = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (Verdict::fail(e.to_string(), ENGINE_FIX), vec![]),
        Err(_) => {
            return (
                Verdict::fail(
                    format!(
                        "{} did not answer within {PART_TIMEOUT:?}",
                        endpoint.address()
                    ),
                    ENGINE_FIX,
                ),
                vec![],
            )
        }
    };
    let engine = Verdict::Ok(format!("{} answers", endpoint.address()));
    let image = &args.sandbox_image;
    let present = match sandboxes.image_present().await {
        Ok(p) => p,
        Err(e) => {
            let v = Verdict::fail(e.to_string(), ENGINE_FIX);
            return (engine, vec![image_check(v)]);
        }
    };
    if !present {
        let v = Verdict::fail(
            format!("{image} is not on the Docker engine (nothing is pulled)"),
            image_fix(image),
        );
        return (engine, vec![image_check(v)]);
    }
    let started = image_check(Verdict::Ok(format!("{image} is present")));
    (engine, vec![started, check_sandbox(&sandboxes).await])
}

fn image_check(verdict: Verdict) -> Check {
    Check {
        name: "sandbox image",
        verdict,
    }
}

/// How to get `image` onto the engine.
pub fn image_fix(image: &str) -> String {
    if image == "backspace-sandbox:test" {
        "scripts/build-test-image.sh builds it without a registry".into()
    } else {
        format!("docker build -t {image} sandbox/ (or point BACKSPACE_SANDBOX_IMAGE at an image the engine has)")
    }
}

/// A sandbox starts from the image, as a run's does; inside, it is not root and has no network.
async fn check_sandbox(sandboxes: &Sandboxes) -> Check {
    let verdict = async {
        let empty = tempfile::tempdir().map_err(|e| e.to_string())?;
        let run_id = format!("doctor-{}", uuid::Uuid::new_v4().simple());
        let sandbox = sandboxes
            .create(&run_id, empty.path())
            .await
            .map_err(|e| e.to_string())?;
        let out = sandbox
            .exec(sandbox.command("id -u; ls /sys/class/net"))
            .await;
        let removed = sandbox.destroy().await;
        let out = out.map_err(|e| e.to_string())?;
        removed.map_err(|e| format!("{run_id} ran but could not be removed: {e}"))?;
        if !out.success() {
            return Err(format!(
                "`id -u; ls /sys/class/net` failed in the sandbox ({}, exit {}): {}",
                out.outcome,
                out.exit_code,
                out.stderr.trim()
            ));
        }
        Ok(sandbox_verdict(&out.stdout, &run_id))
    }
    .await;
    Check {
        name: "sandbox",
        verdict: verdict.unwrap_or_else(|e| {
            Verdict::fail(
                format!("a sandbox could not start: {e}"),
                "check the engine's log; the image needs a shell (sh), `id` and `ls`",
            )
        }),
    }
}

/// Pure: the verdict on sandbox `run_id` from what `id -u; ls /sys/class/net` printed in it.
fn sandbox_verdict(stdout: &str, run_id: &str) -> Verdict {
    let mut lines = stdout.split_whitespace();
    let uid = lines.next().unwrap_or_default().to_owned();
    let interfaces: Vec<&str> = lines.filter(|i| *i != "lo").collect();
    if uid == "0" || uid.is_empty() {
        return Verdict::fail(
            format!("the sandbox runs as uid {uid:?}, not as a non-root user"),
            "build the image from sandbox/Dockerfile (its user `agent`, uid 1000)",
        );
    }
    if !interfaces.is_empty() {
        return Verdict::fail(
            format!("the sandbox has network interfaces {interfaces:?}"),
            "this build's sandboxes must start with no network: report it",
        );
    }
    Verdict::Ok(format!(
        "starts as uid {uid} with no network (loopback only); {run_id} removed"
    ))
}

/// Pure: what the agent's network may be, from `BACKSPACE_EGRESS_ALLOW` (a value that does not
/// parse stops `doctor` before any check, as it stops `serve`, naming the setting).
fn egress_verdict(allow: &crate::egress::Allowlist) -> Verdict {
    if allow.is_empty() {
        Verdict::Ok(
            "no network for any run (BACKSPACE_EGRESS_ALLOW is empty): a repository's network.allow is refused"
                .into(),
        )
    } else {
        Verdict::Ok(format!(
            "runs may reach what a repository's network.allow names within {allow} (BACKSPACE_EGRESS_ALLOW), through the egress proxy"
        ))
    }
}

async fn check_model(m: &ModelArgs) -> Verdict {
    if let Some(key) = &m.anthropic_api_key {
        let url = format!(
            "{}/v1/models/{}",
            m.anthropic_base_url.as_str().trim_end_matches('/'),
            m.model_id
        );
        let answer = reqwest::Client::new()
            .get(&url)
            .header("x-api-key", key.expose_secret())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .timeout(PART_TIMEOUT)
            .send()
            .await;
        return match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                model_verdict(&m.model_id, status, &body)
            }
            Err(e) => Verdict::fail(
                format!(
                    "the Messages API at {} did not answer: {e}",
                    m.anthropic_base_url
                ),
                "check ANTHROPIC_BASE_URL and the network",
            ),
        };
    }
    if let Some(base) = &m.openai_base_url {
        let url = format!("{}/models", base.as_str().trim_end_matches('/'));
        let mut req = reqwest::Client::new().get(&url).timeout(PART_TIMEOUT);
        if let Some(k) = &m.openai_api_key {
            req = req.bearer_auth(k.expose_secret());
        }
        return match req.send().await {
            Ok(r) if r.status().is_success() => Verdict::Ok(format!(
                "the OpenAI-compatible API at {base} accepts the key"
            )),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Verdict::fail(
                format!(
                    "the OpenAI-compatible API at {base} refused OPENAI_API_KEY ({})",
                    r.status()
                ),
                "set OPENAI_API_KEY to a key that provider accepts",
            ),
            Ok(r) => Verdict::fail(
                format!("GET {url} answered {}", r.status()),
                "check OPENAI_BASE_URL (it ends before /chat/completions, e.g. …/v1)",
            ),
            Err(e) => Verdict::fail(
                format!("the OpenAI-compatible API at {base} did not answer: {e}"),
                "check OPENAI_BASE_URL and the network",
            ),
        };
    }
    Verdict::fail(
        "no model is configured",
        "set ANTHROPIC_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible provider)",
    )
}

/// Pure: the verdict on Anthropic's answer to `GET /v1/models/{model}`.
fn model_verdict(model: &str, status: u16, body: &str) -> Verdict {
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{}: {}",
                e.get("type")?.as_str()?,
                e.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        200..=299 => Verdict::Ok(format!(
            "ANTHROPIC_API_KEY is accepted; model {model} is available"
        )),
        401 => Verdict::fail(
            format!("Anthropic refused ANTHROPIC_API_KEY ({error})"),
            "set ANTHROPIC_API_KEY to a valid key from the Anthropic console",
        ),
        403 => Verdict::fail(
            format!("the key may not use the Models API ({error})"),
            "use a key of a workspace with API access",
        ),
        404 => Verdict::fail(
            format!("BACKSPACE_MODEL {model} is not a model this key can use ({error})"),
            "set BACKSPACE_MODEL to a current model id, e.g. claude-sonnet-4-5",
        ),
        _ => Verdict::fail(
            format!("Anthropic answered {status} ({error})"),
            "try again later; check ANTHROPIC_BASE_URL",
        ),
    }
}

/// Whether GitHub could not deliver to `url`: a loopback or unspecified host.
pub fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => true,
    }
}

const PUBLIC_URL_FIX: &str = "set PUBLIC_URL to the https address GitHub reaches this server at (for a laptop, a tunnel's address)";

/// Pure: `PUBLIC_URL` is fine unless the app is set up and it is local.
fn public_url_verdict(url: &Url, set_up: bool) -> Verdict {
    match (is_local(url), set_up) {
        (true, true) => Verdict::fail(
            format!("{url} is this machine: GitHub cannot deliver webhooks there and links in comments lead nowhere"),
            PUBLIC_URL_FIX,
        ),
        (true, false) => Verdict::Ok(format!(
            "{url} (fine for /setup in a browser here; an app registered with it gets no webhooks)"
        )),
        (false, _) => Verdict::Ok(url.to_string()),
    }
}

/// What `serve` warns about at start: a local `PUBLIC_URL` with credentials, no model.
/// (A missing sandbox image is warned about once the engine answers.)
pub fn startup_warnings(args: &ServeArgs, set_up: bool) -> Vec<String> {
    let mut out = Vec::new();
    let url = args.public_url();
    if is_local(&url) {
        out.push(if set_up {
            format!("PUBLIC_URL is {url}: GitHub cannot deliver webhooks to this machine's own address, and links in comments will not open; {PUBLIC_URL_FIX}")
        } else {
            format!("PUBLIC_URL is {url}: an app registered through /setup now would send its webhooks there, where GitHub cannot deliver; {PUBLIC_URL_FIX} before registering")
        });
    }
    if args.model.anthropic_api_key.is_none() && args.model.openai_base_url.is_none() {
        out.push("no model is configured: runs will fail until ANTHROPIC_API_KEY (or OPENAI_BASE_URL) is set".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(v: &Verdict) -> (&str, &str) {
        match v {
            Verdict::Fail { problem, fix } => (problem, fix),
            Verdict::Ok(w) => panic!("expected a failure, got ok: {w}"),
        }
    }

    #[test]
    fn a_refused_key_and_an_unknown_model_are_told_apart() {
        let bad_key = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        let v = model_verdict("claude-sonnet-4-5", 401, bad_key);
        let (problem, fix) = failed(&v);
        assert!(problem.contains("ANTHROPIC_API_KEY") && problem.contains("invalid x-api-key"));
        assert!(fix.contains("ANTHROPIC_API_KEY"));
        let unknown = r#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#;
        let v = model_verdict("x", 404, unknown);
        let (problem, _) = failed(&v);
        assert!(problem.contains("BACKSPACE_MODEL x"), "{problem}");
        assert!(model_verdict("m", 200, "{}").passed());
        let v = model_verdict("m", 502, "<html>");
        let (problem, _) = failed(&v);
        assert!(problem.contains("HTTP 502"), "{problem}");
    }

    #[test]
    fn a_sandbox_must_be_non_root_without_network() {
        assert!(sandbox_verdict("1000\nlo\n", "doctor-1").passed());
        assert!(failed(&sandbox_verdict("0\nlo\n", "d"))
            .0
            .contains("uid \"0\""));
        assert!(failed(&sandbox_verdict("1000\neth0\nlo\n", "d"))
            .0
            .contains("eth0"));
    }

    #[test]
    fn migrations_must_be_the_ones_this_build_knows() {
        let known = vec![(1, vec![1]), (2, vec![2])];
        assert!(migrations_verdict(&known, &known).passed());
        assert!(failed(&migrations_verdict(&known, &known[..1]))
            .0
            .contains("1 migration(s)"));
        let newer = vec![(1, vec![1]), (2, vec![2]), (3, vec![3])];
        assert!(failed(&migrations_verdict(&known, &newer))
            .0
            .contains("newer Backspace"));
        let edited = vec![(1, vec![9]), (2, vec![2])];
        assert!(failed(&migrations_verdict(&known, &edited))
            .0
            .contains("[1]"));
    }

    #[test]
    fn localhost_is_refused_once_the_app_is_set_up() {
        for local in [
            "http://localhost:3000",
            "http://127.0.0.1:3000",
            "http://[::1]/",
            "http://0.0.0.0:3000",
            "http://app.localhost",
        ] {
            let url = Url::parse(local).unwrap();
            assert!(is_local(&url), "{local}");
            assert!(!public_url_verdict(&url, true).passed(), "{local}");
            assert!(public_url_verdict(&url, false).passed(), "{local}");
        }
        let public = Url::parse("https://bot.example.com").unwrap();
        assert!(!is_local(&public));
        assert!(public_url_verdict(&public, true).passed());
    }

    #[test]
    fn a_line_names_the_check_and_the_fix() {
        let line = Check {
            name: "model",
            verdict: Verdict::fail("the key was refused", "set ANTHROPIC_API_KEY"),
        }
        .to_string();
        assert_eq!(
            line,
            "FAIL  model         the key was refused — fix: set ANTHROPIC_API_KEY"
        );
    }
}
