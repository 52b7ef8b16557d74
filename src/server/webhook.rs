//! `POST /api/github/webhooks`: verify, then parse, then store, then answer.
//!
//! The [`VerifiedDelivery`] extractor refuses a missing or malformed `X-Hub-Signature-256` and an
//! over-size `Content-Length` before reading the body, then reads it under a cap and a shared
//! budget of bytes in flight, computing the HMAC as it streams in, and checks it before anything
//! is parsed (as rust-lang/bors does);
//! the handler turns it into a domain event, applies the trigger rules, and stores the delivery
//! with its job in one transaction before answering. Nothing slow happens here.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use super::{json_error, AppState};
use crate::store::{DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery};
use crate::trigger::{self, Decision};
use crate::webhook::signature::{SignatureError, Verifier};
use crate::webhook::{self, InstallationAction, RepositoriesAction, WebhookEvent};

/// GitHub caps payloads at 25 MB; anything larger is refused unread.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;

/// A delivery whose signature checked out.
pub struct VerifiedDelivery {
    pub event: String,
    pub delivery_id: String,
    pub body: Bytes,
    /// The body's share of the bytes-in-flight budget, given back when the delivery is done.
    _held: Option<OwnedSemaphorePermit>,
}

impl FromRequest<AppState> for VerifiedDelivery {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let secrets = match state.secrets() {
            Ok(s) => s,
            Err(missing) => {
                return Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Backspace is in setup mode (missing {missing}); open /setup to register the GitHub App"),
                    json!({}),
                ))
            }
        };
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_WEBHOOK_BODY as u64) {
            return Err(too_large());
        }
        // An unsigned client is refused before a byte of its body is read.
        let signature = parts
            .headers
            .get("x-hub-signature-256")
            .map(|v| v.as_bytes());
        let verifier = secrets.verifier(signature).map_err(refused)?;
        let budget = state.doors().webhook_budget.clone();
        let (body, held) = read_signed(body, verifier, budget).await?;
        let event = header_token(&parts.headers, "x-github-event", 64, |c| {
            c.is_ascii_lowercase() || c == '_'
        })
        .map_err(IntoResponse::into_response)?;
        let delivery_id = header_token(&parts.headers, "x-github-delivery", 128, |c| {
            c.is_ascii_graphic()
        })
        .map_err(IntoResponse::into_response)?;
        Ok(VerifiedDelivery {
            event,
            delivery_id,
            body,
            _held: held,
        })
    }
}

/// A refused signature: 401. Only the fact is logged: never the body, the header or the
/// expected digest.
fn refused(e: SignatureError) -> Response {
    tracing::warn!(reason = %e, "refused a webhook delivery");
    json_error(StatusCode::UNAUTHORIZED, e.to_string(), json!({}))
}

/// Reads a webhook body under [`MAX_WEBHOOK_BODY`], feeding the HMAC as it streams in, with a
/// permit of the shared budget for every byte it holds (a delivery that would pass the budget is
/// answered 503 with `Retry-After`, and its body is not read further).
async fn read_signed(
    body_stream: axum::body::Body,
    mut verifier: Verifier,
    budget: Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Response> {
    let mut held: Option<OwnedSemaphorePermit> = None;
    // Most bodies come in one chunk, kept as it is; a body in several is copied together as it
    // comes (so that no chunk keeps the connection's read buffer alive).
    let mut body = Joined::default();
    let mut stream = body_stream.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            json_error(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
                json!({}),
            )
        })?;
        if body.len() + chunk.len() > MAX_WEBHOOK_BODY {
            return Err(too_large());
        }
        let n = u32::try_from(chunk.len()).map_err(|_| too_large())?;
        let permit = budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| busy())?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        verifier.update(&chunk);
        body.push(chunk);
    }
    verifier.finish().map_err(refused)?;
    Ok((body.into_bytes(), held))
}

