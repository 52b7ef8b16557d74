//! The HTTP stack under octocrab. octocrab builds the requests (its typed calls, or
//! [`send`] for the ones Backspace builds itself), sets the credential and hands them to this
//! stack, built once per process with octocrab's `with_service` / `with_layer`:
//!
//! ```text
//! octocrab (routes, auth header) → Accept header → base URI → Pace → Retry → Leaf (reqwest)
//! ```
//!
//! - [`PaceLayer`]: at most `concurrent` requests in flight, and every write waits for its
//!   installation's [`WritePacer`] in its class (see `pacing`).
//! - [`RetryLayer`]: Backspace's one retry policy (`crate::retry`) with GitHub's classification
//!   (`super::retry`): 5xx, 429 and secondary rate limits are retried after `retry-after` with
//!   bounded, jittered backoff. A write that must not be sent twice (a create that may have gone
//!   through) is retried only where GitHub surely did nothing (a rate limit, a refused
//!   connection); a 5xx or a lost answer goes back to the caller, which looks the result up
//!   first (`super::create_once`).
//! - [`Leaf`]: hand-written only because octocrab's own `reqwest` connector is built on
//!   reqwest 0.13 while the rest of Backspace (the model clients) uses 0.12; this one reuses
//!   the process's reqwest 0.12 (one TLS stack, one connection pool, its timeouts).
//!
//! What a request is (its installation, its write class, whether it may be sent blindly again)
//! travels as a [`RequestMeta`] request extension, which passes octocrab's buffer untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use octocrab::{OctoBody, Octocrab};
use tower::{Layer, Service, ServiceExt as _};

use super::error::{ErrorBody, GithubError};
use super::models::InstallationId;
use super::pacing::{PacingLimits, WriteClass, WritePacer};
use super::retry::{classify, Outcome};
use crate::retry::{with_retries, Attempt, GaveUp, RetryPolicy};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How the stack treats one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestMeta {
    /// The installation whose pacer a write waits for.
    pub installation: Option<InstallationId>,
    /// `None`: not paced (a read, an app-level call, or a write its caller paced already).
    pub write: Option<WriteClass>,
    /// May a 5xx or a lost answer be retried blindly? No for creates that may have gone
    /// through: their callers look the result up first.
    pub blind_retry: bool,
    /// One attempt only: the caller runs its own retries (the progress writer, which sends
    /// the newest text each time).
    pub single_attempt: bool,
}

impl RequestMeta {
    /// What a request without a meta is: an app-level call or a read, retried freely.
    pub const PLAIN: RequestMeta = RequestMeta {
        installation: None,
        write: None,
        blind_retry: true,
        single_attempt: false,
    };

    pub fn write(installation: InstallationId, class: WriteClass, blind_retry: bool) -> Self {
        RequestMeta {
            installation: Some(installation),
            write: Some(class),
            blind_retry,
            single_attempt: false,
        }
    }
}

/// Why the stack gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("{reason}")]
    Transport { reason: String, maybe_sent: bool },
    /// GitHub asked for a wait longer than the retry budget allows.
    #[error("GitHub asked to wait {wait:?}")]
    WaitTooLong { wait: Duration },
}

type Answer = Response<Full<Bytes>>;

// --- the leaf ---

/// Sends a request with reqwest and reads the whole answer (GitHub's answers are small JSON).
#[derive(Clone)]
pub(crate) struct Leaf {
    http: reqwest::Client,
}

impl Leaf {
    pub fn new(user_agent: &str, policy: &RetryPolicy) -> Result<Leaf, GithubError> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(policy.request_timeout)
            .connect_timeout(policy.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GithubError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Leaf { http })
    }
}

fn transport(e: reqwest::Error) -> HttpFailure {
    HttpFailure::Transport {
        // A refused or failed connection never reached GitHub; anything later may have.
        maybe_sent: !e.is_connect(),
        // Without the URL: it holds no secret, but the caller names the path already.
        reason: e.without_url().to_string(),
    }
}

