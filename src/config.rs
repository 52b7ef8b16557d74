//! Settings from the environment (DESIGN §3), each also settable by flag. Secrets are held as
//! `SecretString` from the moment they are read, so no `Debug` or log line can print them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The model used when `BACKSPACE_MODEL` is not set: a current Claude Sonnet.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// The flags and environment of `backspace serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen port.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "BACKSPACE_BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// GitHub App id.
    #[arg(long, env = "APP_ID")]
    pub app_id: Option<u64>,
    /// GitHub App private key: PEM, PEM with \n escapes, or base64 of the PEM. Prefer
    /// PRIVATE_KEY_PATH.
    #[arg(long, env = "PRIVATE_KEY", hide_env_values = true)]
    pub private_key: Option<SecretString>,
    /// Path to the GitHub App private key (PEM).
    #[arg(long, env = "PRIVATE_KEY_PATH")]
    pub private_key_path: Option<PathBuf>,
    /// Webhook secret; several comma-separated secrets are all accepted (rotation).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretString>,
    /// GitHub REST API base.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: Url,
    /// GitHub web base (manifest flow, links).
    #[arg(long, env = "GITHUB_URL", default_value = "https://github.com")]
    pub github_url: Url,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Job store: sqlite://PATH or postgres://...
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://backspace.db",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Sandbox image.
    #[arg(
        long,
        env = "BACKSPACE_SANDBOX_IMAGE",
        default_value = "backspace-sandbox:latest"
    )]
    pub sandbox_image: String,
    /// Bearer key for POST /api/code; the HTTP API is off without it.
    #[arg(long, env = "BACKSPACE_API_KEY", hide_env_values = true)]
    pub api_key: Option<SecretString>,
    /// Base for links in comments (default http://localhost:$PORT).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Runs at once on this instance.
    #[arg(long, env = "BACKSPACE_MAX_JOBS", default_value_t = 2)]
    pub max_jobs: usize,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// OTLP endpoint for tracing spans.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,
    /// POST /api/code: runs one API key may start at once before the rate limit applies.
    #[arg(long, env = "BACKSPACE_API_BURST", default_value_t = 5)]
    pub api_burst: u32,
    /// POST /api/code: runs per minute one API key may start after its burst.
    #[arg(long, env = "BACKSPACE_API_RATE_PER_MINUTE", default_value_t = 10)]
    pub api_rate_per_minute: u32,
    #[command(flatten)]
    pub front_door: crate::server::FrontDoorArgs,
    /// Days deliveries, finished jobs (with their run events), replay keys and denials are
    /// kept; queued and running jobs are kept whatever their age.
    #[arg(long, env = "BACKSPACE_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: u32,
    /// Where /setup saves the registered app's credentials (mode 0600) and where serve reads
    /// them back; default: backspace-credentials.json beside the SQLite file.
    #[arg(long, env = "BACKSPACE_CREDENTIALS_PATH")]
    pub credentials_path: Option<PathBuf>,
    /// Seconds a worker's claim on a job lasts without renewal; a crashed instance's jobs are
    /// retried after it.
    #[arg(long, env = "BACKSPACE_LEASE_SECS", default_value_t = 60, hide = true)]
    pub lease_secs: u64,
    /// Sandboxes kept started and waiting, so a run's first command starts sooner (each holds
    /// memory while it waits).
    #[arg(long, env = "BACKSPACE_WARM_SANDBOXES", default_value_t = 0)]
    pub warm_sandboxes: usize,
    /// Seconds running jobs may go on after SIGTERM before their leases are released.
    #[arg(long, env = "BACKSPACE_SHUTDOWN_GRACE_SECS", default_value_t = 90)]
    pub shutdown_grace_secs: u64,
    /// The command word: comments start with `/<word>`.
    #[arg(long, env = "BACKSPACE_COMMAND", default_value = "backspace")]
    pub command_word: String,
    /// What a sandbox may write, its working directory and /tmp together (2GiB, 512M, bytes).
    #[arg(long, env = "BACKSPACE_SANDBOX_DISK", default_value = "2GiB", value_parser = crate::sandbox::parse_size)]
    pub sandbox_disk: u64,
    /// A command that prints nothing this many seconds is stopped.
    #[arg(long, env = "BACKSPACE_COMMAND_IDLE_SECS", default_value = "300", value_parser = crate::sandbox::parse_secs)]
    pub command_idle_secs: std::time::Duration,
    /// Hosts (`*.suffix`, IP addresses, optional `:port`; commas or spaces between) a
    /// repository's `network.allow` may name; the sandbox opens them through the egress proxy.
    #[arg(long, env = "BACKSPACE_EGRESS_ALLOW", default_value = "", value_parser = parse_egress_allow)]
    pub egress_allow: crate::egress::Allowlist,
}

