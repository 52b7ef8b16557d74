//! The HTTP front: the axum router and what its handlers share. Handlers answer fast and leave
//! the slow work to the workers: ingress verifies, parses, stores and answers.

pub mod api;
mod doors;
mod events;
mod health;
mod html;
mod listener;
mod metrics;
pub mod run_link;
mod runs;
pub mod setup;
pub mod timeouts;
mod webhook;

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{AppCredentials, MissingCredentials};
use crate::github::GithubApp;
use crate::metrics::Metrics;
use crate::sandbox::Sandboxes;
use crate::store::Store;
use crate::trigger::TriggerContext;
use crate::webhook::signature::WebhookSecrets;

pub use doors::DoorsConfig;
pub use listener::serve;
pub use run_link::{run_link, LinkKey, RUN_LINK_TTL};
pub use timeouts::{FrontDoorArgs, FrontDoorLimits, Timeouts};
pub use webhook::MAX_WEBHOOK_BODY;

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The app's credentials: the one place that says whether the server is set up, with what
    /// secrets webhooks are verified, and (for `serve`, watching it) when `/setup` registered
    /// the app.
    credentials: watch::Sender<Credentials>,
    trigger: RwLock<TriggerContext>,
    doors: doors::Doors,
    metrics: Metrics,
    setup: setup::SetupState,
    /// Poked when a job is queued, so an idle worker claims it at once.
    wake: Arc<tokio::sync::Notify>,
    /// Cancelled on shutdown: event streams end, so that graceful shutdown is not held open
    /// by a run page left open (its EventSource reconnects with `Last-Event-ID`).
    closing: tokio_util::sync::CancellationToken,
    /// The GitHub App client, once the workers built it from the credentials.
    github: RwLock<Option<GithubApp>>,
    /// The Docker engine the workers use, once they started (for `/readyz`).
    sandboxes: RwLock<Option<Sandboxes>>,
}

/// The app's credentials as the server knows them.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Setup mode: these settings are missing, and webhooks are answered 503.
    Missing(MissingCredentials),
    /// Set up: webhooks are verified with `secrets` (the app's webhook secrets).
    Ready {
        app: AppCredentials,
        secrets: WebhookSecrets,
    },
}

impl Credentials {
    pub fn ready(app: AppCredentials) -> Credentials {
        let secrets = WebhookSecrets::new(app.webhook_secrets.clone());
        Credentials::Ready { app, secrets }
    }

    /// The app's credentials, once set up.
    pub fn app(&self) -> Option<&AppCredentials> {
        match self {
            Credentials::Ready { app, .. } => Some(app),
            Credentials::Missing(_) => None,
        }
    }
}

impl AppState {
    /// The server's state: `credentials` from the environment or the credentials file, or what
    /// is missing (setup mode: webhooks are answered 503 until `/setup` registers the app).
    pub fn new(
        store: Store,
        doors: DoorsConfig,
        trigger: TriggerContext,
        credentials: Result<AppCredentials, MissingCredentials>,
    ) -> Self {
        let credentials = match credentials {
            Ok(app) => Credentials::ready(app),
            Err(missing) => Credentials::Missing(missing),
        };
        AppState {
            inner: Arc::new(Inner {
                store,
                credentials: watch::channel(credentials).0,
                trigger: RwLock::new(trigger),
                doors: doors::Doors::new(doors),
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

    /// Leaves setup mode (the manifest flow registered the app): webhooks are verified from
    /// now, and whoever watches [`AppState::credentials_watch`] (serve) starts the workers.
    pub fn install_credentials(&self, app: AppCredentials) {
        self.inner.credentials.send_replace(Credentials::ready(app));
    }

    /// The credentials now.
    pub fn credentials(&self) -> Credentials {
        self.inner.credentials.borrow().clone()
    }

    /// The credentials now and as they change: `serve` waits on it in setup mode to start the
    /// GitHub client and the workers without a restart.
    pub fn credentials_watch(&self) -> watch::Receiver<Credentials> {
        self.inner.credentials.subscribe()
    }

    /// The app's own login, learned from `GET /app`, so that its comments never trigger it.
    pub fn set_bot_login(&self, login: String) {
        write(&self.inner.trigger).bot_login = Some(login);
    }

    pub(crate) fn secrets(&self) -> Result<WebhookSecrets, MissingCredentials> {
        match &*self.inner.credentials.borrow() {
            Credentials::Ready { secrets, .. } => Ok(secrets.clone()),
            Credentials::Missing(missing) => Err(missing.clone()),
        }
    }

    pub(crate) fn trigger(&self) -> TriggerContext {
        read(&self.inner.trigger).clone()
    }

    pub(crate) fn doors(&self) -> &doors::Doors {
        &self.inner.doors
    }

    /// The metrics recorder; clone it into workers.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The process's clock (the store's: one "now" for stored rows and signed links).
    pub fn clock(&self) -> &Clock {
        self.inner.store.clock()
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
        let public = &self.doors().config.public_url;
        Some(run_link(
            public,
            run_id,
            &key,
            self.clock().unix_secs(),
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
