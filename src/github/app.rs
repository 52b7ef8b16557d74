//! The GitHub App as a client: built once per process from the app id and key, it signs app
//! JWTs, mints and caches installation tokens, knows the bot's own login, and hands out
//! [`RepoClient`]s for (installation, repository). Clones of it share the token cache, the
//! per-installation write pacers and the HTTP connection pool.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::jwt::AppKey;
use super::models::{InstallationId, IssueNumber, RepoName};
use super::pacing::{PacingLimits, WritePacer};
use super::permission::PermissionGate;
use super::repo::RepoClient;
use super::tokens::{parse_github_time, InstallationToken, TokenCache};
use super::transport::Transport;
use super::GithubError;
use crate::clock::unix_secs;
use crate::retry::RetryPolicy;

/// How to reach and authenticate as the app.
#[derive(Debug, Clone)]
pub struct GithubAppConfig {
    pub app_id: u64,
    /// The app's private key, PEM.
    pub private_key: SecretString,
    /// `GITHUB_API_URL`: `https://api.github.com`, an Enterprise `/api/v3`, or a test server.
    pub api_url: Url,
    pub retry: RetryPolicy,
    pub pacing: PacingLimits,
    pub gate: PermissionGate,
    pub user_agent: String,
}

impl GithubAppConfig {
    pub fn new(app_id: u64, private_key: SecretString, api_url: Url) -> Self {
        GithubAppConfig {
            app_id,
            private_key,
            api_url,
            retry: RetryPolicy::default(),
            pacing: PacingLimits::default(),
            gate: PermissionGate::default(),
            user_agent: format!("backspace/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The permissions every run's token asks for, and no more.
pub const RUN_PERMISSIONS: [(&str, &str); 5] = [
    ("checks", "write"),
    ("contents", "write"),
    ("issues", "write"),
    ("pull_requests", "write"),
    ("metadata", "read"),
];

/// Permissions a run can do without: an installation made before the app asked for them has
/// not granted them until its owner accepts, and GitHub refuses a token that asks for them.
/// Runs on such an installation get a token without them (and, for `checks`, no check run).
pub const OPTIONAL_PERMISSIONS: [&str; 1] = ["checks"];

fn run_permissions(with_optional: bool) -> serde_json::Value {
    RUN_PERMISSIONS
        .iter()
        .filter(|(k, _)| with_optional || !OPTIONAL_PERMISSIONS.contains(k))
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub(crate) struct Inner {
    pub app_id: u64,
    key: AppKey,
    pub transport: Transport,
    tokens: TokenCache,
    pacers: Mutex<HashMap<InstallationId, Arc<WritePacer>>>,
    pacing: PacingLimits,
    pub gate: PermissionGate,
    bot_login: tokio::sync::OnceCell<String>,
    /// The bot user and its id (`users.rs`).
    pub bot_user: tokio::sync::OnceCell<super::users::Account>,
    /// Issues with a denied-user reply being decided, so two denials at once post one reply.
    pub denial_locks: tokio::sync::Mutex<HashSet<(String, IssueNumber)>>,
}

/// The app client. Cheap to clone.
#[derive(Clone)]
pub struct GithubApp {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AppInfo {
    slug: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: SecretString,
    expires_at: String,
}

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
}

impl GithubApp {
    pub fn new(config: GithubAppConfig) -> Result<Self, GithubError> {
        let key = AppKey::from_pem(&config.private_key)?;
        let transport = Transport::new(config.api_url, config.retry, &config.user_agent)?;
        Ok(GithubApp {
            inner: Arc::new(Inner {
                app_id: config.app_id,
                key,
                transport,
                tokens: TokenCache::default(),
                pacers: Mutex::new(HashMap::new()),
                pacing: config.pacing,
                gate: config.gate,
                bot_login: tokio::sync::OnceCell::new(),
                bot_user: tokio::sync::OnceCell::new(),
                denial_locks: tokio::sync::Mutex::new(HashSet::new()),
            }),
        })
    }

    pub fn app_id(&self) -> u64 {
        self.inner.app_id
    }

    /// A fresh app JWT (for `/app/...` routes).
    pub fn jwt(&self) -> Result<SecretString, GithubError> {
        self.inner.key.sign(self.inner.app_id, unix_secs())
    }

    /// The client for one repository of one installation.
    pub fn repo(&self, installation: InstallationId, repo: RepoName) -> RepoClient {
        RepoClient::new(self.clone(), installation, repo)
    }

    /// The bot's own login, `<slug>[bot]`, from `GET /app` (asked once, then remembered).
    pub async fn bot_login(&self) -> Result<String, GithubError> {
        self.inner
            .bot_login
            .get_or_try_init(|| async {
                let url = self.inner.transport.url(&["app"])?;
                let jwt = self.jwt()?;
                let app: AppInfo = self
                    .inner
                    .transport
                    .send(Method::GET, &url, Some(&jwt), None)
                    .await?
                    .json()?;
                Ok(format!("{}[bot]", app.slug))
            })
            .await
            .cloned()
    }

    /// The installation that covers `repo` (`GET /repos/{owner}/{repo}/installation`), for runs
    /// that do not come from a webhook.
    pub async fn installation_for_repo(
        &self,
        repo: &RepoName,
    ) -> Result<InstallationId, GithubError> {
        let url = self
            .inner
            .transport
            .url(&["repos", &repo.owner, &repo.name, "installation"])?;
        let jwt = self.jwt()?;
        let answer: InstallationAnswer = self
            .inner
            .transport
            .send(Method::GET, &url, Some(&jwt), None)
            .await?
            .json()?;
        Ok(InstallationId(answer.id))
    }

    /// A token for `repo` only, with the permissions a run needs; cached, and replaced at least
    /// five minutes before it expires. Also the password for `git push` (user
    /// `x-access-token`).
    pub async fn installation_token(
        &self,
        installation: InstallationId,
        repo: &RepoName,
    ) -> Result<SecretString, GithubError> {
        let slot = self.inner.tokens.slot(installation, repo);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if token.is_fresh(unix_secs()) {
                return Ok(token.token.clone());
            }
        }
        let fresh = self.request_token(installation, repo).await?;
        let token = fresh.token.clone();
        // A token whose expiry could not be read is used once and not cached.
        *cached = (fresh.expires_at_unix > 0).then_some(fresh);
        Ok(token)
    }

    async fn request_token(
        &self,
        installation: InstallationId,
        repo: &RepoName,
    ) -> Result<InstallationToken, GithubError> {
        let url = self.inner.transport.url(&[
            "app",
            "installations",
            &installation.0.to_string(),
            "access_tokens",
        ])?;
        let answer = match self.ask_token(&url, repo, true).await {
            Err(e) if e.status() == Some(422) && e.to_string().contains("not granted") => {
                tracing::warn!(
                    installation = installation.0,
                    "the installation has not granted every permission; a token without the optional ones"
                );
                self.ask_token(&url, repo, false).await
            }
            other => other,
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                if matches!(e.status(), Some(401 | 404)) {
                    // The installation is gone or the app lost access: nothing cached for it
                    // can be trusted.
                    self.forget_installation(installation);
                }
                return Err(e);
            }
        };
        let answer: TokenAnswer = answer.json()?;
        let expires_at_unix = parse_github_time(&answer.expires_at).unwrap_or(0);
        tracing::debug!(installation = installation.0, repo = %repo, expires_at = %answer.expires_at, "minted installation token");
        Ok(InstallationToken {
            token: answer.token,
            expires_at_unix,
        })
    }

    async fn ask_token(
        &self,
        url: &Url,
        repo: &RepoName,
        with_optional: bool,
    ) -> Result<super::transport::Answer, GithubError> {
        let body = serde_json::json!({
            "repositories": [repo.name],
            "permissions": run_permissions(with_optional),
        });
        let jwt = self.jwt()?;
        self.inner
            .transport
            .send(Method::POST, url, Some(&jwt), Some(&body))
            .await
    }

    /// Drops what is cached for an installation (deleted, suspended, or its token refused).
    pub fn forget_installation(&self, installation: InstallationId) {
        self.inner.tokens.forget_installation(installation);
    }

    /// The write pacer of an installation.
    pub fn pacer(&self, installation: InstallationId) -> Arc<WritePacer> {
        let mut pacers = self.inner.pacers.lock().unwrap_or_else(|p| p.into_inner());
        pacers
            .entry(installation)
            .or_insert_with(|| Arc::new(WritePacer::new(self.inner.pacing.clone())))
            .clone()
    }

    pub(crate) fn gate_timeout(&self) -> Duration {
        self.inner.gate.timeout
    }
}
