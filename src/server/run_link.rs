//! Pure: signed, expiring links to a run's page (`/runs/{id}?exp=…&sig=…`).
//!
//! The signature is HMAC-SHA256 over the run id and the expiry, keyed with a key derived from the
//! webhook secret (HMAC of a fixed label under the secret). Nothing new has to be stored, every
//! instance behind a load balancer derives the same key, and links survive restarts. Links are
//! signed with the first webhook secret and accepted under any of them, so rotating the secret
//! (`WEBHOOK_SECRET=old,new`) keeps old links working until the old secret is dropped.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use url::Url;

use crate::webhook::signature::WebhookSecrets;

type HmacSha256 = Hmac<Sha256>;

/// How long the link in a progress comment works.
pub const RUN_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

const KEY_LABEL: &[u8] = b"backspace run links v1";

/// The keys links are signed (first) and checked (any) with. Never printed.
#[derive(Clone)]
pub struct LinkKey {
    keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkKey({} keys)", self.keys.len())
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired; open the newest link from the run's comment")]
    Expired,
    #[error("this link is not valid (missing or wrong signature)")]
    BadSignature,
}

impl LinkKey {
    /// The key derived from the webhook secrets in force.
    pub fn from_webhook_secrets(secrets: &WebhookSecrets) -> LinkKey {
        LinkKey::from_secrets(
            secrets
                .secrets()
                .iter()
                .map(|s| s.expose_secret().as_bytes()),
        )
    }

    /// Keys derived from raw secrets (the first signs).
    pub fn from_secrets<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> LinkKey {
        let keys = secrets
            .into_iter()
            .map(|secret| {
                let mut mac =
                    HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
                mac.update(KEY_LABEL);
                mac.finalize().into_bytes().into()
            })
            .collect();
        LinkKey { keys }
    }

    fn mac(key: &[u8; 32], run_id: &str, exp: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(b"run\n");
        mac.update(run_id.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The hex signature of (run id, expiry) under the signing key.
    pub fn sign(&self, run_id: &str, exp: u64) -> String {
        match self.keys.first() {
            Some(k) => hex::encode(Self::mac(k, run_id, exp).finalize().into_bytes()),
            None => String::new(),
        }
    }

    /// Checks a link's `exp` and `sig` at `now` (Unix seconds), in constant time.
    pub fn verify(
        &self,
        run_id: &str,
        exp: Option<&str>,
        sig: Option<&str>,
        now: u64,
    ) -> Result<(), LinkError> {
        let exp: u64 = exp
            .and_then(|e| e.parse().ok())
            .ok_or(LinkError::BadSignature)?;
        let sig = sig
            .filter(|s| s.len() == 64)
            .and_then(|s| hex::decode(s).ok())
            .ok_or(LinkError::BadSignature)?;
        let valid = self
            .keys
            .iter()
            .any(|k| Self::mac(k, run_id, exp).verify_slice(&sig).is_ok());
        if !valid {
            return Err(LinkError::BadSignature);
        }
        // Checked after the signature so that a forged expiry is reported as forged.
        if now > exp {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    /// `?exp=…&sig=…` for a run, valid until `now + ttl`.
    pub fn query(&self, run_id: &str, now: u64, ttl: Duration) -> String {
        let exp = now.saturating_add(ttl.as_secs());
        format!("exp={exp}&sig={}", self.sign(run_id, exp))
    }
}

/// `PUBLIC_URL` without a trailing slash, so paths can be appended.
pub fn base(public_url: &Url) -> String {
    public_url.as_str().trim_end_matches('/').to_owned()
}

/// The signed link to a run's live page: `{PUBLIC_URL}/runs/{id}?exp=…&sig=…`, valid until
/// `now + ttl` (`now` in Unix seconds). For the progress comment.
pub fn run_link(public_url: &Url, run_id: &str, key: &LinkKey, now: u64, ttl: Duration) -> String {
    format!(
        "{}/runs/{}?{}",
        base(public_url),
        run_id,
        key.query(run_id, now, ttl)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LinkKey {
        LinkKey::from_secrets([s.as_bytes()])
    }

    fn parts(link: &str) -> (String, String) {
        let url = Url::parse(link).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        (q["exp"].clone(), q["sig"].clone())
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let k = key("secret");
        let base = Url::parse("https://bot.example.com/").unwrap();
        let link = run_link(&base, "abc", &k, 1000, Duration::from_secs(60));
        assert!(link.starts_with("https://bot.example.com/runs/abc?exp=1060&sig="));
        let (exp, sig) = parts(&link);
        assert_eq!(k.verify("abc", Some(&exp), Some(&sig), 1060), Ok(()));
        assert_eq!(
            k.verify("abc", Some(&exp), Some(&sig), 1061),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn another_run_another_expiry_or_another_key_is_refused() {
        let k = key("secret");
        let (exp, sig) = parts(&run_link(
            &Url::parse("http://h").unwrap(),
            "abc",
            &k,
            1000,
            Duration::from_secs(60),
        ));
        assert_eq!(
            k.verify("abd", Some(&exp), Some(&sig), 1000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            k.verify("abc", Some("999999"), Some(&sig), 1000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            key("other").verify("abc", Some(&exp), Some(&sig), 1000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            k.verify("abc", None, Some(&sig), 1000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            k.verify("abc", Some(&exp), Some("zz"), 1000),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn links_signed_with_an_old_secret_work_while_it_is_still_listed() {
        let old = key("old");
        let rotating = LinkKey::from_secrets(["new".as_bytes(), "old".as_bytes()]);
        let q = old.query("r", 0, Duration::from_secs(10));
        let (exp, sig) = parts(&format!("http://h/?{q}"));
        assert_eq!(rotating.verify("r", Some(&exp), Some(&sig), 5), Ok(()));
        assert_eq!(
            key("new").verify("r", Some(&exp), Some(&sig), 5),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn public_urls_with_a_path_keep_it() {
        let k = key("s");
        let link = run_link(
            &Url::parse("https://h.example/bot/").unwrap(),
            "x",
            &k,
            0,
            Duration::from_secs(1),
        );
        assert!(link.starts_with("https://h.example/bot/runs/x?"));
    }
}
