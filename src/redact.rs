//! Removes secrets from text that leaves Backspace (run events, PR bodies, comments,
//! transcripts, logs of agent output, command output the model reads): the exact values of the
//! secrets this process holds, and anything shaped like a well-known credential: GitHub tokens
//! (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`, dots included), Anthropic and OpenAI
//! keys, JSON Web Tokens, private keys, AWS key ids, Slack bot tokens and `Authorization`
//! header values.
//!
//! [`redact`] and [`redact_event`] are pure functions of their input and of the secrets
//! [`remember`]ed: the process registers each secret once where it is read (the settings, the
//! credentials file), so every sink redacts the same set without holding the settings.

use std::sync::RwLock;

use secrecy::{ExposeSecret, SecretString};

use crate::run_event::RunEvent;

/// What stands in for a secret.
pub const REDACTED: &str = "[redacted]";

/// Known secret values shorter than this are not replaced: they would match ordinary text.
const MIN_KNOWN: usize = 8;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret this process holds, so it is redacted everywhere from now on. A PEM key
/// is registered line by line as well (a log may hold one line of it), a URL's password alone
/// as well.
pub fn remember(secret: &SecretString) {
    let value = secret.expose_secret().trim();
    let mut parts = vec![value.to_owned()];
    if value.contains("-----BEGIN") {
        parts.extend(
            value
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_owned),
        );
    }
    if let Ok(url) = url::Url::parse(value) {
        if let Some(password) = url.password() {
            parts.push(password.to_owned());
        }
    }
    let Ok(mut known) = KNOWN.write() else {
        return;
    };
    for part in parts {
        if part.len() >= MIN_KNOWN && !known.contains(&part) {
            known.push(part);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// Replaces the remembered secrets, `known` (values of 4 characters or more) and
/// credential-shaped strings with `[redacted]`.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut out = text.to_owned();
    if let Ok(registered) = KNOWN.read() {
        for k in registered.iter() {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), REDACTED);
            }
        }
    }
    for k in known {
        if k.len() >= 4 {
            out = out.replace(k, REDACTED);
        }
    }
    redact_patterns(&out)
}

/// The event with every text in it redacted (messages, prompts, tool input and output, the
/// agent's words), so what is stored, streamed, commented and logged holds no secret.
pub fn redact_event(event: &RunEvent) -> RunEvent {
    let Ok(mut value) = serde_json::to_value(event) else {
        return event.clone();
    };
    if let serde_json::Value::Object(fields) = &mut value {
        for (key, field) in fields.iter_mut() {
            // The tag and the run id are ours, and must survive as they are.
            if key != "type" && key != "run_id" {
                redact_value(field);
            }
        }
    }
    serde_json::from_value(value).unwrap_or_else(|_| event.clone())
}

