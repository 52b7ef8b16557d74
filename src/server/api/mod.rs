//! The HTTP API: `POST /api/code` starts a run on a repository where the app is installed and
//! streams its events (or answers 202 with `Accept: application/json`); `GET /api/runs/{id}` is
//! a run's state and outcome; `GET /api/runs/{id}/events` its event stream, resumable with
//! `Last-Event-ID`.
//!
//! Every route needs `Authorization: Bearer <BACKSPACE_API_KEY>`, compared in constant time.
//! Without `BACKSPACE_API_KEY` the API is off and answers 404 saying so (404 rather than 503:
//! nothing will bring it up but the operator, so clients should not retry). Only starting runs
//! is rate limited (per key, a token bucket): reads are cheap, and an EventSource that
//! reconnects must not be refused.

pub mod input;
pub mod rate_limit;

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, Limited};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{events, json_error, run_link, AppState};
use crate::github::RepoName;
use crate::job::{AgentSpec, JobRequest, JobResult, JobSource, JobSpec};
use crate::run_event::RunEvent;
use input::{parse_code_request, InputError};

/// Bodies over this are refused unread (a 16,000-character prompt is at most 64 KiB of UTF-8).
pub const MAX_API_BODY: usize = 80 * 1024;

/// Who called: the key's id (a digest prefix, for the rate limit; never the key).
struct Caller {
    key_id: String,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Why a request was not let in.
enum Refused {
    ApiOff,
    BadKey,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::ApiOff => json_error(
                StatusCode::NOT_FOUND,
                "the HTTP API is off on this server: set BACKSPACE_API_KEY to turn it on",
                json!({}),
            ),
            Refused::BadKey => {
                let mut resp = json_error(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong API key: send Authorization: Bearer <BACKSPACE_API_KEY>",
                    json!({}),
                );
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
        }
    }
}

/// Checks the bearer key. Digests are compared so that the comparison takes the same time
/// whatever the lengths.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, Refused> {
    let doors = state.doors();
    let Some(key) = doors.config.api_key.as_ref() else {
        return Err(Refused::ApiOff);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let expected = digest(key.expose_secret().as_bytes());
    let ok = presented.is_some_and(|p| bool::from(digest(p.as_bytes()).ct_eq(&expected)));
    if !ok {
        return Err(Refused::BadKey);
    }
    Ok(Caller {
        key_id: hex::encode(&expected[..8]),
    })
}

fn bad_input(e: InputError) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        e.message,
        json!({ "field": e.field }),
    )
}

fn store_down(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "api: the store failed");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the job store is unavailable; try again later",
        json!({}),
    )
}

fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/event-stream")
}

/// The installation that covers `repo`: the one recorded from installation events, else (when
/// the GitHub client is up) the one GitHub names. `Ok(None)`: the app is not installed there.
async fn installation_for(state: &AppState, repo: &RepoName) -> Result<Option<u64>, Response> {
    match state
        .store()
        .installation_for_repository(&repo.full_name())
        .await
    {
        Ok(Some(id)) => return Ok(Some(id)),
        Ok(None) => {}
        Err(e) => return Err(store_down(e)),
    }
    let Some(app) = state.github() else {
        return Ok(None);
    };
    match app.installation_for_repo(repo).await {
        Ok(id) => Ok(Some(id.0)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, repo = %repo, "api: GitHub did not say which installation covers a repository");
            Err(json_error(
                StatusCode::BAD_GATEWAY,
                "GitHub did not answer which installation covers this repository; try again later",
                json!({}),
            ))
        }
    }
}

