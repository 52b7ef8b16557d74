//! The last step of GitHub's app manifest flow: `POST /app-manifests/{code}/conversions` turns
//! the one-time code GitHub hands back to the setup page into the new app's id, private key and
//! webhook secret. The call needs no credential; what it returns is all secret material, held as
//! `SecretString` from the moment it is parsed, which is why it is read into this local type
//! and not octocrab's `apps().create_from_manifest()` model (plain `String`s). It goes through
//! the same octocrab client and stack as every other call.

use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::pacing::PacingLimits;
use super::stack::{self, from_octocrab, route, Pacers};
use super::GithubError;
use crate::retry::RetryPolicy;

/// The registered app, as the conversion returns it.
#[derive(Debug, Deserialize)]
pub struct ManifestConversion {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub html_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// The app's private key, PEM.
    pub pem: SecretString,
}

/// Exchanges a manifest `code` for the app's credentials, against `api_url`
/// (`GITHUB_API_URL`).
pub async fn convert_manifest(
    api_url: &Url,
    code: &str,
    retry: RetryPolicy,
) -> Result<ManifestConversion, GithubError> {
    let user_agent = format!("backspace/{}", env!("CARGO_PKG_VERSION"));
    let pacers = Arc::new(Pacers::new(PacingLimits::default()));
    let crab = stack::client(api_url, retry, pacers, &user_agent)?;
    let path = route(&["app-manifests", code, "conversions"], &[]);
    crab.post(&path, None::<&()>)
        .await
        .map_err(|e| from_octocrab(e, &Method::POST, &path))
}
