//! Pure: removes secrets from text that leaves Backspace (PR bodies, comments, transcripts, logs
//! of agent output): the exact values of the secrets in force, and anything shaped like a
//! well-known credential (GitHub and Anthropic tokens, private keys, AWS keys, bearer headers).

/// Replaces `known` secret values and credential-shaped strings with `[redacted]`.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut out = text.to_owned();
    for k in known {
        if k.len() >= 4 {
            out = out.replace(k, "[redacted]");
        }
    }
    redact_patterns(&out)
}

const PREFIXES: [&str; 9] = [
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "sk-ant-",
    "sk-proj-",
    "xoxb-",
];

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn redact_patterns(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        // PEM private keys, whole.
        if rest.starts_with("-----BEGIN ") {
            if let Some(head_end) = rest
                .find("-----\n")
                .or_else(|| rest[11..].find("-----").map(|i| i + 11))
            {
                let head = &rest[..head_end];
                if head.contains("PRIVATE KEY") {
                    let end = rest
                        .find("-----END ")
                        .and_then(|i| rest[i + 9..].find("-----").map(|j| i + 9 + j + 5))
                        .unwrap_or(rest.len());
                    out.push_str("[redacted private key]");
                    rest = &rest[end..];
                    continue;
                }
            }
        }
        let at_boundary = out.chars().last().is_none_or(|c| !is_token_char(c));
        if at_boundary {
            for p in PREFIXES {
                if rest.starts_with(p) {
                    let len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
                    if len >= p.len() + 16 {
                        out.push_str("[redacted]");
                        rest = &rest[len..];
                        continue 'outer;
                    }
                }
            }
            // AWS access key ids.
            if rest.starts_with("AKIA") {
                let len = rest
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(rest.len());
                if len == 20 {
                    out.push_str("[redacted]");
                    rest = &rest[len..];
                    continue;
                }
            }
        }
        for header in [
            "Authorization: Bearer ",
            "Authorization: Basic ",
            "authorization: bearer ",
            "authorization: basic ",
        ] {
            if rest.starts_with(header) {
                out.push_str(header);
                out.push_str("[redacted]");
                let len = header.len()
                    + rest[header.len()..]
                        .find(char::is_whitespace)
                        .unwrap_or(rest.len() - header.len());
                rest = &rest[len..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
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