/// `POST /api/code`. Bad input is answered (400 or 413, naming the field) before the rate limit
/// is looked at: only a request that would start a run takes a token.
pub async fn create_run(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let caller = match authenticate(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let doors = state.doors();
    let req = match read_code_request(&headers, body, &doors.config.github_url).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let installation = match installation_for(&state, &req.repo).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return json_error(
                StatusCode::NOT_FOUND,
                format!(
                    "the Backspace app is not installed on {}: install it on the repository first",
                    req.repo
                ),
                json!({ "field": "repoUrl" }),
            )
        }
        Err(r) => return r,
    };
    if let Err(wait) = doors.limiter.check(&caller.key_id, Instant::now()) {
        state.metrics().api_rate_limited();
        return rate_limited(wait);
    }
    let clone_url = format!(
        "{}/{}/{}.git",
        doors.config.github_url.as_str().trim_end_matches('/'),
        req.repo.owner,
        req.repo.name
    );
    let job = JobRequest {
        spec: JobSpec::Run(AgentSpec::default()),
        source: JobSource::Api,
        installation_id: Some(installation),
        repository: req.repo.full_name(),
        clone_url: Some(clone_url),
        default_branch: None,
        number: None,
        is_pull_request: false,
        comment_id: None,
        requester: "api".into(),
        prompt: req.prompt,
    };
    let run_id = match state.store().insert_job(&job).await {
        Ok(id) => id,
        Err(e) => return store_down(e),
    };
    state.metrics().api_run();
    state.wake().notify_one();
    tracing::info!(%run_id, repository = %job.repository, "api: run queued");
    let base = run_link::base(&doors.config.public_url);
    let events_url = format!("{base}/api/runs/{run_id}/events");
    let mut resp = if wants_json(&headers) {
        let mut body = json!({ "runId": run_id, "status": "queued", "eventsUrl": events_url });
        if let Some(link) = state.run_link(&run_id) {
            body["runUrl"] = link.into();
        }
        (StatusCode::ACCEPTED, Json(body)).into_response()
    } else {
        events::sse(state.store().clone(), run_id.clone(), 0, state.closing()).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&format!("/api/runs/{run_id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&run_id) {
        resp.headers_mut().insert("x-backspace-run-id", v);
    }
    resp
}

/// The body of `POST /api/code`, checked: JSON by content type, within [`MAX_API_BODY`] (a
/// larger `Content-Length` is refused unread), and every field valid.
async fn read_code_request(
    headers: &HeaderMap,
    body: Body,
    github_url: &url::Url,
) -> Result<input::CodeRequest, Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "send the body as JSON with Content-Type: application/json",
            json!({ "field": "content-type" }),
        ));
    }
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("bodies are limited to {MAX_API_BODY} bytes"),
            json!({ "field": "body" }),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_API_BODY as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(body, MAX_API_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Err(too_large()),
    };
    parse_code_request(&bytes, github_url).map_err(bad_input)
}

/// 429 with `Retry-After` in whole seconds.
fn rate_limited(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many runs started with this key; retry in {secs} s"),
        json!({ "retry_after": secs }),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// A run id is 32 hex digits; anything else is not a run (and never reaches a query).
fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn no_such_run() -> Response {
    json_error(StatusCode::NOT_FOUND, "no run with this id", json!({}))
}

/// `GET /api/runs/{id}`: the job's state and what its events and result say.
pub async fn get_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authenticate(&state, &headers) {
        return r.into_response();
    }
    if !valid_run_id(&id) {
        return no_such_run();
    }
    let job = match state.store().job(&id).await {
        Ok(Some(j)) => j,
        Ok(None) => return no_such_run(),
        Err(e) => return store_down(e),
    };
    let events = match state.store().events_after(&id, 0).await {
        Ok(e) => e,
        Err(e) => return store_down(e),
    };
    let summary = RunSummary::of(events.iter().map(|e| &e.event), job.result.as_ref());
    let base = run_link::base(&state.doors().config.public_url);
    let mut body = json!({
        "runId": job.id,
        "state": job.state.as_str(),
        "status": summary.status,
        "kind": job.kind().as_str(),
        "source": job.source.as_str(),
        "repository": job.repository,
        "number": job.number,
        "prompt": job.prompt,
        "prUrl": summary.pr_url,
        "filesChanged": summary.files_changed,
        "usage": summary.usage,
        "costUsd": summary.cost_usd,
        "durationMs": summary.duration_ms,
        "error": summary.error,
        "summary": summary.summary,
        "events": events.len(),
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
        "eventsUrl": format!("{base}/api/runs/{}/events", job.id),
    });
    if let Some(link) = state.run_link(&job.id) {
        body["runUrl"] = link.into();
    }
    Json(body).into_response()
}

/// `GET /api/runs/{id}/events`.
pub async fn run_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authenticate(&state, &headers) {
        return r.into_response();
    }
    stream_run(&state, &headers, &id).await
}

/// The SSE answer for a run that exists (shared with the run page).
pub(crate) async fn stream_run(state: &AppState, headers: &HeaderMap, id: &str) -> Response {
    let after = match events::last_event_id(headers) {
        Ok(n) => n,
        Err(()) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "Last-Event-ID must be the number of an event",
                json!({ "field": "last-event-id" }),
            )
        }
    };
    if !valid_run_id(id) {
        return no_such_run();
    }
    match state.store().job(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_such_run(),
        Err(e) => return store_down(e),
    }
    events::sse(state.store().clone(), id.to_owned(), after, state.closing()).into_response()
}

