//! The GitHub App's own credential: an RS256 JWT signed with the app's private key, used only on
//! `/app/...` routes (to mint installation tokens and to read the app). GitHub wants `iss` = the
//! app id, `iat` a little in the past (clock drift) and `exp` no more than 10 minutes ahead.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::GithubError;

/// How far `iat` is set in the past, against clock drift (GitHub's recommendation).
pub const JWT_BACKDATE_SECS: u64 = 60;
/// `exp - iat`: GitHub refuses a JWT that lives longer than 10 minutes; `exp` lands 9 minutes
/// after now.
pub const JWT_LIFETIME_SECS: u64 = 600;

/// The claims GitHub reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// The app id, as a string (GitHub accepts the app id or the client id here).
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
}

impl JwtClaims {
    /// The claims for a JWT made at `now` (seconds since the epoch).
    pub fn at(app_id: u64, now: u64) -> Self {
        let iat = now.saturating_sub(JWT_BACKDATE_SECS);
        JwtClaims {
            iss: app_id.to_string(),
            iat,
            exp: iat + JWT_LIFETIME_SECS,
        }
    }
}

/// The app's private key, ready to sign. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct AppKey {
    key: EncodingKey,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

impl AppKey {
    /// Reads a PEM RSA private key (PKCS#1 as GitHub hands it out, or PKCS#8). A key pasted
    /// into one environment variable line with literal `\n`s (as Probot allows) works too.
    pub fn from_pem(pem: &SecretString) -> Result<Self, GithubError> {
        let text = pem.expose_secret();
        let unescaped;
        let text = if !text.contains('\n') && text.contains("\\n") {
            unescaped = SecretString::from(text.replace("\\n", "\n"));
            unescaped.expose_secret()
        } else {
            text
        };
        let key = EncodingKey::from_rsa_pem(text.as_bytes())
            // The library's message describes the format problem, never the key bytes.
            .map_err(|e| GithubError::Key(e.to_string()))?;
        Ok(AppKey { key })
    }

    /// Signs the app JWT for `now` (seconds since the epoch).
    pub fn sign(&self, app_id: u64, now: u64) -> Result<SecretString, GithubError> {
        let claims = JwtClaims::at(app_id, now);
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| GithubError::Key(e.to_string()))?;
        Ok(SecretString::from(jwt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_backdated_and_live_at_most_ten_minutes() {
        let c = JwtClaims::at(42, 1_000_000);
        assert_eq!(c.iss, "42");
        assert_eq!(c.iat, 1_000_000 - 60);
        assert!(c.exp <= 1_000_000 + 600);
        assert!(c.exp - c.iat <= 600);
        assert!(c.exp > 1_000_000);
    }

    #[test]
    fn a_key_on_one_line_with_escaped_newlines_is_read() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/github-app-test-key.pem"
        );
        let pem = std::fs::read_to_string(path).expect("test key");
        let one_line = pem.replace('\n', "\\n");
        assert!(AppKey::from_pem(&SecretString::from(one_line)).is_ok());
        assert!(AppKey::from_pem(&SecretString::from(pem)).is_ok());
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_without_echoing_it() {
        let err = AppKey::from_pem(&SecretString::from("not-a-key-s3cret".to_string()))
            .expect_err("must fail");
        assert!(!err.to_string().contains("s3cret"));
    }
}