/// A body read chunk by chunk.
#[derive(Default)]
enum Joined {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Joined {
    fn len(&self) -> usize {
        match self {
            Joined::Empty => 0,
            Joined::One(b) => b.len(),
            Joined::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        *self = match std::mem::take(self) {
            Joined::Empty => Joined::One(chunk),
            Joined::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + chunk.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&chunk);
                Joined::Many(all)
            }
            Joined::Many(mut all) => {
                all.extend_from_slice(&chunk);
                Joined::Many(all)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Joined::Empty => Bytes::new(),
            Joined::One(b) => b,
            Joined::Many(b) => b.freeze(),
        }
    }
}

/// The bytes-in-flight budget is spent: GitHub (or its redelivery) tries again.
fn busy() -> Response {
    tracing::warn!("a webhook delivery was refused: BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT is reached");
    let mut resp = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many webhook bytes in flight; retry in 1 second",
        json!({}),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(1u32));
    resp
}

fn too_large() -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("webhook bodies are limited to {MAX_WEBHOOK_BODY} bytes"),
        json!({}),
    )
}

/// A required header that is missing or not of its form.
struct HeaderError {
    name: &'static str,
    missing: bool,
}

impl IntoResponse for HeaderError {
    fn into_response(self) -> Response {
        let what = if self.missing { "missing" } else { "invalid" };
        json_error(
            StatusCode::BAD_REQUEST,
            format!("{what} header {}", self.name),
            json!({ "field": self.name }),
        )
    }
}

/// A required header of limited length and alphabet.
fn header_token(
    headers: &HeaderMap,
    name: &'static str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<String, HeaderError> {
    let invalid = HeaderError {
        name,
        missing: false,
    };
    let value = headers.get(name).ok_or(HeaderError {
        name,
        missing: true,
    })?;
    match value.to_str() {
        Ok(v) if !v.is_empty() && v.len() <= max && v.chars().all(allowed) => Ok(v.to_owned()),
        _ => Err(invalid),
    }
}

pub async fn receive(State(state): State<AppState>, delivery: VerifiedDelivery) -> Response {
    let span = tracing::info_span!("delivery", id = %delivery.delivery_id, event = %delivery.event);
    handle(state, delivery).instrument(span).await
}

/// Parses, decides, stores and answers, inside the delivery's span.
async fn handle(state: AppState, delivery: VerifiedDelivery) -> Response {
    let VerifiedDelivery {
        event,
        delivery_id,
        body,
        _held,
    } = delivery;

    let parsed = webhook::parse_delivery(&event, &body);
    let (meta, parsed) = match parsed {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(path = %e.path, error = %e.message, "a signed delivery is not valid JSON for its event");
            return with_result(
                "bad_payload",
                json_error(
                    StatusCode::BAD_REQUEST,
                    e.to_string(),
                    json!({ "field": e.path }),
                ),
            );
        }
    };

    let mut record = NewDelivery {
        delivery_id,
        event,
        action: meta.action,
        installation_id: meta.installation_id,
        repository: meta.repository,
        replay_keys: vec![],
    };
    let installation_change;
    let decision;
    let effect = match &parsed {
        None => DeliveryEffect::Nothing {
            reason: "event not acted on",
        },
        Some(ev) => match installation_change_of(ev) {
            Some(change) => {
                installation_change = change;
                DeliveryEffect::Installation(&installation_change)
            }
            None => {
                decision = trigger::decide(ev, &state.trigger());
                match &decision {
                    Decision::Job(job) => DeliveryEffect::Job(job),
                    Decision::Deny(denial) => DeliveryEffect::Denied(denial),
                    Decision::Ignore(why) => DeliveryEffect::Nothing {
                        reason: why.as_str(),
                    },
                }
            }
        },
    };

    record.replay_keys = replay_keys(&effect, parsed.as_ref(), &body);
    let outcome = state.store().record_delivery(&record, effect).await;
    let (result, response) = answer(&state, &record, effect, outcome);
    with_result(result, response)
}