/// Pure: what a run's events (and its job result, for what events lack) say about its outcome.
#[derive(Debug, Default, PartialEq)]
pub struct RunSummary {
    pub status: Option<Value>,
    pub pr_url: Option<String>,
    pub files_changed: Vec<String>,
    pub usage: Option<Value>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// The agent's summary (or its answer when nothing changed), from the job's result.
    pub summary: Option<String>,
}

impl RunSummary {
    pub fn of<'a>(events: impl Iterator<Item = &'a RunEvent>, result: Option<&JobResult>) -> Self {
        let mut s = RunSummary::default();
        for e in events {
            match e {
                RunEvent::PrCreated {
                    pr_url,
                    files_changed,
                } => {
                    s.pr_url = Some(pr_url.clone());
                    s.files_changed = files_changed.clone();
                }
                RunEvent::Error { message } => s.error = Some(message.clone()),
                RunEvent::Complete {
                    status,
                    duration_ms,
                    usage,
                    cost_usd,
                    ..
                } => {
                    s.status = serde_json::to_value(status).ok();
                    s.duration_ms = Some(*duration_ms);
                    s.usage = serde_json::to_value(usage).ok();
                    s.cost_usd = Some(*cost_usd);
                }
                _ => {}
            }
        }
        if let Some(r) = result {
            let report = r.report();
            s.pr_url = s.pr_url.or_else(|| report.and_then(|p| p.pr_url.clone()));
            s.error = s.error.or_else(|| r.error().map(str::to_owned));
            s.usage = s
                .usage
                .or_else(|| report.and_then(|p| serde_json::to_value(p.usage).ok()));
            s.cost_usd = s.cost_usd.or_else(|| report.and_then(|p| p.cost_usd));
            s.status = s.status.or_else(|| r.to_json().get("status").cloned());
            s.duration_ms = s.duration_ms.or_else(|| r.duration_ms());
            if s.files_changed.is_empty() {
                if let Some(p) = report {
                    s.files_changed = p.files_changed.clone();
                }
            }
            s.summary = report.and_then(|p| p.summary.clone());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::RunReport;
    use crate::run_event::{RunStatus, Usage};

    #[test]
    fn the_summary_takes_the_pr_and_totals_from_the_events() {
        let events = [
            RunEvent::PrCreated {
                pr_url: "https://github.com/o/r/pull/3".into(),
                files_changed: vec!["a".into()],
            },
            RunEvent::Complete {
                run_id: "x".into(),
                status: RunStatus::Succeeded,
                duration_ms: 1200,
                usage: Usage {
                    input_tokens: 3,
                    ..Usage::default()
                },
                cost_usd: 0.5,
            },
        ];
        let ignored = JobResult::Succeeded(RunReport {
            pr_url: Some("ignored".into()),
            ..Default::default()
        });
        let s = RunSummary::of(events.iter(), Some(&ignored));
        assert_eq!(s.pr_url.as_deref(), Some("https://github.com/o/r/pull/3"));
        assert_eq!(s.status, Some(json!("succeeded")));
        assert_eq!(s.cost_usd, Some(0.5));
        assert_eq!(s.usage.unwrap()["input_tokens"], 3);
    }

    #[test]
    fn the_summary_falls_back_on_the_job_result() {
        let cancelled = JobResult::from_stored(r#"{ "reason": "cancelled by alice" }"#).unwrap();
        let s = RunSummary::of([].iter(), Some(&cancelled));
        assert_eq!(s.error.as_deref(), Some("cancelled by alice"));
        assert_eq!(s.pr_url, None);
        let answered = JobResult::from_stored(
            r#"{ "status": "answered", "summary": "It works already.", "files_changed": [], "duration_ms": 5 }"#,
        )
        .unwrap();
        let s = RunSummary::of([].iter(), Some(&answered));
        assert_eq!(s.summary.as_deref(), Some("It works already."));
        assert_eq!(s.duration_ms, Some(5));
        assert_eq!(s.status, Some(json!("answered")));
    }

    #[test]
    fn json_is_chosen_only_when_asked_for() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream, application/json"),
        );
        assert!(!wants_json(&h));
    }
}
