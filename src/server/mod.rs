//! The HTTP front: the axum router and what its handlers share. Handlers answer fast and leave
//! the slow work to the workers: ingress verifies, parses, stores and answers.

mod health;
mod webhook;

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::MissingCredentials;
use crate::github::GithubApp;
use crate::store::Store;
use crate::trigger::TriggerContext;
use crate::webhook::signature::WebhookSecrets;

pub use webhook::MAX_WEBHOOK_BODY;

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// `None` in setup mode: webhooks cannot be verified yet.
    secrets: RwLock<Option<WebhookSecrets>>,
    missing: RwLock<Option<MissingCredentials>>,
    trigger: RwLock<TriggerContext>,
    /// Poked when a job is queued, so an idle worker claims it at once.
    wake: Arc<tokio::sync::Notify>,
    /// The GitHub App client, once credentials are known.
    github: RwLock<Option<GithubApp>>,
}

impl AppState {
    /// A state whose webhooks are verified with `secrets`.
    pub fn new(store: Store, secrets: WebhookSecrets, trigger: TriggerContext) -> Self {
        Self::build(store, Ok(secrets), trigger)
    }

    /// Setup mode: webhooks are answered 503 until credentials arrive.
    pub fn setup_mode(store: Store, missing: MissingCredentials, trigger: TriggerContext) -> Self {
        Self::build(store, Err(missing), trigger)
    }

    fn build(
        store: Store,
        secrets: Result<WebhookSecrets, MissingCredentials>,
        trigger: TriggerContext,
    ) -> Self {
        let (secrets, missing) = match secrets {
            Ok(s) => (Some(s), None),
            Err(m) => (None, Some(m)),
        };
        AppState {
            inner: Arc::new(Inner {
                store,
                secrets: RwLock::new(secrets),
                missing: RwLock::new(missing),
                trigger: RwLock::new(trigger),
                wake: Arc::new(tokio::sync::Notify::new()),
                github: RwLock::new(None),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Gives the handlers the GitHub App client (its token cache is dropped for installations
    /// that are deleted or suspended).
    pub fn set_github(&self, app: GithubApp) {
        *write(&self.inner.github) = Some(app);
    }

    pub fn github(&self) -> Option<GithubApp> {
        read(&self.inner.github).clone()
    }

    /// What the workers wait on between polls of the queue.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.wake.clone()
    }

    /// Leaves setup mode (the manifest flow stored credentials): webhooks are verified from now.
    pub fn install_secrets(&self, secrets: WebhookSecrets) {
        *write(&self.inner.secrets) = Some(secrets);
        *write(&self.inner.missing) = None;
    }

    /// The app's own login, learned from `GET /app`, so that its comments never trigger it.
    pub fn set_bot_login(&self, login: String) {
        write(&self.inner.trigger).bot_login = Some(login);
    }

    pub(crate) fn secrets(&self) -> Result<WebhookSecrets, MissingCredentials> {
        match &*read(&self.inner.secrets) {
            Some(s) => Ok(s.clone()),
            None => Err(read(&self.inner.missing)
                .clone()
                .unwrap_or(MissingCredentials(vec![]))),
        }
    }

    pub(crate) fn trigger(&self) -> TriggerContext {
        read(&self.inner.trigger).clone()
    }
}

// A poisoned lock only means a panic happened while it was held; the data (a secret list, a
// login) is still whole, so keep serving.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The whole router; tests drive it with `oneshot`, `serve` binds it to a port.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/github/webhooks", post(webhook::receive))
        .with_state(state)
}

/// A JSON error body: `{"error": message}` plus any extra fields.
pub(crate) fn json_error(
    status: StatusCode,
    message: impl Into<String>,
    extra: serde_json::Value,
) -> Response {
    let mut body = json!({ "error": message.into() });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    (status, Json(body)).into_response()
}
