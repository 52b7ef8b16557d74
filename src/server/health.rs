//! `GET /health`: 200 when the store answers, 503 otherwise; says whether the app is set up.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

pub async fn health(State(state): State<AppState>) -> Response {
    let setup = state.secrets().is_err();
    match tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ok", "setup_mode": setup })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "store unavailable" })),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "store timed out" })),
        )
            .into_response(),
    }
}