impl Service<Request<OctoBody>> for Leaf {
    type Response = Answer;
    type Error = HttpFailure;
    type Future = BoxFuture<Result<Answer, HttpFailure>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<OctoBody>) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpFailure::Transport {
                    reason: format!("reading the request body: {e}"),
                    maybe_sent: false,
                })?
                .to_bytes();
            let req =
                reqwest::Request::try_from(Request::from_parts(parts, body)).map_err(|e| {
                    HttpFailure::Transport {
                        reason: e.without_url().to_string(),
                        maybe_sent: false,
                    }
                })?;
            let resp = http.execute(req).await.map_err(transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(transport)?;
            let mut answer = Response::new(Full::new(bytes));
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

// --- retries ---

#[derive(Clone)]
pub(crate) struct RetryLayer {
    policy: Arc<RetryPolicy>,
}

#[derive(Clone)]
pub(crate) struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// One attempt's failure, for the retry loop's log line.
enum Failed {
    Answer(Answer),
    Failure(HttpFailure),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Answer(a) => write!(f, "answered {}", a.status()),
            Failed::Failure(e) => e.fmt(f),
        }
    }
}

fn copy_of(parts: &http::request::Parts, body: &Option<Bytes>) -> Request<OctoBody> {
    let body = body
        .clone()
        .map(OctoBody::from)
        .unwrap_or_else(OctoBody::empty);
    Request::from_parts(parts.clone(), body)
}

impl<S> Service<Request<OctoBody>> for Retry<S>
where
    S: Service<Request<OctoBody>, Response = Answer, Error = HttpFailure> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = HttpFailure;
    type Future = BoxFuture<Result<Answer, HttpFailure>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<OctoBody>) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let meta = req
                .extensions()
                .get::<RequestMeta>()
                .copied()
                .unwrap_or(RequestMeta::PLAIN);
            let (parts, body) = req.into_parts();
            // The body is small JSON already in memory: read once, sent again as needed.
            let body = match body.collect().await {
                Ok(b) => Some(b.to_bytes()).filter(|b| !b.is_empty()),
                Err(e) => {
                    return Err(HttpFailure::Transport {
                        reason: format!("reading the request body: {e}"),
                        maybe_sent: false,
                    })
                }
            };
            let what = format!("GitHub {} {}", parts.method, parts.uri.path());
            let policy = if meta.single_attempt {
                RetryPolicy {
                    max_attempts: 1,
                    ..(*policy).clone()
                }
            } else {
                (*policy).clone()
            };
            let tried = with_retries(&policy, &what, move |_| {
                let request = copy_of(&parts, &body);
                let svc = inner.clone();
                async move { attempt(svc, request, meta).await }
            })
            .await;
            record_call(tried.attempts);
            match tried.result {
                Ok(answer) => Ok(answer),
                Err(GaveUp::Final(Failed::Failure(e)))
                | Err(GaveUp::OutOfAttempts(Failed::Failure(e))) => Err(e),
                Err(GaveUp::Final(Failed::Answer(a)))
                | Err(GaveUp::OutOfAttempts(Failed::Answer(a))) => Ok(a),
                Err(GaveUp::WaitTooLong { wait, .. }) => Err(HttpFailure::WaitTooLong { wait }),
            }
        })
    }
}

/// One attempt, classified: success and final answers are done (the caller reads the error
/// body); what GitHub surely did not act on is retried; a 5xx or a lost answer is retried only
/// when the request may be sent blindly again.
async fn attempt<S>(
    svc: S,
    request: Request<OctoBody>,
    meta: RequestMeta,
) -> Attempt<Answer, Failed>
where
    S: Service<Request<OctoBody>, Response = Answer, Error = HttpFailure>,
{
    let answer = match svc.oneshot(request).await {
        Ok(a) => a,
        Err(HttpFailure::Transport { reason, maybe_sent }) => {
            let error = Failed::Failure(HttpFailure::Transport { reason, maybe_sent });
            return if maybe_sent && !meta.blind_retry {
                Attempt::Failed(error)
            } else {
                Attempt::Retry { error, hint: None }
            };
        }
        Err(e) => return Attempt::Failed(Failed::Failure(e)),
    };
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        return Attempt::Done(answer);
    }
    match classify(status, answer.headers(), crate::clock::unix_secs()) {
        Outcome::Final => Attempt::Done(answer),
        Outcome::Retryable { .. } if status >= 500 && !meta.blind_retry => Attempt::Done(answer),
        Outcome::Retryable { hint } => Attempt::Retry {
            error: Failed::Answer(answer),
            hint,
        },
    }
}

