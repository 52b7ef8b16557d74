//! The errors of the GitHub client, for callers that match on them (a 404 is "not there", a
//! rate limit is "later", anything else is a failure to report). None carries a secret: GitHub's
//! own `message` and the request path are kept, headers and bodies are not.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub answered with a status that is not retried (or retries ran out).
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Api {
        status: u16,
        method: String,
        path: String,
        message: String,
    },
    /// Rate limited, and waiting would exceed the retry budget.
    #[error("GitHub rate limit on {method} {path} (asked to wait {wait:?})")]
    RateLimited {
        method: String,
        path: String,
        wait: Duration,
    },
    /// No answer in time, or the connection failed, after the retries allowed.
    #[error("GitHub could not be reached for {method} {path}: {reason}")]
    Transport {
        method: String,
        path: String,
        reason: String,
    },
    /// The answer did not have the shape GitHub documents.
    #[error("unexpected answer from GitHub to {method} {path}: {reason}")]
    Decode {
        method: String,
        path: String,
        reason: String,
    },
    /// The app's private key could not be read or used to sign.
    #[error("the GitHub App private key is unusable: {0}")]
    Key(String),
    /// A path or name that cannot be turned into a request.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl GithubError {
    /// The HTTP status GitHub gave, if the error came from an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}
