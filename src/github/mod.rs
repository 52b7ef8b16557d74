//! The GitHub App client: app JWT, installation tokens, the permission gate, and the REST calls a
//! run needs, with retries and pacing, through octocrab.
//!
//! One octocrab client per process (`app`), built once over Backspace's own HTTP stack
//! (`stack`: octocrab's `with_service` / `with_layer`): the write pacer (`pacing`: GitHub's
//! documented secondary limits, the acknowledgement first) and the one retry policy
//! (`crate::retry`, with GitHub's classification in `retry`) are layers of it, so every call
//! (octocrab's typed ones too) is paced and retried the same way. Each call carries the token
//! Backspace minted for it (`tokens`: one repository, the permissions a run needs, cached per
//! installation and repository; octocrab's own installation auth asks for every repository and
//! every permission the app has), set through octocrab's `user_access_token`. Reads use
//! octocrab's typed calls and models where they fit (`repo`), local serde types where GitHub's
//! answers outrun them (`models`).
//!
//! What is still written by hand, and why:
//! - the stack's leaf service (`stack::Leaf`): octocrab's reqwest connector is built on a newer
//!   reqwest than the rest of Backspace; this one reuses the process's;
//! - the retry and pacing layers: they are Backspace's policy (bounded, jittered, honouring
//!   `retry-after`; writes by class), which octocrab's retry layer (immediate retries, any wait
//!   honoured) does not offer;
//! - writes (`stack::send` through octocrab's `build_request` / `execute`): octocrab's typed
//!   writes cannot carry the request extension that tells the stack a write's class and
//!   whether it may be sent blindly again; creates are made once (`repo`: looked up by marker,
//!   head branch or listing before a retry);
//! - the deliveries listing (`deliveries`): octocrab's builder drops the `Link` header that holds
//!   the next cursor;
//! - the manifest conversion (`manifest`): octocrab's model holds the new app's secrets as plain
//!   strings.
//!
//! Tokens and keys are `secrecy` types from the moment they exist; no `Debug`, log line or error
//! message in this module holds one.

mod app;
mod checks;
mod deliveries;
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
mod stack;
mod tokens;
mod users;

pub use crate::retry::{RetryDecision, RetryPolicy};
pub use app::{GithubApp, GithubAppConfig, OPTIONAL_PERMISSIONS, RUN_PERMISSIONS};
pub use checks::{CheckConclusion, CheckOutput, CheckRun, NewCheckRun, CHECK_NAME};
pub use deliveries::{next_cursor, DeliveryPage};
pub use error::{ErrorBody, ErrorDetail, GithubError};
pub use jwt::{AppKey, JwtClaims, JWT_BACKDATE_SECS, JWT_LIFETIME_SECS};
pub use manifest::{convert_manifest, ManifestConversion};
pub use models::{
    Branch, Comment, HookDelivery, InstallationId, Issue, IssueNumber, PullRequest, PullRequestRef,
    Reaction, ReactionContent, RepoName, RepoNameError, RepoRef, User,
};
pub use pacing::{next_slot, PacingLimits, WriteClass, WritePacer};
pub use permission::{
    denied_reply_marker, GateDecision, Permission, PermissionGate, DENIED_REPLY_MARKER,
};
pub use progress_comment::{
    post_first, progress_marker, run_id_from_marker, with_marker, ProgressComment, ProgressConfig,
};
pub use repo::{marker_in, NewPullRequest, RepoClient, RepositoryInfo};
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