fn parse_egress_allow(text: &str) -> Result<crate::egress::Allowlist, String> {
    crate::egress::Allowlist::parse(text).map_err(|e| e.to_string())
}

/// Which model answers, shared by `serve` and `run`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Anthropic API key.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<SecretString>,
    /// Anthropic API base; requests go to {base}/v1/messages.
    #[arg(
        long,
        env = "ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: Url,
    /// Model id.
    #[arg(long = "model", env = "BACKSPACE_MODEL", default_value = DEFAULT_MODEL)]
    pub model_id: String,
    /// OpenAI-compatible provider base URL (fallback, or the only provider without an
    /// Anthropic key).
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<Url>,
    /// OpenAI-compatible provider key.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<SecretString>,
}

impl ModelArgs {
    /// Registers the model keys with the redactor (`crate::redact::remember`).
    pub fn remember_secrets(&self) {
        for key in [&self.anthropic_api_key, &self.openai_api_key]
            .into_iter()
            .flatten()
        {
            crate::redact::remember(key);
        }
    }

    /// The provider these settings name: Anthropic, falling back to the OpenAI-compatible one
    /// when both are set.
    pub fn provider(&self) -> Result<std::sync::Arc<dyn crate::agent::ModelProvider>, String> {
        if self.anthropic_api_key.is_none() && self.openai_base_url.is_none() {
            return Err("no model is configured: set ANTHROPIC_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible provider)".into());
        }
        let mut s = crate::agent::ProviderSettings::new(
            self.anthropic_base_url.clone(),
            self.anthropic_api_key.clone(),
            self.model_id.clone(),
        );
        s.openai_base_url = self.openai_base_url.clone();
        s.openai_api_key = self.openai_api_key.clone();
        s.build()
            .map_err(|e| format!("the model provider could not be set up: {e}"))
    }
}

/// The GitHub App's credentials, all three present.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    pub private_key: SecretString,
    pub webhook_secrets: Vec<SecretString>,
}

impl AppCredentials {
    /// Registers the private key and the webhook secrets with the redactor.
    pub fn remember_secrets(&self) {
        crate::redact::remember(&self.private_key);
        for secret in &self.webhook_secrets {
            crate::redact::remember(secret);
        }
    }
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("private_key", &"[redacted]")
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish()
    }
}

/// What is missing for the app to leave setup mode, by environment name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCredentials(pub Vec<&'static str>);

impl std::fmt::Display for MissingCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read PRIVATE_KEY_PATH {path}: {source}")]
    PrivateKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WEBHOOK_SECRET holds no usable secret (empty after splitting on commas)")]
    EmptyWebhookSecret,
    #[error("DATABASE_URL must start with sqlite:// or postgres:// (got scheme {0:?})")]
    DatabaseScheme(String),
    #[error("BACKSPACE_MAX_JOBS must be at least 1")]
    MaxJobs,
    #[error("BACKSPACE_COMMAND must be one word of letters, digits, '-' or '_'")]
    CommandWord,
    #[error("BACKSPACE_LEASE_SECS must be at least 3")]
    Lease,
    #[error("{0} is not a PEM private key (-----BEGIN … KEY-----), with real or \\n-escaped newlines, nor the base64 of one")]
    PrivateKeyFormat(&'static str),
    #[error("cannot read {path}: {message}")]
    DotEnv { path: PathBuf, message: String },
}

