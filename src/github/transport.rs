//! Sends one GitHub REST call: builds the URL under `GITHUB_API_URL`, sets GitHub's headers and
//! the credential (marked sensitive so no debug output shows it), and retries as `retry`
//! decides. Non-success answers become [`GithubError`]s carrying GitHub's `message`, never a
//! header or a credential.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::retry::{classify, Outcome};
use super::GithubError;
use crate::retry::{with_retries, GaveUp, RetryPolicy};

/// GitHub's REST API version this client speaks.
const API_VERSION: &str = "2022-11-28";

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Bytes,
    method: Method,
    path: String,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GithubError> {
        serde_json::from_slice(&self.body).map_err(|e| GithubError::Decode {
            method: self.method.to_string(),
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

/// One attempt's result, classified for the retry loop.
pub(crate) type Attempt = crate::retry::Attempt<Answer, GithubError>;

pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    pub policy: RetryPolicy,
}

impl Transport {
    pub fn new(base: Url, policy: RetryPolicy, user_agent: &str) -> Result<Self, GithubError> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(policy.request_timeout)
            .connect_timeout(policy.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GithubError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Transport { http, base, policy })
    }

    /// The URL of an API path given as raw segments; each is percent-encoded on its own (a
    /// file path passes its own segments), and a base with a path (Enterprise's `/api/v3`) is
    /// kept.
    pub fn url<S: AsRef<str>>(&self, segments: &[S]) -> Result<Url, GithubError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| GithubError::Invalid("GITHUB_API_URL cannot be a base".into()))?;
            path.pop_if_empty();
            for s in segments {
                path.push(s.as_ref());
            }
        }
        Ok(url)
    }

    /// One attempt, classified.
    pub async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        credential: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Attempt {
        let path = url.path().to_string();
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(credential) = credential {
            let Ok(mut auth) =
                HeaderValue::from_str(&format!("Bearer {}", credential.expose_secret()))
            else {
                return Attempt::Failed(GithubError::Invalid(
                    "credential is not a valid header value".into(),
                ));
            };
            auth.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    hint: None,
                    error: GithubError::Transport {
                        method: method.to_string(),
                        path,
                        // Without the URL: it holds no secret, but the path is already there.
                        reason: e.without_url().to_string(),
                    },
                };
            }
        };
        let status = response.status().as_u16();
        let headers: HeaderMap = response.headers().clone();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    hint: None,
                    error: GithubError::Transport {
                        method: method.to_string(),
                        path,
                        reason: e.without_url().to_string(),
                    },
                }
            }
        };
        if (200..300).contains(&status) {
            return Attempt::Done(Answer {
                body,
                method: method.clone(),
                path,
            });
        }
        let error = GithubError::Api {
            status,
            method: method.to_string(),
            path,
            message: github_message(&body),
        };
        match classify(status, &headers, crate::clock::unix_secs()) {
            Outcome::Final => Attempt::Failed(error),
            Outcome::Retryable { hint } => Attempt::Retry { hint, error },
        }
    }

    /// Sends with retries, as the policy allows.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        credential: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        let what = format!("GitHub {method} {}", url.path());
        let tried = with_retries(&self.policy, &what, |_| {
            self.attempt(&method, url, credential, body)
        })
        .await;
        record_call(tried.attempts);
        tried.result.map_err(|gave_up| match gave_up {
            GaveUp::Final(e) | GaveUp::OutOfAttempts(e) => e,
            GaveUp::WaitTooLong { wait, .. } => GithubError::RateLimited {
                method: method.to_string(),
                path: url.path().to_string(),
                wait,
            },
        })
    }
}

/// Counts one GitHub call (however many attempts it took) in the process's metrics.
fn record_call(attempts: u32) {
    if let Some(m) = crate::metrics::global() {
        m.github_call(attempts > 1);
    }
}

/// GitHub's `message` from an error body, short; the body itself when it is not JSON.
fn github_message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut text: String = text.chars().take(300).collect();
    if text.is_empty() {
        text.push_str("(no message)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_each_segment() {
        let t = Transport::new(
            Url::parse("https://ghe.example/api/v3/").expect("url"),
            RetryPolicy::default(),
            "test",
        )
        .expect("client");
        let u = t
            .url(&["repos", "o", "r", "contents", ".github", "back space.yml"])
            .expect("url");
        assert_eq!(
            u.as_str(),
            "https://ghe.example/api/v3/repos/o/r/contents/.github/back%20space.yml"
        );
        let u = t.url(&["repos", "o", "r", "issues", "a/b"]).expect("url");
        assert!(u.path().ends_with("/issues/a%2Fb"));
    }

    #[test]
    fn error_messages_come_from_githubs_json() {
        assert_eq!(
            github_message(br#"{"message":"Not Found","documentation_url":"x"}"#),
            "Not Found"
        );
        assert_eq!(github_message(b""), "(no message)");
    }
}
