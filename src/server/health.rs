//! Probes, as Kubernetes and Fly name them, and the home page:
//! - `GET /livez`: 200 while the process serves HTTP (restart it when this fails);
//! - `GET /readyz` and `GET /health`: 200 only when a run could start now: the store answers,
//!   the app's credentials are loaded (not setup mode) with the GitHub client and workers
//!   started, and the Docker engine answers; otherwise 503 naming each part that is not;
//! - `GET /`: what this server is (the app's homepage and its `setup_url` in the manifest).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{html, AppState};

/// How long one part may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let setup_mode = state.secrets().is_err();
    let store = async {
        match tokio::time::timeout(PROBE_TIMEOUT, state.store().ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                Err("unavailable".to_owned())
            }
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let docker = async {
        let Some(sandboxes) = state.sandboxes() else {
            return Err("not connected (the workers have not started)".to_owned());
        };
        match tokio::time::timeout(PROBE_TIMEOUT, sandboxes.docker().ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the Docker engine does not answer");
                Err("unavailable".to_owned())
            }
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let (store, docker) = tokio::join!(store, docker);
    let credentials = match (state.secrets(), state.github()) {
        (Err(missing), _) => Err(format!("setup mode: missing {missing}")),
        (Ok(_), None) => Err("the GitHub client has not started".to_owned()),
        (Ok(_), Some(_)) => Ok(()),
    };
    readiness(
        setup_mode,
        &[
            ("store", store),
            ("credentials", credentials),
            ("docker", docker),
        ],
    )
}

/// Pure: the answer for these checks: 200 `{"status":"ok"}` when all passed, else 503
/// `{"status":"not ready"}`; `checks` says `"ok"` or what is wrong for each.
fn readiness(setup_mode: bool, checks: &[(&str, Result<(), String>)]) -> Response {
    let mut by_name = Map::new();
    for (name, result) in checks {
        let v = match result {
            Ok(()) => "ok".to_owned(),
            Err(why) => why.clone(),
        };
        by_name.insert((*name).to_owned(), Value::String(v));
    }
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    let body = Json(json!({
        "status": if ok { "ok" } else { "not ready" },
        "setup_mode": setup_mode,
        "checks": by_name,
    }));
    if ok {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

const HOME: &str = "<h1>Backspace</h1>\
<p>A GitHub App that turns <code>/backspace &lt;request&gt;</code>, commented on an issue, into a \
pull request written by a Claude agent in a locked-down sandbox.</p>\
<p>Installed on a repository? Comment <code>/backspace add input validation to the signup \
form</code> on one of its issues, or label an issue <code>backspace</code>; \
<code>/backspace help</code> lists the commands. A repository may add \
<code>.github/backspace.yml</code> (setup and test commands, instructions).</p>";

pub async fn home() -> Response {
    html::respond(StatusCode::OK, html::page("Backspace", "", HOME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response) -> (StatusCode, Value) {
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn ready_only_when_every_part_is() {
        let (s, b) = body(readiness(false, &[("store", Ok(())), ("docker", Ok(()))])).await;
        assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
        let (s, b) = body(readiness(
            true,
            &[
                ("store", Ok(())),
                ("credentials", Err("setup mode: missing APP_ID".into())),
            ],
        ))
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["checks"]["store"], "ok");
        assert_eq!(b["checks"]["credentials"], "setup mode: missing APP_ID");
        assert_eq!(b["setup_mode"], true);
    }
}