/// Counts one GitHub call (however many attempts it took) in the process's metrics.
fn record_call(attempts: u32) {
    if let Some(m) = crate::metrics::global() {
        m.github_call(attempts > 1);
    }
}

// --- pacing ---

/// The pacers of every installation and the bound on requests in flight; shared by all
/// clients of the app.
pub(crate) struct Pacers {
    limits: PacingLimits,
    by_installation: std::sync::Mutex<std::collections::HashMap<InstallationId, Arc<WritePacer>>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Pacers {
    pub fn new(limits: PacingLimits) -> Self {
        Pacers {
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            limits,
            by_installation: Default::default(),
        }
    }

    pub fn of(&self, installation: InstallationId) -> Arc<WritePacer> {
        let mut map = self
            .by_installation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(installation)
            .or_insert_with(|| Arc::new(WritePacer::new(self.limits.clone())))
            .clone()
    }
}

#[derive(Clone)]
pub(crate) struct PaceLayer {
    pacers: Arc<Pacers>,
}

#[derive(Clone)]
pub(crate) struct Pace<S> {
    inner: S,
    pacers: Arc<Pacers>,
}

impl<S> Layer<S> for PaceLayer {
    type Service = Pace<S>;
    fn layer(&self, inner: S) -> Pace<S> {
        Pace {
            inner,
            pacers: self.pacers.clone(),
        }
    }
}

impl<S> Service<Request<OctoBody>> for Pace<S>
where
    S: Service<Request<OctoBody>, Response = Answer, Error = HttpFailure> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = HttpFailure;
    type Future = BoxFuture<Result<Answer, HttpFailure>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<OctoBody>) -> Self::Future {
        let inner = self.inner.clone();
        let pacers = self.pacers.clone();
        Box::pin(async move {
            let meta = req.extensions().get::<RequestMeta>().copied();
            if let Some(RequestMeta {
                installation: Some(installation),
                write: Some(class),
                ..
            }) = meta
            {
                pacers.of(installation).acquire(class).await;
            }
            // Held until the answer is read: the bound is on requests in flight.
            let _permit = pacers.in_flight.clone().acquire_owned().await;
            inner.oneshot(req).await
        })
    }
}

// --- the client ---

/// The media type GitHub documents for its REST API (octocrab adds `X-GitHub-Api-Version` to
/// every request itself).
pub(crate) const ACCEPT: &str = "application/vnd.github+json";

/// The octocrab client over this stack, without a credential (each call adds its own with
/// `user_access_token`).
pub(crate) fn client(
    base: &url::Url,
    policy: RetryPolicy,
    pacers: Arc<Pacers>,
    user_agent: &str,
) -> Result<Octocrab, GithubError> {
    let base: http::Uri = base
        .as_str()
        .parse()
        .map_err(|_| GithubError::Invalid("GITHUB_API_URL is not a URI".into()))?;
    let accept = (http::header::ACCEPT, http::HeaderValue::from_static(ACCEPT));
    let leaf = Leaf::new(user_agent, &policy)?;
    let crab = octocrab::OctocrabBuilder::new_empty()
        .with_service(leaf)
        .with_layer(&RetryLayer {
            policy: Arc::new(policy),
        })
        .with_layer(&PaceLayer { pacers })
        .with_layer(&octocrab::service::middleware::base_uri::BaseUriLayer::new(
            base,
        ))
        .with_layer(
            &octocrab::service::middleware::extra_headers::ExtraHeadersLayer::new(Arc::new(vec![
                accept,
            ])),
        )
        .with_auth(octocrab::AuthState::None)
        .build()
        .map_err(|e| GithubError::Invalid(format!("GitHub client: {e}")))?;
    Ok(crab)
}

