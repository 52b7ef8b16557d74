//! The errors of the GitHub client, for callers that match on them (a 404 is "not there", a
//! rate limit is "later", a 5xx or a lost connection "may have gone through", anything else is a
//! failure to report). GitHub's error bodies are parsed whole: `message`, every entry of
//! `errors` (`resource`, `field`, `code`, `message`) and `documentation_url`, so that callers
//! decide on the structured fields, never on a substring of a message. None carries a secret:
//! GitHub's own words and the request path are kept, headers and request bodies are not.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of GitHub's `errors` array (`422 Validation Failed` and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    /// `missing`, `missing_field`, `invalid`, `already_exists`, `unprocessable` or `custom`.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl ErrorDetail {
    /// Whether this entry is about `resource` with `code`.
    pub fn is(&self, resource: &str, code: &str) -> bool {
        self.resource.as_deref() == Some(resource) && self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match (&self.resource, &self.field) {
            (Some(r), Some(field)) => format!("{r}.{field}"),
            (Some(r), None) => r.clone(),
            (None, Some(field)) => field.clone(),
            (None, None) => String::new(),
        };
        let what = match (&self.message, &self.code) {
            (Some(m), _) => m.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => "invalid".into(),
        };
        if place.is_empty() {
            f.write_str(&what)
        } else {
            write!(f, "{place}: {what}")
        }
    }
}

/// GitHub's error body: `{"message","errors":[…],"documentation_url"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub message: String,
    pub errors: Vec<ErrorDetail>,
    pub documentation_url: Option<String>,
}

/// The longest text of an error body kept in an error (GitHub's are short; a proxy's HTML page
/// is not).
const MAX_ERROR_TEXT: usize = 300;

#[derive(Deserialize)]
struct RawBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    #[serde(default)]
    documentation_url: Option<String>,
}

impl ErrorBody {
    /// Reads an error answer. Entries of `errors` may be objects or, on some routes, bare
    /// strings (kept as the entry's message); a body that is not GitHub's JSON (a proxy's page)
    /// becomes the message, cut short.
    pub fn parse(bytes: &[u8]) -> ErrorBody {
        let Ok(raw) = serde_json::from_slice::<RawBody>(bytes) else {
            let text = String::from_utf8_lossy(bytes);
            return ErrorBody {
                message: short(text.trim()),
                ..ErrorBody::default()
            };
        };
        let errors = raw
            .errors
            .into_iter()
            .map(|e| match e {
                serde_json::Value::String(s) => ErrorDetail {
                    message: Some(s),
                    ..ErrorDetail::default()
                },
                other => serde_json::from_value(other).unwrap_or_default(),
            })
            .collect();
        ErrorBody {
            message: short(raw.message.as_deref().unwrap_or("")),
            errors,
            documentation_url: raw.documentation_url,
        }
    }

    /// From octocrab's parsed error (its `errors` are left as JSON values).
    pub(crate) fn from_parts(
        message: &str,
        errors: Option<&[serde_json::Value]>,
        documentation_url: Option<String>,
    ) -> ErrorBody {
        let body = serde_json::json!({
            "message": message,
            "errors": errors.unwrap_or_default(),
            "documentation_url": documentation_url,
        });
        ErrorBody::parse(body.to_string().as_bytes())
    }

