//! The HTTP front: the axum router and what its handlers share. Handlers answer fast and leave
//! the slow work to the workers: ingress verifies, parses, stores and answers.

pub mod api;
mod doors;
mod events;
mod health;
mod html;
mod metrics;
pub mod run_link;
mod runs;
pub mod setup;
mod webhook;

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::{AppCredentials, MissingCredentials};
use crate::github::GithubApp;
use crate::metrics::Metrics;
use crate::sandbox::Sandboxes;
use crate::store::Store;
use crate::trigger::TriggerContext;
use crate::webhook::signature::WebhookSecrets;

pub use doors::DoorsConfig;
pub use run_link::{run_link, LinkKey, RUN_LINK_TTL};
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
    doors: RwLock<Arc<doors::Doors>>,
    metrics: Metrics,
    setup: setup::SetupState,
    /// Poked when a job is queued, so an idle worker claims it at once.
    wake: Arc<tokio::sync::Notify>,
    /// Cancelled on shutdown: event streams end, so that graceful shutdown is not held open
    /// by a run page left open (its EventSource reconnects with `Last-Event-ID`).
    closing: tokio_util::sync::CancellationToken,
    /// The GitHub App client, once credentials are known.
    github: RwLock<Option<GithubApp>>,
    /// The Docker engine the workers use, once they started (for `/readyz`).
    sandboxes: RwLock<Option<Sandboxes>>,
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
                doors: RwLock::new(Arc::new(doors::Doors::new(DoorsConfig::new(
                    url::Url::parse("http://localhost:3000").expect("a valid URL"),
                )))),
                metrics: Metrics::new(),
                setup: setup::SetupState::default(),
                wake: Arc::new(tokio::sync::Notify::new()),
                closing: tokio_util::sync::CancellationToken::new(),
                github: RwLock::new(None),
                sandboxes: RwLock::new(None),
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

    /// Gives `/readyz` the Docker engine the workers drive.
    pub fn set_sandboxes(&self, sandboxes: Sandboxes) {
        *write(&self.inner.sandboxes) = Some(sandboxes);
    }

    pub(crate) fn sandboxes(&self) -> Option<Sandboxes> {
        read(&self.inner.sandboxes).clone()
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

    /// Sets what the API, the run page and setup need (URLs, API key, credentials path).
    pub fn configure(&self, config: DoorsConfig) {
        *write(&self.inner.doors) = Arc::new(doors::Doors::new(config));
    }

    pub(crate) fn doors(&self) -> Arc<doors::Doors> {
        read(&self.inner.doors).clone()
    }

    /// The metrics recorder; clone it into workers.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The key run links are signed with (derived from the webhook secrets); `None` in setup
    /// mode.
    pub fn link_key(&self) -> Option<LinkKey> {
        self.secrets()
            .ok()
            .map(|s| LinkKey::from_webhook_secrets(&s))
    }

    /// The signed link to a run's live page, valid for [`RUN_LINK_TTL`]; `None` in setup mode.
    pub fn run_link(&self, run_id: &str) -> Option<String> {
        let key = self.link_key()?;
        let public = self.doors().config.public_url.clone();
        Some(run_link(
            &public,
            run_id,
            &key,
            run_link::unix_now(),
            RUN_LINK_TTL,
        ))
    }

    /// Ends every open event stream (SSE) now and any opened later: call it when shutdown
    /// begins, or the server's graceful shutdown waits for streams that never end.
    pub fn close_streams(&self) {
        self.inner.closing.cancel();
    }

    pub(crate) fn closing(&self) -> tokio_util::sync::CancellationToken {
        self.inner.closing.clone()
    }

    /// The one-click setup link to print at start-up in setup mode:
    /// `{PUBLIC_URL}/setup?token=…` (the token changes at every start).
    pub fn setup_link(&self) -> String {
        format!(
            "{}/setup?token={}",
            run_link::base(&self.doors().config.public_url),
            self.inner.setup.access_token()
        )
    }

    /// Credentials registered through `/setup` while serving: `None` until then. `serve`
    /// watches it to start the GitHub client and the workers without a restart.
    pub fn credentials_watch(&self) -> tokio::sync::watch::Receiver<Option<AppCredentials>> {
        self.inner.setup.subscribe()
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
    let webhooks = Router::new()
        .route("/api/github/webhooks", post(webhook::receive))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_deliveries,
        ));
    Router::new()
        .route("/", get(health::home))
        .route("/health", get(health::ready))
        .route("/livez", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/api/code", post(api::create_run))
        .route("/api/runs/{id}", get(api::get_run))
        .route("/api/runs/{id}/events", get(api::run_events))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/events", get(runs::events))
        .route("/setup", get(setup::page))
        .route("/setup/callback", get(setup::callback))
        .merge(webhooks)
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
