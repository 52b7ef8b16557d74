//! The last step of GitHub's app manifest flow: `POST /app-manifests/{code}/conversions` turns
//! the one-time code GitHub hands back to the setup page into the new app's id, private key and
//! webhook secret. The call needs no credential; what it returns is all secret material, held as
//! `SecretString` from the moment it is parsed.

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::transport::Transport;
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
    let transport = Transport::new(api_url.clone(), retry, &user_agent)?;
    let url = transport.url(&["app-manifests", code, "conversions"])?;
    transport.send(Method::POST, &url, None, None).await?.json()
}
