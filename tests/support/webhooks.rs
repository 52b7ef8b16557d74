//! Signed webhook deliveries built from GitHub's own payload examples in `../shared/fixtures`,
//! and a router over a real store to send them to.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use backspace::config::AppCredentials;
use backspace::server::{router, AppState, DoorsConfig};
use backspace::store::Store;
use backspace::trigger::TriggerContext;
use backspace::webhook::signature::{sign, WebhookSecrets};
use http_body_util::BodyExt;
use secrecy::SecretString;
use tower::ServiceExt;

pub const SECRET: &str = "test-webhook-secret";

pub use super::fixtures::fixture;

/// A fixture with edits applied, as compact JSON.
pub fn fixture_with(rel: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(rel)).expect("fixture is JSON");
    edit(&mut v);
    serde_json::to_vec(&v).expect("JSON")
}

/// A delivery as GitHub sends it, signed with `SECRET`.
pub fn delivery(event: &str, id: &str, body: Vec<u8>) -> Request<Body> {
    let sig = sign(SECRET, &body);
    Request::post("/api/github/webhooks")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sig)
        .body(Body::from(body))
        .expect("request")
}

pub fn secrets(list: &[&str]) -> WebhookSecrets {
    WebhookSecrets::new(
        list.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect(),
    )
}

/// App credentials with these webhook secrets (the id and key are never used by ingress).
pub fn credentials(list: &[&str]) -> AppCredentials {
    AppCredentials {
        app_id: 1,
        private_key: SecretString::from("not used by ingress".to_string()),
        webhook_secrets: list
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect(),
    }
}

/// The doors of a test server at `http://backspace.test`.
pub fn test_doors() -> DoorsConfig {
    DoorsConfig::new(url::Url::parse("http://backspace.test/").expect("url"))
}

/// The real router over a real store.
pub struct Ingress {
    pub state: AppState,
    pub router: Router,
}

impl Ingress {
    pub fn new(store: Store) -> Self {
        Self::with_secrets(store, &[SECRET])
    }

    pub fn with_secrets(store: Store, list: &[&str]) -> Self {
        Self::with_doors(store, list, test_doors())
    }

    pub fn with_doors(store: Store, list: &[&str], doors: DoorsConfig) -> Self {
        let ctx = TriggerContext {
            bot_login: Some("backspace-test[bot]".into()),
            ..Default::default()
        };
        let state = AppState::new(store, doors, ctx, Ok(credentials(list)));
        Ingress {
            router: router(state.clone()),
            state,
        }
    }

    pub fn store(&self) -> &Store {
        self.state.store()
    }

    /// Sends a request; returns the status and the JSON body (`null` when not JSON).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }
}