    /// What a reader should see: the message and each entry of `errors`.
    pub fn summary(&self) -> String {
        let mut text = if self.message.is_empty() {
            "(no message)".to_string()
        } else {
            self.message.clone()
        };
        let details: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        if !details.is_empty() {
            text.push_str(": ");
            text.push_str(&details.join("; "));
        }
        short(&text)
    }
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_ERROR_TEXT).collect();
    if text.chars().count() > MAX_ERROR_TEXT {
        out.push('…');
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub answered with a status that is not retried (or retries ran out).
    #[error("GitHub answered {status} to {method} {path}: {}", body.summary())]
    Api {
        status: u16,
        method: String,
        path: String,
        body: ErrorBody,
    },
    /// Rate limited, and waiting would exceed the retry budget.
    #[error("GitHub rate limit on {method} {path} (asked to wait {wait:?})")]
    RateLimited {
        method: String,
        path: String,
        wait: Duration,
    },
    /// No answer in time, or the connection failed, after the retries allowed.
    /// `maybe_sent`: the request may have reached GitHub (a timeout, a reset) rather than
    /// surely not (the connection was refused).
    #[error("GitHub could not be reached for {method} {path}: {reason}")]
    Transport {
        method: String,
        path: String,
        reason: String,
        maybe_sent: bool,
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

    /// GitHub's error body, when the error is an answer.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            GithubError::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The entries of GitHub's `errors` array (empty when there are none).
    pub fn details(&self) -> &[ErrorDetail] {
        self.body().map(|b| b.errors.as_slice()).unwrap_or_default()
    }

    /// Whether the request may have been carried out although no success came back: a 5xx
    /// (GitHub or a proxy in front of it may answer 502 after the work was done) or a
    /// connection lost after the request was sent. A write in this state is looked up before
    /// it is sent again.
    pub fn may_have_gone_through(&self) -> bool {
        match self {
            GithubError::Api { status, .. } => *status >= 500,
            GithubError::Transport { maybe_sent, .. } => *maybe_sent,
            _ => false,
        }
    }

    /// Whether the same request may succeed if sent again later, once the client's own retries
    /// ran out: a 5xx, a rate limit, a connection that failed. A 4xx (locked, gone, no access)
    /// will not change by waiting.
    pub fn may_succeed_later(&self) -> bool {
        match self {
            GithubError::RateLimited { .. } | GithubError::Transport { .. } => true,
            GithubError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_can_mend_may_succeed_later() {
        let api = |status| GithubError::Api {
            status,
            method: "POST".into(),
            path: "/x".into(),
            body: Default::default(),
        };
        assert!(api(502).may_succeed_later());
        assert!(GithubError::Transport {
            method: "POST".into(),
            path: "/x".into(),
            reason: "reset".into(),
            maybe_sent: true,
        }
        .may_succeed_later());
        assert!(!api(403).may_succeed_later());
        assert!(!api(404).may_succeed_later());
        assert!(!GithubError::Invalid("x".into()).may_succeed_later());
    }

    #[test]
    fn a_validation_failure_is_read_whole() {
        let body = ErrorBody::parse(
            br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for octo-org:backspace/63-x."}],"documentation_url":"https://docs.github.com/rest/pulls/pulls#create-a-pull-request","status":"422"}"#,
        );
        assert_eq!(body.message, "Validation Failed");
        assert_eq!(body.errors.len(), 1);
        assert!(body.errors[0].is("PullRequest", "custom"));
        assert_eq!(
            body.documentation_url.as_deref(),
            Some("https://docs.github.com/rest/pulls/pulls#create-a-pull-request")
        );
        assert_eq!(
            body.summary(),
            "Validation Failed: PullRequest: A pull request already exists for octo-org:backspace/63-x."
        );
    }

    #[test]
    fn fields_codes_and_bare_strings_are_kept() {
        let body = ErrorBody::parse(
            br#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"body","code":"missing_field"},"body is too long"]}"#,
        );
        assert_eq!(body.errors[0].field.as_deref(), Some("body"));
        assert_eq!(body.errors[1].message.as_deref(), Some("body is too long"));
        assert_eq!(
            body.summary(),
            "Validation Failed: Issue.body: missing_field; body is too long"
        );
    }

    #[test]
    fn a_body_that_is_not_githubs_json_is_the_message_cut_short() {
        let page = format!("<html>{}</html>", "x".repeat(1000));
        let body = ErrorBody::parse(page.as_bytes());
        assert!(body.errors.is_empty());
        assert!(body.message.starts_with("<html>"));
        assert!(body.message.chars().count() <= MAX_ERROR_TEXT + 1);
        assert_eq!(ErrorBody::parse(b"").summary(), "(no message)");
    }

    #[test]
    fn server_errors_and_lost_answers_may_have_gone_through_refusals_did_not() {
        let api = |status| GithubError::Api {
            status,
            method: "POST".into(),
            path: "/x".into(),
            body: ErrorBody::default(),
        };
        assert!(api(502).may_have_gone_through());
        assert!(!api(422).may_have_gone_through());
        assert!(!api(401).may_have_gone_through());
        let transport = |maybe_sent| GithubError::Transport {
            method: "POST".into(),
            path: "/x".into(),
            reason: "reset".into(),
            maybe_sent,
        };
        assert!(transport(true).may_have_gone_through());
        assert!(!transport(false).may_have_gone_through());
    }
}