fn redact_value(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let clean = redact(s, &[]);
            if clean != *s {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_value),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// Prefixes of tokens that are credentials whatever follows, with the least that must follow.
const PREFIXES: [(&str, usize); 12] = [
    ("github_pat_", 16),
    ("ghp_", 16),
    ("gho_", 16),
    ("ghu_", 16),
    ("ghs_", 16),
    ("ghr_", 16),
    ("sk-ant-", 16),
    ("sk-proj-", 16),
    ("sk-svcacct-", 16),
    ("sk-admin-", 16),
    ("xoxb-", 16),
    // OpenAI's older keys: `sk-` and 48 letters and digits (and other vendors' alike).
    ("sk-", 32),
];

/// Characters of a token. Dots count: GitHub's longer installation tokens carry them.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// The length of the token at the start of `rest`; a trailing dot or dash ends a sentence, not
/// the token.
fn token_len(rest: &[u8]) -> usize {
    let mut len = rest.iter().take_while(|b| is_token_byte(**b)).count();
    while len > 0 && matches!(rest[len - 1], b'.' | b'-') {
        len -= 1;
    }
    len
}

/// A JSON Web Token (`eyJ…` header, payload and signature, base64url, dot-separated).
fn jwt_len(rest: &[u8]) -> Option<usize> {
    if !rest.starts_with(b"eyJ") {
        return None;
    }
    let part = |from: usize| {
        rest[from..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'-')
            .count()
    };
    let a = part(0);
    if a < 10 || rest.get(a) != Some(&b'.') {
        return None;
    }
    let b = part(a + 1);
    if b < 10 || rest.get(a + 1 + b) != Some(&b'.') {
        return None;
    }
    let c = part(a + b + 2);
    (c >= 10).then_some(a + b + c + 2)
}

const PEM_BEGIN: &str = "-----BEGIN ";
const AUTHORIZATION: &str = "authorization:";

fn redact_patterns(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let raw = &bytes[i..];
        // PEM private keys, whole.
        if let Some(after_begin) = rest.strip_prefix(PEM_BEGIN) {
            let head_end = after_begin.find("-----").map(|j| j + PEM_BEGIN.len());
            if let Some(head_end) = head_end {
                if rest[..head_end].contains("PRIVATE KEY") {
                    let end = rest
                        .find("-----END ")
                        .and_then(|j| rest[j + 9..].find("-----").map(|k| j + 9 + k + 5))
                        .unwrap_or(rest.len());
                    out.push_str("[redacted private key]");
                    i += end;
                    continue;
                }
            }
        }
        let at_boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if at_boundary {
            if let Some(len) = credential_len(raw) {
                out.push_str(REDACTED);
                i += len;
                continue;
            }
        }
        if raw.len() >= AUTHORIZATION.len()
            && raw[..AUTHORIZATION.len()].eq_ignore_ascii_case(AUTHORIZATION.as_bytes())
        {
            // `Authorization: <scheme> <value>` keeps the scheme and loses the value.
            let after = &rest[AUTHORIZATION.len()..];
            let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
            let scheme_start = AUTHORIZATION.len() + spaces;
            let scheme = rest[scheme_start..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len() - scheme_start);
            let value_start = scheme_start + scheme + 1;
            if scheme > 0
                && rest[scheme_start + scheme..].starts_with(' ')
                && value_start < rest.len()
            {
                let value = rest[value_start..]
                    .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
                    .unwrap_or(rest.len() - value_start);
                if value > 0 {
                    out.push_str(&rest[..value_start]);
                    out.push_str(REDACTED);
                    i += value_start + value;
                    continue;
                }
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

/// The length of the credential at the start of `raw`, if one is there.
fn credential_len(raw: &[u8]) -> Option<usize> {
    for (prefix, least) in PREFIXES {
        if raw.starts_with(prefix.as_bytes()) {
            let len = token_len(raw);
            if len >= prefix.len() + least {
                return Some(len);
            }
        }
    }
    if let Some(len) = jwt_len(raw) {
        return Some(len);
    }
    // AWS access key ids.
    if raw.starts_with(b"AKIA") {
        let len = raw.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if len == 20 {
            return Some(len);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_credential_shapes_are_removed() {
        let text = "token ghs_0123456789abcdefABCDEF and key sk-ant-api03-abcdefghijklmnopqrstu, \
                    mine=hunter2-long-secret, aws AKIAIOSFODNN7EXAMPLE.\n\
                    curl -H 'Authorization: Bearer abc.def' x\n\
                    -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nafter";
        let r = redact(text, &["hunter2-long-secret"]);
        for leaked in [
            "ghs_0123",
            "sk-ant-api03",
            "hunter2",
            "AKIAIOSFODNN7EXAMPLE",
            "abc.def",
            "MIIEow",
        ] {
            assert!(!r.contains(leaked), "{leaked} in {r}");
        }
        assert!(r.contains("[redacted private key]\nafter"), "{r}");
        assert!(r.contains("Authorization: Bearer [redacted]"), "{r}");
    }

    #[test]
    fn every_github_token_form_is_removed_whole() {
        let tail = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        for prefix in [
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_11ABCDEFG0_",
        ] {
            let token = format!("{prefix}{tail}");
            let r = redact(&format!("use {token} here"), &[]);
            assert_eq!(r, "use [redacted] here", "{prefix}");
        }
        // Installation tokens with dots: nothing of the tail is left.
        let dotted = "ghs_v1.AbCdEfGhIjKlMnOp.QrStUvWxYz0123456789.zz";
        let r = redact(&format!("x-access-token:{dotted}@github.com"), &[]);
        assert_eq!(r, "x-access-token:[redacted]@github.com");
        // The sentence's own full stop stays.
        let r = redact(&format!("the token is ghp_{tail}."), &[]);
        assert_eq!(r, "the token is [redacted].");
    }

    #[test]
    fn model_keys_and_web_tokens_are_removed() {
        let openai_legacy = format!("sk-{}", "A1b2C3d4".repeat(6));
        for key in [
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx-yz_0123456789",
            "sk-ant-admin01-AbCdEfGhIjKlMnOpQrSt",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123",
            "sk-svcacct-AbCdEfGhIjKlMnOpQrStUvWx",
            openai_legacy.as_str(),
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0NSIsImV4cCI6MX0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
            "xoxb-1234567890-abcdefghijklmnop",
        ] {
            let r = redact(&format!("[{key}]"), &[]);
            assert_eq!(r, "[[redacted]]", "{key}");
        }
        // Not keys: too short, or words.
        let plain = "sk-learn, sk-ant-docs, eyJ.x.y, ghp_short, task-xyz";
        assert_eq!(redact(plain, &[]), plain);
    }

    #[test]
    fn authorization_headers_lose_their_value_in_any_case_and_scheme() {
        for (text, want) in [
            (
                "authorization: bearer abc.def",
                "authorization: bearer [redacted]",
            ),
            (
                "Authorization: token 0123456789",
                "Authorization: token [redacted]",
            ),
            (
                "AUTHORIZATION:Basic eC1hY2Nlc3M=",
                "AUTHORIZATION:Basic [redacted]",
            ),
            (
                "-H 'Authorization: Bearer xyz' -d",
                "-H 'Authorization: Bearer [redacted]' -d",
            ),
        ] {
            assert_eq!(redact(text, &[]), want);
        }
    }

    #[test]
    fn remembered_secrets_are_removed_everywhere_with_their_parts() {
        let webhook = "whsec-6f1d2a9b4c7e".to_string();
        remember(&SecretString::from(webhook.clone()));
        let pem = "-----BEGIN RSA PRIVATE KEY-----\n\
                   MIIEpAIBAAKCAQEAqk7s9PNs1nGmYzLlWJ0jYbb3e1\n\
                   -----END RSA PRIVATE KEY-----\n";
        remember(&SecretString::from(pem.to_string()));
        remember(&SecretString::from(
            "postgres://app:p4ss-w0rd-long@db:5432/x".to_string(),
        ));
        remember(&SecretString::from("short".to_string()));
        let text = format!(
            "sig {webhook} line MIIEpAIBAAKCAQEAqk7s9PNs1nGmYzLlWJ0jYbb3e1 pw p4ss-w0rd-long short"
        );
        assert_eq!(
            redact(&text, &[]),
            "sig [redacted] line [redacted] pw [redacted] short"
        );
    }

    #[test]
    fn events_are_redacted_in_every_text_field() {
        let token = "ghs_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let events = [
            RunEvent::Tool {
                name: "bash".into(),
                input: serde_json::json!({ "command": format!("echo {token}"), "n": [token] }),
                output: format!("{token}\n"),
                exit_code: Some(0),
                duration_ms: None,
            },
            RunEvent::AiMessage {
                text: format!("I found {token}"),
            },
            RunEvent::Error {
                message: format!("push failed for {token}"),
            },
            RunEvent::progress("agent", format!("turn 1: {token}")),
            RunEvent::Start {
                run_id: "run-1".into(),
                repo: None,
                prompt: Some(format!("use {token}")),
            },
        ];
        for event in events {
            let clean = redact_event(&event);
            let json = serde_json::to_string(&clean).expect("json");
            assert!(!json.contains("ghs_AbCd"), "{json}");
            assert!(json.contains(REDACTED), "{json}");
            assert_eq!(clean.kind(), event.kind());
        }
        let start = redact_event(&RunEvent::Start {
            run_id: "run-1".into(),
            repo: Some("octo/app".into()),
            prompt: None,
        });
        assert!(matches!(start, RunEvent::Start { run_id, .. } if run_id == "run-1"));
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "fix ghs_ prefix parsing; see sk-ant-docs and AKIA in README — ünïcödé";
        assert_eq!(redact(text, &[]), text);
        assert_eq!(
            redact("abc", &["ab"]),
            "abc",
            "too-short secrets are not replaced"
        );
    }
}
