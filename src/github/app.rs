//! The GitHub App as a client: built once per process from the app id and key, it holds the one
//! octocrab client (over the stack of `stack`), signs app JWTs, mints and caches installation
//! tokens, knows the bot's own login, and hands out [`RepoClient`]s for (installation,
//! repository). Clones of it share the token cache, the per-installation write pacers and the
//! connection pool.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use octocrab::Octocrab;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::jwt::AppKey;
use super::models::{InstallationId, IssueNumber, RepoName};
use super::pacing::{PacingLimits, WritePacer};
use super::permission::PermissionGate;
use super::repo::RepoClient;
use super::stack::{self, from_octocrab, Pacers};
use super::tokens::{parse_github_time, InstallationToken, TokenCache};
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

fn run_permissions(with_optional: bool) -> std::collections::HashMap<String, String> {
    RUN_PERMISSIONS
        .iter()
        .filter(|(k, _)| with_optional || !OPTIONAL_PERMISSIONS.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) struct Inner {
    pub app_id: u64,
    key: AppKey,
    /// The one octocrab client, without a credential: calls add theirs.
    crab: Octocrab,
    pub retry: RetryPolicy,
    tokens: TokenCache,
    pacers: Arc<Pacers>,
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

/// The token answer, with the token a secret from the moment it is parsed (octocrab's own
/// `InstallationToken` model holds it as a plain `String`).
#[derive(Deserialize)]
struct TokenAnswer {
    token: SecretString,
    expires_at: String,
}

impl GithubApp {
    pub fn new(config: GithubAppConfig) -> Result<Self, GithubError> {
        let key = AppKey::from_pem(&config.private_key)?;
        let pacers = Arc::new(Pacers::new(config.pacing));
        let crab = stack::client(
            &config.api_url,
            config.retry.clone(),
            pacers.clone(),
            &config.user_agent,
        )?;
        Ok(GithubApp {
            inner: Arc::new(Inner {
                app_id: config.app_id,
                key,
                crab,
                retry: config.retry,
                tokens: TokenCache::default(),
                pacers,
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

    /// The octocrab client with `credential` (an installation token or the app JWT).
    pub(crate) fn crab(&self, credential: &SecretString) -> Result<Octocrab, GithubError> {
        self.inner
            .crab
            .user_access_token(credential.clone())
            .map_err(|e| GithubError::Invalid(format!("GitHub client: {e}")))
    }

    /// The octocrab client signed as the app.
    pub(crate) fn as_app(&self) -> Result<Octocrab, GithubError> {
        self.crab(&self.jwt()?)
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
                let app = self
                    .as_app()?
                    .apps()
                    .get()
                    .await
                    .map_err(|e| from_octocrab(e, &Method::GET, "/app"))?;
                let slug = app.slug.ok_or_else(|| GithubError::Decode {
                    method: "GET".into(),
                    path: "/app".into(),
                    reason: "the app has no slug".into(),
                })?;
                Ok(format!("{slug}[bot]"))
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
        let path = format!("/repos/{repo}/installation");
        let installation = self
            .as_app()?
            .apps()
            .get_repository_installation(&repo.owner, &repo.name)
            .await
            .map_err(|e| from_octocrab(e, &Method::GET, &path))?;
        Ok(InstallationId(installation.id.0))
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
        let path = format!("/app/installations/{installation}/access_tokens");
        // An installation that has not granted a permission asked for answers 422 (GitHub's
        // body has no `errors` to tell why): asked again without the optional ones, a refusal
        // for another reason stays a refusal.
        let answer = match self.ask_token(&path, repo, true).await {
            Err(e) if e.status() == Some(422) => {
                let without = self.ask_token(&path, repo, false).await;
                if without.is_ok() {
                    tracing::warn!(
                        installation = installation.0,
                        "the installation has not granted every permission; a token without the optional ones"
                    );
                }
                without
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
        let expires_at_unix = parse_github_time(&answer.expires_at).unwrap_or(0);
        tracing::debug!(installation = installation.0, repo = %repo, expires_at = %answer.expires_at, "minted installation token");
        Ok(InstallationToken {
            token: answer.token,
            expires_at_unix,
        })
    }

    async fn ask_token(
        &self,
        path: &str,
        repo: &RepoName,
        with_optional: bool,
    ) -> Result<TokenAnswer, GithubError> {
        let body = octocrab::models::apps::CreateInstallationAccessToken {
            repositories: Some(vec![repo.name.clone()]),
            permissions: Some(run_permissions(with_optional)),
            ..Default::default()
        };
        self.as_app()?
            .post(path, Some(&body))
            .await
            .map_err(|e| from_octocrab(e, &Method::POST, path))
    }

    /// Drops what is cached for an installation (deleted, suspended, or its token refused).
    pub fn forget_installation(&self, installation: InstallationId) {
        self.inner.tokens.forget_installation(installation);
    }

    /// The write pacer of an installation.
    pub fn pacer(&self, installation: InstallationId) -> Arc<WritePacer> {
        self.inner.pacers.of(installation)
    }

    pub(crate) fn gate_timeout(&self) -> Duration {
        self.inner.gate.timeout
    }
}
