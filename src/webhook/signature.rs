//! Pure: `X-Hub-Signature-256` verification over the raw body, in constant time, against one or
//! more secrets (several are valid at once while a secret is rotated).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. None of these carries the secret or the expected digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256= and 64 hex digits)")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// The webhook secrets in force.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<SecretString>);

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} secrets)", self.0.len())
    }
}

impl WebhookSecrets {
    pub fn new(secrets: Vec<SecretString>) -> Self {
        WebhookSecrets(secrets)
    }

    /// The secrets, first the one in force (run links derive their key from them).
    pub fn secrets(&self) -> &[SecretString] {
        &self.0
    }

    /// Checks `header` (the value of `X-Hub-Signature-256`) over `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let mut verifier = self.verifier(header)?;
        verifier.update(body);
        verifier.finish()
    }

    /// A check of `header` over a body that has yet to arrive: fed chunk by chunk as it streams
    /// in, so that the body is read once. A missing or malformed header is refused here, before
    /// any of the body is read.
    pub fn verifier(&self, header: Option<&[u8]>) -> Result<Verifier, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let digest = parse_header(header)?;
        let macs = self
            .0
            .iter()
            .map(|secret| {
                HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
                    .expect("HMAC takes a key of any length")
            })
            .collect();
        Ok(Verifier { macs, digest })
    }
}

/// An HMAC-SHA256 under each secret, over a body as it streams in.
pub struct Verifier {
    macs: Vec<HmacSha256>,
    digest: [u8; 32],
}

impl Verifier {
    pub fn update(&mut self, chunk: &[u8]) {
        for mac in &mut self.macs {
            mac.update(chunk);
        }
    }

    /// Whether any secret signed what was fed in (compared in constant time).
    pub fn finish(self) -> Result<(), SignatureError> {
        let digest = self.digest;
        self.macs
            .into_iter()
            .any(|mac| mac.verify_slice(&digest).is_ok())
            .then_some(())
            .ok_or(SignatureError::Mismatch)
    }
}

/// `sha256=<64 lowercase or uppercase hex digits>` → the 32 digest bytes.
fn parse_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let hex_part = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_part.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub sends. Used by tests, benchmarks and the
/// fakes that play GitHub's part.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(s: &[&str]) -> WebhookSecrets {
        WebhookSecrets::new(
            s.iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect(),
        )
    }

    #[test]
    fn githubs_test_vector_verifies() {
        let raw = crate::testing::shared_fixture("signature-vector.json");
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let secret = v["secret"].as_str().unwrap();
        let payload = v["payload"].as_str().unwrap();
        let header = v["x_hub_signature_256"].as_str().unwrap();
        assert_eq!(sign(secret, payload.as_bytes()), header);
        assert_eq!(
            secrets(&[secret]).verify(Some(header.as_bytes()), payload.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn bad_headers_are_refused_for_what_they_are() {
        let s = secrets(&["k"]);
        let body = b"{}";
        let good = sign("k", body);
        assert_eq!(s.verify(None, body), Err(SignatureError::Missing));
        let sha1 = good.replacen("sha256=", "sha1=", 1);
        assert_eq!(
            s.verify(Some(sha1.as_bytes()), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(&good.as_bytes()[..good.len() - 1]), body),
            Err(SignatureError::Malformed)
        );
        let not_hex = format!("sha256={}", "z".repeat(64));
        assert_eq!(
            s.verify(Some(not_hex.as_bytes()), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(sign("other", body).as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Some(good.as_bytes()), b"{} "),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(
                Some(
                    good.to_uppercase()
                        .replacen("SHA256=", "sha256=", 1)
                        .as_bytes()
                ),
                body
            ),
            Ok(())
        );
    }

    #[test]
    fn a_body_fed_in_chunks_verifies_as_the_whole_does() {
        let s = secrets(&["old", "new"]);
        let body = b"{\"action\":\"created\",\"comment\":{}}";
        let header = sign("new", body);
        let mut v = s.verifier(Some(header.as_bytes())).unwrap();
        for chunk in body.chunks(5) {
            v.update(chunk);
        }
        assert_eq!(v.finish(), Ok(()));
        let mut v = s.verifier(Some(header.as_bytes())).unwrap();
        v.update(&body[..body.len() - 1]);
        assert_eq!(v.finish(), Err(SignatureError::Mismatch));
        assert!(matches!(s.verifier(None), Err(SignatureError::Missing)));
    }

    #[test]
    fn any_of_several_rotating_secrets_verifies() {
        let s = secrets(&["old", "new"]);
        assert_eq!(s.verify(Some(sign("old", b"x").as_bytes()), b"x"), Ok(()));
        assert_eq!(s.verify(Some(sign("new", b"x").as_bytes()), b"x"), Ok(()));
        assert_eq!(
            s.verify(Some(sign("gone", b"x").as_bytes()), b"x"),
            Err(SignatureError::Mismatch)
        );
        assert!(!format!("{s:?}").contains("old"));
    }
}
