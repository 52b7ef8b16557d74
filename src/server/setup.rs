//! One-click setup through GitHub's app manifest flow. In setup mode `GET /setup` shows a form
//! that posts `app-manifest.json` (its `{PUBLIC_URL}` filled in) to GitHub's new-app page with a
//! one-time `state`; GitHub sends the operator back to `GET /setup/callback?code&state`, where the
//! code is converted into the app's id, private key and webhook secret. Those are saved to the
//! credentials file (mode 0600), webhooks are verified with the new secret at once, the
//! credentials are published on [`AppState::credentials_watch`] for the workers, and the
//! operator is sent to the app's installation page. Once set up, both routes answer 409.
//!
//! Whoever completes setup decides which GitHub App this server trusts (and whose repositories
//! spend its model key), so `/setup` needs a token that `serve` prints at start-up with the
//! link: only someone who can read the server's output can register the app. It changes at
//! every start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use secrecy::SecretString;
use serde::Deserialize;

use super::html::{self, escape};
use super::{run_link, AppState};
use crate::github::{convert_manifest, RetryPolicy};
use crate::setup_store::{save_credentials, SavedCredentials};

/// The manifest at the repository's root, built in.
pub const APP_MANIFEST: &str = include_str!("../../app-manifest.json");

/// GitHub gives an hour to finish the flow.
const STATE_TTL: Duration = Duration::from_secs(3600);
/// A bound on pending states, so that reloading `/setup` cannot grow memory without end.
const MAX_PENDING: usize = 64;

/// Setup's share of the server state.
pub(crate) struct SetupState {
    /// The token of the setup link `serve` prints.
    access: String,
    pending: Mutex<HashMap<String, Instant>>,
    /// One conversion at a time: a second callback waits, then finds the app set up.
    converting: tokio::sync::Mutex<()>,
}

impl Default for SetupState {
    fn default() -> Self {
        SetupState {
            access: random_token(),
            pending: Mutex::new(HashMap::new()),
            converting: tokio::sync::Mutex::new(()),
        }
    }
}

impl SetupState {
    /// The token of the setup link.
    pub fn access_token(&self) -> &str {
        &self.access
    }

    /// Whether `token` is the setup link's (in constant time).
    fn admits(&self, token: Option<&str>) -> bool {
        use subtle::ConstantTimeEq as _;
        token.is_some_and(|t| {
            t.len() == self.access.len() && bool::from(t.as_bytes().ct_eq(self.access.as_bytes()))
        })
    }

    fn new_state(&self, now: Instant) -> String {
        let token = random_token();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, t| now.saturating_duration_since(*t) < STATE_TTL);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(token.clone(), now);
        token
    }

    /// Takes a state: true when it was issued here within the hour (and never used).
    fn take_state(&self, token: &str, now: Instant) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .remove(token)
            .is_some_and(|t| now.saturating_duration_since(t) < STATE_TTL)
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Pure: the manifest with `{PUBLIC_URL}` filled in, as compact JSON.
pub fn manifest_json(template: &str, public_url: &url::Url) -> Result<String, serde_json::Error> {
    let filled = template.replace("{PUBLIC_URL}", &run_link::base(public_url));
    let v: serde_json::Value = serde_json::from_str(&filled)?;
    serde_json::to_string(&v)
}