/// An API route from raw path segments, each percent-encoded on its own (a file path passes
/// its own segments), with a query.
pub(crate) fn route<S: AsRef<str>>(segments: &[S], query: &[(&str, &str)]) -> String {
    // Any base works: only the encoded path and query are kept.
    let mut url = url::Url::parse("http://github.invalid/").unwrap_or_else(|_| unreachable!());
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s.as_ref());
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    method: Method,
    path: String,
}

impl Raw {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer, or GitHub's error read whole.
    pub fn ok(self) -> Result<Raw, GithubError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(GithubError::Api {
                status: self.status,
                method: self.method.to_string(),
                path: self.path.clone(),
                body: ErrorBody::parse(&self.body),
            })
        }
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, GithubError> {
        serde_json::from_slice(&self.body).map_err(|e| GithubError::Decode {
            method: self.method.to_string(),
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

/// Sends a request Backspace builds itself through octocrab (its credential, its headers, this
/// stack), with `meta`, and reads the whole answer, whatever its status.
pub(crate) async fn send(
    crab: &Octocrab,
    method: Method,
    route: &str,
    body: Option<&serde_json::Value>,
    meta: RequestMeta,
) -> Result<Raw, GithubError> {
    let path = route.split('?').next().unwrap_or(route).to_string();
    let builder = Request::builder()
        .method(method.clone())
        .uri(route)
        .extension(meta);
    let request = crab
        .build_request(builder, body)
        .map_err(|e| from_octocrab(e, &method, &path))?;
    let answer = crab
        .execute(request)
        .await
        .map_err(|e| from_octocrab(e, &method, &path))?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| from_octocrab(e, &method, &path))?
        .to_bytes();
    Ok(Raw {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        method,
        path,
    })
}

/// octocrab's error as Backspace's, for a call described by `method` and `path`.
pub(crate) fn from_octocrab(e: octocrab::Error, method: &Method, path: &str) -> GithubError {
    let (method, path) = (method.to_string(), path.to_string());
    match e {
        octocrab::Error::GitHub { source, .. } => GithubError::Api {
            status: source.status_code.as_u16(),
            body: ErrorBody::from_parts(
                &source.message,
                source.errors.as_deref(),
                source.documentation_url.clone(),
            ),
            method,
            path,
        },
        octocrab::Error::Service { source, .. } => match source.downcast_ref::<HttpFailure>() {
            Some(HttpFailure::WaitTooLong { wait }) => GithubError::RateLimited {
                method,
                path,
                wait: *wait,
            },
            Some(HttpFailure::Transport { reason, maybe_sent }) => GithubError::Transport {
                method,
                path,
                reason: reason.clone(),
                maybe_sent: *maybe_sent,
            },
            None => GithubError::Transport {
                method,
                path,
                reason: source.to_string(),
                maybe_sent: true,
            },
        },
        octocrab::Error::Serde { source, .. } => GithubError::Decode {
            method,
            path,
            reason: source.to_string(),
        },
        octocrab::Error::Json { source, .. } => GithubError::Decode {
            method,
            path,
            reason: format!("{} at {}", source.inner(), source.path()),
        },
        other => GithubError::Invalid(format!("{method} {path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_encode_each_segment_and_keep_the_query() {
        assert_eq!(
            route(
                &["repos", "o", "r", "contents", ".github", "back space.yml"],
                &[]
            ),
            "/repos/o/r/contents/.github/back%20space.yml"
        );
        assert_eq!(
            route(&["repos", "o", "r", "issues", "a/b"], &[("page", "2")]),
            "/repos/o/r/issues/a%2Fb?page=2"
        );
    }
}