/// A GitHub App private key as Probot takes it (`PRIVATE_KEY`): the PEM itself, the PEM on one
/// line with `\n` escapes (as a `.env` file or a secret store keeps it), or the PEM in base64.
/// `what` names the setting in the error, which never holds the key.
pub fn decode_private_key(
    raw: &SecretString,
    what: &'static str,
) -> Result<SecretString, ConfigError> {
    use base64::Engine as _;
    let text = raw.expose_secret().trim();
    if text.contains("-----BEGIN") {
        return Ok(SecretString::from(text.replace("\\n", "\n")));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|pem| pem.contains("-----BEGIN"))
        .map(|pem| SecretString::from(pem.trim().to_owned()))
        .ok_or(ConfigError::PrivateKeyFormat(what))
}

/// Reads `path` (a `.env` file, as Probot and dotenv read it) into the environment when it
/// exists; variables already set win. Call it before any thread starts: it sets variables.
/// Returns the names it set (never their values), or `None` without a file.
pub fn load_dotenv(path: &std::path::Path) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(entries) = dotenv_entries(path, |k| std::env::var_os(k).is_some())? else {
        return Ok(None);
    };
    let mut names = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        std::env::set_var(&key, value);
        names.push(key);
    }
    Ok(Some(names))
}

/// The entries of the `.env` file at `path` that are not `is_set` already; `None` without a
/// file.
fn dotenv_entries(
    path: &std::path::Path,
    is_set: impl Fn(&str) -> bool,
) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let bad = |message: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        message,
    };
    let mut entries = Vec::new();
    for item in dotenvy::from_path_iter(path).map_err(|e| bad(e.to_string()))? {
        let (key, value) = item.map_err(|e| bad(e.to_string()))?;
        if !is_set(&key) {
            entries.push((key, value));
        }
    }
    Ok(Some(entries))
}

/// Splits `WEBHOOK_SECRET` on commas, trimming blanks, so that several secrets are valid at once.
pub fn split_webhook_secrets(raw: &SecretString) -> Vec<SecretString> {
    raw.expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .collect()
}

impl ServeArgs {
    /// Registers every secret among the settings with the redactor, so no run event, comment
    /// or log shows one: the API key, the database URL's password, the model keys, and the app
    /// credentials given in the environment (those saved by /setup: [`AppCredentials`]).
    pub fn remember_secrets(&self) {
        for secret in [&self.private_key, &self.api_key].into_iter().flatten() {
            crate::redact::remember(secret);
        }
        if let Some(raw) = &self.webhook_secret {
            for secret in split_webhook_secrets(raw) {
                crate::redact::remember(&secret);
            }
        }
        crate::redact::remember(&self.database_url);
        self.model.remember_secrets();
    }

