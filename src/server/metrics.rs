//! `GET /metrics` (OpenMetrics text, which Prometheus scrapes) and the layer that counts webhook deliveries by event and
//! result.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// How a delivery ended, set by the webhook handler on its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliveryResult(pub &'static str);

pub async fn metrics(State(state): State<AppState>) -> Response {
    let jobs = match tokio::time::timeout(Duration::from_secs(2), state.store().job_counts()).await
    {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the store did not answer");
            None
        }
        Err(_) => None,
    };
    let mut resp = (StatusCode::OK, state.metrics().render(jobs.as_ref())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// Counts each delivery. The event label comes from `X-GitHub-Event` only for deliveries whose
/// signature was checked, so unsigned requests cannot invent label values.
pub async fn count_deliveries(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let event = req
        .headers()
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .filter(|e| {
            !e.is_empty() && e.len() <= 64 && e.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned);
    let resp = next.run(req).await;
    let status = resp.status();
    let result = match resp.extensions().get::<DeliveryResult>() {
        Some(r) => r.0,
        None => match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::BAD_REQUEST => "bad_request",
            s if s.is_success() => "accepted",
            _ => "error",
        },
    };
    let verified = !matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::SERVICE_UNAVAILABLE
    ) || resp.extensions().get::<DeliveryResult>().is_some();
    let event = match (verified, event) {
        (true, Some(e)) => e,
        _ => "unknown".to_owned(),
    };
    state.metrics().delivery(&event, result);
    resp
}