/// A GitHub account or organization name.
fn valid_org(s: &str) -> bool {
    !s.is_empty() && s.len() <= 39 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Pure: the page whose form posts the manifest to `action`.
pub fn render_form(action: &str, manifest: &str, public_url: &str) -> String {
    html::page(
        "Set up Backspace",
        "",
        &format!(
            "<h1>Set up Backspace</h1>\
<p>This registers a GitHub App for this server (<code>{public}</code>) from its manifest: \
permissions to write contents, issues and pull requests; webhooks to <code>{public}/api/github/webhooks</code>. \
GitHub asks you to name it, then sends you back here; the app's id, private key and webhook secret are \
saved on this server, readable by its owner only.</p>\
<form action=\"{action}\" method=\"post\">\
<input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
<button class=\"btn\" type=\"submit\">Register the GitHub App</button></form>\
<p class=\"muted\">For an organization, add <code>&amp;org=NAME</code> to this page's address.</p>",
            public = escape(public_url),
            action = escape(action),
            manifest = escape(manifest),
        ),
    )
}

fn already_configured() -> Response {
    html::message(
        StatusCode::CONFLICT,
        "Backspace is already set up",
        "This server has its GitHub App credentials. To register another app, remove the credentials (environment or credentials file) and restart.",
    )
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
    org: Option<String>,
}

/// `GET /setup`.
pub async fn page(State(state): State<AppState>, Query(q): Query<SetupQuery>) -> Response {
    if state.secrets().is_ok() {
        return already_configured();
    }
    if !state.inner.setup.admits(q.token.as_deref()) {
        return html::message(
            StatusCode::FORBIDDEN,
            "Open the setup link from the server's output",
            "Setup needs the link that backspace serve printed when it started (it ends in ?token=...). Look in the server's log.",
        );
    }
    let doors = state.doors();
    let manifest = match manifest_json(APP_MANIFEST, &doors.config.public_url) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "app-manifest.json is not valid JSON");
            return html::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The app manifest is broken",
                "app-manifest.json is not valid JSON; see the server log.",
            );
        }
    };
    let github = doors.config.github_url.as_str().trim_end_matches('/');
    let path = match q.org.as_deref() {
        None | Some("") => "settings/apps/new".to_owned(),
        Some(org) if valid_org(org) => format!("organizations/{org}/settings/apps/new"),
        Some(_) => {
            return html::message(
                StatusCode::BAD_REQUEST,
                "Not an organization name",
                "org must be a GitHub organization's name.",
            )
        }
    };
    let token = state.inner.setup.new_state(Instant::now());
    let action = format!("{github}/{path}?state={token}");
    html::respond(
        StatusCode::OK,
        render_form(
            &action,
            &manifest,
            &run_link::base(&doors.config.public_url),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /setup/callback?code=…&state=…`.
pub async fn callback(State(state): State<AppState>, Query(q): Query<CallbackQuery>) -> Response {
    if state.secrets().is_ok() {
        return already_configured();
    }
    let fresh = q
        .state
        .as_deref()
        .is_some_and(|s| state.inner.setup.take_state(s, Instant::now()));
    if !fresh {
        return html::message(
            StatusCode::FORBIDDEN,
            "This setup link is not valid",
            "It was not started from this server, was already used, or is over an hour old. Start again at /setup.",
        );
    }
    let code = match q.code.as_deref() {
        Some(c)
            if !c.is_empty()
                && c.len() <= 200
                && c.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            c
        }
        _ => {
            return html::message(
                StatusCode::BAD_REQUEST,
                "GitHub sent no code",
                "The callback needs the code GitHub adds to it. Start again at /setup.",
            )
        }
    };
    let _one_at_a_time = state.inner.setup.converting.lock().await;
    if state.secrets().is_ok() {
        return already_configured();
    }
    let doors = state.doors();
    let app =
        match convert_manifest(&doors.config.github_api_url, code, RetryPolicy::default()).await {
            Ok(a) => a,
            Err(e) => {
                // The path in the error holds the (spent) code: log the status only.
                tracing::warn!(status = ?e.status(), "setup: GitHub refused the manifest code");
                return html::message(
                    StatusCode::BAD_GATEWAY,
                    "GitHub did not hand over the app's credentials",
                    "The code may be spent or over an hour old. Start again at /setup.",
                );
            }
        };
    let Some(webhook_secret) = app.webhook_secret else {
        tracing::error!(
            app_id = app.id,
            "setup: the registered app has no webhook secret"
        );
        return html::message(
            StatusCode::BAD_GATEWAY,
            "The app has no webhook secret",
            "GitHub registered the app without a webhook secret; set one in the app's settings and start Backspace with WEBHOOK_SECRET.",
        );
    };
    let saved = SavedCredentials {
        app_id: app.id,
        slug: app.slug.clone(),
        html_url: app.html_url.clone(),
        private_key: app.pem,
        webhook_secret: SecretString::from(
            secrecy::ExposeSecret::expose_secret(&webhook_secret).to_owned(),
        ),
    };
    if let Some(path) = doors.config.credentials_path.as_ref() {
        if let Err(e) = save_credentials(path, &saved) {
            tracing::error!(error = %e, "setup: could not save the credentials");
            return html::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The credentials could not be saved",
                "The app was registered on GitHub, but this server could not write its credentials file (see the log). Fix the path (BACKSPACE_CREDENTIALS_PATH), delete the app on GitHub and start again.",
            );
        }
        tracing::info!(path = %path.display(), "setup: credentials saved (mode 0600)");
    } else {
        tracing::warn!(
            "setup: no credentials path; the credentials live in memory only until restart"
        );
    }
    state.install_credentials(saved.to_app_credentials());
    tracing::info!(app_id = app.id, slug = %app.slug, "setup: GitHub App registered; webhooks are verified from now");
    let target = format!("{}/installations/new", app.html_url.trim_end_matches('/'));
    let mut resp = (StatusCode::SEE_OTHER, "").into_response();
    match HeaderValue::from_str(&target) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => html::message(
            StatusCode::OK,
            "Backspace is set up",
            "Install the app on your repositories from its page on GitHub.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_asks_for_what_backspace_needs() {
        let public = url::Url::parse("https://bot.example.com/").unwrap();
        let m: serde_json::Value =
            serde_json::from_str(&manifest_json(APP_MANIFEST, &public).unwrap()).unwrap();
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://bot.example.com/api/github/webhooks"
        );
        assert_eq!(m["redirect_url"], "https://bot.example.com/setup/callback");
        // The homepage and the page after an installation: this server's own, which exist.
        assert_eq!(m["url"], "https://bot.example.com/");
        assert_eq!(m["setup_url"], "https://bot.example.com/");
        assert_eq!(m["public"], false);
        assert!(m["name"].is_string());
        for (k, v) in [
            ("checks", "write"),
            ("contents", "write"),
            ("issues", "write"),
            ("pull_requests", "write"),
            ("metadata", "read"),
        ] {
            assert_eq!(m["default_permissions"][k], v, "{k}");
        }
        let events: Vec<&str> = m["default_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        for e in [
            "issue_comment",
            "issues",
            "pull_request",
            "pull_request_review",
            "pull_request_review_comment",
        ] {
            assert!(events.contains(&e), "{e}");
        }
        // GitHub sends these to every app and refuses them in a manifest's subscriptions.
        for e in ["installation", "installation_repositories"] {
            assert!(!events.contains(&e), "{e} cannot be subscribed to");
        }
        assert!(!m.to_string().contains("{PUBLIC_URL}"));
    }

    #[test]
    fn only_the_printed_token_admits() {
        let s = SetupState::default();
        let t = s.access_token().to_owned();
        assert!(s.admits(Some(&t)));
        assert!(!s.admits(None));
        assert!(!s.admits(Some("")));
        assert!(!s.admits(Some(&t[..10])));
        assert_ne!(SetupState::default().access_token(), t);
    }

    #[test]
    fn a_state_works_once_and_only_within_the_hour() {
        let s = SetupState::default();
        let t0 = Instant::now();
        let a = s.new_state(t0);
        assert!(s.take_state(&a, t0));
        assert!(!s.take_state(&a, t0));
        let b = s.new_state(t0);
        assert!(!s.take_state(&b, t0 + STATE_TTL + Duration::from_secs(1)));
        assert!(!s.take_state("forged", t0));
    }

    #[test]
    fn the_form_carries_the_manifest_escaped() {
        let page = render_form(
            "https://github.com/settings/apps/new?state=x",
            r#"{"a":"<b>"}"#,
            "http://h",
        );
        assert!(page.contains(r#"value="{&quot;a&quot;:&quot;&lt;b&gt;&quot;}""#));
        assert!(page.contains(r#"action="https://github.com/settings/apps/new?state=x""#));
    }
}