    /// The app credentials, or the names of those that are missing (setup mode).
    pub fn app_credentials(
        &self,
    ) -> Result<Result<AppCredentials, MissingCredentials>, ConfigError> {
        let mut missing = Vec::new();
        if self.app_id.is_none() {
            missing.push("APP_ID");
        }
        let key = match (&self.private_key, &self.private_key_path) {
            (Some(k), _) => Some(decode_private_key(k, "PRIVATE_KEY")?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    ConfigError::PrivateKeyFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(decode_private_key(
                    &SecretString::from(text),
                    "PRIVATE_KEY_PATH's file",
                )?)
            }
            (None, None) => {
                missing.push("PRIVATE_KEY or PRIVATE_KEY_PATH");
                None
            }
        };
        let secrets = match &self.webhook_secret {
            Some(raw) => {
                let s = split_webhook_secrets(raw);
                if s.is_empty() {
                    return Err(ConfigError::EmptyWebhookSecret);
                }
                Some(s)
            }
            None => {
                missing.push("WEBHOOK_SECRET");
                None
            }
        };
        match (self.app_id, key, secrets) {
            (Some(app_id), Some(private_key), Some(webhook_secrets)) => Ok(Ok(AppCredentials {
                app_id,
                private_key,
                webhook_secrets,
            })),
            _ => Ok(Err(MissingCredentials(missing))),
        }
    }

    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.expose_secret();
        let scheme = url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(ConfigError::DatabaseScheme(scheme.to_owned()));
        }
        if self.max_jobs == 0 {
            return Err(ConfigError::MaxJobs);
        }
        if self.lease_secs < 3 {
            return Err(ConfigError::Lease);
        }
        if self.command_word.is_empty()
            || !self
                .command_word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::CommandWord);
        }
        Ok(())
    }

    /// `BACKSPACE_CREDENTIALS_PATH`, or `backspace-credentials.json` beside the SQLite file
    /// (in the working directory with Postgres).
    pub fn credentials_path(&self) -> PathBuf {
        self.credentials_path.clone().unwrap_or_else(|| {
            crate::setup_store::default_credentials_path(self.database_url.expose_secret())
        })
    }

    /// `PUBLIC_URL`, or `http://localhost:$PORT`.
    pub fn public_url(&self) -> Url {
        self.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://localhost:{}", self.port)).expect("a valid localhost URL")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let mut v = vec!["backspace"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().serve
    }

    #[test]
    fn missing_credentials_are_named() {
        let a = parse(&["--app-id", "7"]);
        let missing = a.app_credentials().unwrap().unwrap_err();
        assert_eq!(
            missing.0,
            vec!["PRIVATE_KEY or PRIVATE_KEY_PATH", "WEBHOOK_SECRET"]
        );
    }

    #[test]
    fn several_webhook_secrets_are_split_on_commas() {
        let a = parse(&[
            "--app-id",
            "7",
            "--private-key=-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----",
            "--webhook-secret",
            "old, new,,",
        ]);
        let creds = a.app_credentials().unwrap().unwrap();
        let s: Vec<_> = creds
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .collect();
        assert_eq!(s, vec!["old", "new"]);
        assert!(!format!("{creds:?}").contains("old"));
    }

    const PEM: &str =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----";

    #[test]
    fn a_private_key_may_be_pem_escaped_pem_or_base64() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let escaped = PEM.replace('\n', "\\n");
        for raw in [
            PEM.to_owned(),
            escaped,
            b64.clone(),
            format!("{}\n{}\n", &b64[..20], &b64[20..]),
        ] {
            let key = decode_private_key(&SecretString::from(raw.clone()), "PRIVATE_KEY").unwrap();
            assert_eq!(key.expose_secret(), PEM, "{raw}");
        }
        let a = parse(&[
            "--app-id",
            "7",
            "--private-key",
            &b64,
            "--webhook-secret",
            "s",
        ]);
        let creds = a.app_credentials().unwrap().unwrap();
        assert_eq!(creds.private_key.expose_secret(), PEM);
    }

    #[test]
    fn a_private_key_that_is_neither_is_refused_without_showing_it() {
        for raw in ["not a key", "aGVsbG8=", ""] {
            let e = decode_private_key(&SecretString::from(raw.to_owned()), "PRIVATE_KEY")
                .unwrap_err()
                .to_string();
            assert!(e.contains("PRIVATE_KEY is not a PEM private key"), "{e}");
            assert!(raw.is_empty() || !e.contains(raw), "{e}");
        }
    }

    #[test]
    fn a_dotenv_file_fills_what_the_environment_does_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert!(dotenv_entries(&path, |_| false).unwrap().is_none());
        std::fs::write(
            &path,
            "# a comment\nAPP_ID=\"12345\"\nWEBHOOK_SECRET='from the file'\n",
        )
        .unwrap();
        let entries = dotenv_entries(&path, |k| k == "WEBHOOK_SECRET")
            .unwrap()
            .unwrap();
        assert_eq!(entries, vec![("APP_ID".to_owned(), "12345".to_owned())]);
        std::fs::write(&path, "=no name\n").unwrap();
        let e = dotenv_entries(&path, |_| false).unwrap_err().to_string();
        assert!(e.contains(".env"), "{e}");
    }

    #[test]
    fn database_scheme_is_checked() {
        let a = parse(&["--database-url", "mysql://x"]);
        assert!(matches!(a.validate(), Err(ConfigError::DatabaseScheme(_))));
        assert!(parse(&[]).validate().is_ok());
    }
}
