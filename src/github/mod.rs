//! The GitHub App client: app JWT, installation tokens, the permission gate, and the REST calls a
//! run needs, with retries and pacing.
//!
//! Why reqwest and not octocrab: octocrab's installation auth asks for a token covering every
//! repository of the installation with every permission the app has (its request body carries
//! `repositories` but never `permissions`), and its retry layer retries 5xx immediately and
//! sleeps for any `retry-after` however long, with no jitter and no bound on the total wait.
//! DESIGN §4 asks for tokens scoped to one repository and the permissions a run needs, and for
//! bounded, jittered retries honouring `retry-after`; both live in the request path, so this
//! module owns it: `jwt` signs, `tokens` caches per (installation, repository), `transport`
//! sends with `retry` deciding, `pacing` spaces writes per installation. The REST calls
//! themselves (`repo`) are small and typed with local serde structs (`models`).
//!
//! Tokens and keys are `secrecy` types from the moment they exist; no `Debug`, log line or error
//! message in this module holds one.

mod app;
mod checks;
mod error;
mod jwt;
mod manifest;
mod models;
mod pacing;
mod permission;
mod progress_comment;
mod repo;
mod retry;
mod reviews;
mod tokens;
mod transport;
mod users;

pub use crate::retry::{RetryDecision, RetryPolicy};
pub use app::{GithubApp, GithubAppConfig, RUN_PERMISSIONS};
pub use checks::{CheckConclusion, CheckOutput, CheckRun, NewCheckRun, CHECK_NAME};
pub use error::GithubError;
pub use jwt::{AppKey, JwtClaims, JWT_BACKDATE_SECS, JWT_LIFETIME_SECS};
pub use manifest::{convert_manifest, ManifestConversion};
pub use models::{
    Comment, InstallationId, Issue, IssueNumber, PullRequest, PullRequestRef, ReactionContent,
    RepoName, RepoNameError, RepoRef, User,
};
pub use pacing::{PacingLimits, WritePacer};
pub use permission::{
    denied_reply_marker, GateDecision, Permission, PermissionGate, DENIED_REPLY_MARKER,
};
pub use progress_comment::{
    progress_marker, run_id_from_marker, with_marker, ProgressComment, ProgressConfig,
};
pub use repo::{NewPullRequest, RepoClient, RepositoryInfo};
pub use reviews::ReviewComment;
pub use tokens::{format_github_time, parse_github_time, InstallationToken, TOKEN_REFRESH_MARGIN};
pub use users::{noreply_email, Account as GithubAccount};

/// The Basic credentials git sends for an installation token (user `x-access-token`), as the
/// value of an `Authorization` header: `git -c http.extraHeader="Authorization: <value>" push`.
/// Passing it per command keeps it out of `.git/config`.
pub fn git_basic_auth_header(token: &secrecy::SecretString) -> secrecy::SecretString {
    use base64::Engine as _;
    use secrecy::ExposeSecret as _;
    let raw = format!("x-access-token:{}", token.expose_secret());
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
    secrecy::SecretString::from(format!("Basic {encoded}"))
}
