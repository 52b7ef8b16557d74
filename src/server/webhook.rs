//! `POST /api/github/webhooks`: verify, then parse, then store, then answer.
//!
//! The [`VerifiedDelivery`] extractor reads the body under a cap and checks
//! `X-Hub-Signature-256` over the raw bytes before anything is parsed (as rust-lang/bors does);
//! the handler turns it into a domain event, applies the trigger rules, and stores the delivery
//! with its job in one transaction before answering. Nothing slow happens here.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::Instrument as _;

use super::{json_error, AppState};
use crate::store::{DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery};
use crate::trigger::{self, Decision};
use crate::webhook::{self, InstallationAction, RepositoriesAction, WebhookEvent};

/// GitHub caps payloads at 25 MB; anything larger is refused unread.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;

/// A delivery whose signature checked out.
pub struct VerifiedDelivery {
    pub event: String,
    pub delivery_id: String,
    pub body: Bytes,
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
        let body = match Limited::new(body, MAX_WEBHOOK_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
            Err(_) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                    json!({}),
                ))
            }
        };
        let signature = parts
            .headers
            .get("x-hub-signature-256")
            .map(|v| v.as_bytes());
        if let Err(e) = secrets.verify(signature, &body) {
            // Only the fact is logged: never the body, the header or the expected digest.
            tracing::warn!(reason = %e, "refused a webhook delivery");
            return Err(json_error(
                StatusCode::UNAUTHORIZED,
                e.to_string(),
                json!({}),
            ));
        }
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
        })
    }
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

    let record = NewDelivery {
        delivery_id,
        event,
        action: meta.action,
        installation_id: meta.installation_id,
        repository: meta.repository,
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
                    Decision::Ignore(why) => DeliveryEffect::Nothing {
                        reason: why.as_str(),
                    },
                }
            }
        },
    };

    let (result, response) = match state.store().record_delivery(&record, effect).await {
        Ok(DeliveryOutcome::Duplicate) => {
            tracing::debug!("duplicate delivery acknowledged");
            (
                "duplicate",
                (StatusCode::OK, Json(json!({ "status": "duplicate" }))).into_response(),
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
    };
    with_result(result, response)
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