/// The answer to a delivery, by what storing it did, and how it ended (for the metric).
fn answer(
    state: &AppState,
    record: &NewDelivery,
    effect: DeliveryEffect<'_>,
    outcome: Result<DeliveryOutcome, crate::store::StoreError>,
) -> (&'static str, Response) {
    match outcome {
        Ok(DeliveryOutcome::Duplicate) => {
            tracing::debug!("duplicate delivery acknowledged");
            (
                "duplicate",
                (StatusCode::OK, Json(json!({ "status": "duplicate" }))).into_response(),
            )
        }
        Ok(DeliveryOutcome::Replay) => {
            tracing::warn!(
                "a replayed delivery (a request seen under another delivery id) started nothing"
            );
            (
                "replay",
                (StatusCode::OK, Json(json!({ "status": "replay" }))).into_response(),
            )
        }
        Ok(DeliveryOutcome::Stored {
            job_id: Some(job_id),
            ..
        }) => {
            tracing::info!(%job_id, repository = ?record.repository, "job queued");
            state.wake().notify_one();
            (
                "queued",
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "status": "queued", "job_id": job_id })),
                )
                    .into_response(),
            )
        }
        Ok(DeliveryOutcome::Stored {
            job_id: None,
            cancelled_jobs,
        }) => {
            let (result, reason) = match effect {
                DeliveryEffect::Nothing { reason } => ("ignored", reason),
                DeliveryEffect::Denied(_) => ("denied", "the requester has no write access"),
                _ => ("recorded", "recorded"),
            };
            tracing::debug!(reason, cancelled_jobs, "delivery recorded");
            if let (Some(app), DeliveryEffect::Installation(change)) = (state.github(), effect) {
                if change.state.is_some_and(|s| s != "active") {
                    app.forget_installation(crate::github::InstallationId(change.id));
                }
            }
            (
                result,
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "status": "recorded", "reason": reason })),
                )
                    .into_response(),
            )
        }
        Err(e) => {
            // 503 for every store failure: GitHub's redelivery (or the operator's) brings the
            // delivery back once the store answers again.
            tracing::error!(error = %e, "could not store a delivery");
            (
                "store_unavailable",
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the job store is unavailable; redeliver later",
                    json!({}),
                ),
            )
        }
    }
}

/// What makes this delivery a replay if seen before: for a delivery with an effect, its body,
/// and for a job its request (a comment's id and body, a label event).
fn replay_keys(
    effect: &DeliveryEffect<'_>,
    event: Option<&WebhookEvent>,
    body: &[u8],
) -> Vec<String> {
    match effect {
        DeliveryEffect::Nothing { .. } => vec![],
        DeliveryEffect::Installation(_) => vec![trigger::body_replay_key(body)],
        _ => std::iter::once(trigger::body_replay_key(body))
            .chain(event.and_then(trigger::replay_key))
            .collect(),
    }
}

/// Tags an answer with how the delivery ended, for the deliveries metric.
fn with_result(result: &'static str, mut response: Response) -> Response {
    response
        .extensions_mut()
        .insert(super::metrics::DeliveryResult(result));
    response
}

fn installation_change_of(ev: &WebhookEvent) -> Option<InstallationChange> {
    match ev {
        WebhookEvent::Installation {
            action,
            installation,
            repositories,
            ..
        } => Some(InstallationChange {
            id: installation.id,
            account: installation.account.login.clone(),
            state: Some(match action {
                InstallationAction::Created | InstallationAction::Unsuspend => "active",
                InstallationAction::Deleted => "deleted",
                InstallationAction::Suspend => "suspended",
            }),
            repositories: matches!(action, InstallationAction::Created)
                .then(|| repositories.clone()),
            added: vec![],
            removed: vec![],
        }),
        WebhookEvent::InstallationRepositories {
            action,
            installation,
            added,
            removed,
            ..
        } => Some(InstallationChange {
            id: installation.id,
            account: installation.account.login.clone(),
            state: None,
            repositories: None,
            added: if *action == RepositoriesAction::Added {
                added.clone()
            } else {
                vec![]
            },
            removed: if *action == RepositoriesAction::Removed {
                removed.clone()
            } else {
                vec![]
            },
        }),
        _ => None,
    }
}
