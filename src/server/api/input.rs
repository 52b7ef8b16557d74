//! Pure: the body of `POST /api/code` checked field by field, so that every refusal names the
//! field at fault.

use serde_json::Value;
use url::Url;

use crate::github::RepoName;

/// The longest prompt accepted, in characters (a long issue body fits; a file pasted whole
/// belongs in the repository).
pub const MAX_PROMPT_CHARS: usize = 16_000;

/// A valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    pub repo: RepoName,
    pub prompt: String,
}

/// A refused request: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub field: &'static str,
    pub message: String,
}

impl InputError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        InputError {
            field,
            message: message.into(),
        }
    }
}

/// Parses and checks a JSON body against the GitHub web base (`GITHUB_URL`).
pub fn parse_code_request(body: &[u8], github_url: &Url) -> Result<CodeRequest, InputError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| InputError::new("body", format!("the body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| InputError::new("body", "the body must be a JSON object"))?;
    let repo_url = match (obj.get("repoUrl"), obj.get("repo_url")) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Err(InputError::new("repoUrl", "repoUrl is required")),
    };
    let repo_url = repo_url
        .as_str()
        .ok_or_else(|| InputError::new("repoUrl", "repoUrl must be a string"))?;
    let repo = parse_repo_url(repo_url, github_url)?;
    let prompt = obj
        .get("prompt")
        .ok_or_else(|| InputError::new("prompt", "prompt is required"))?
        .as_str()
        .ok_or_else(|| InputError::new("prompt", "prompt must be a string"))?
        .trim();
    if prompt.is_empty() {
        return Err(InputError::new("prompt", "prompt must not be empty"));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(InputError::new(
            "prompt",
            format!("prompt is {chars} characters; the limit is {MAX_PROMPT_CHARS}"),
        ));
    }
    Ok(CodeRequest {
        repo,
        prompt: prompt.to_owned(),
    })
}

/// `https://github.com/owner/repo` (with or without `.git` or a trailing slash) → `owner/repo`,
/// only under `github_url` (same scheme, host and port, below its path).
pub fn parse_repo_url(raw: &str, github_url: &Url) -> Result<RepoName, InputError> {
    let bad = |why: &str| {
        InputError::new(
            "repoUrl",
            format!(
                "repoUrl must be a repository URL like {}/OWNER/REPO: {why}",
                github_url.as_str().trim_end_matches('/')
            ),
        )
    };
    let url = Url::parse(raw.trim()).map_err(|_| bad("not a URL"))?;
    let same_origin = url.scheme() == github_url.scheme()
        && url.host_str().map(str::to_ascii_lowercase)
            == github_url.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == github_url.port_or_known_default();
    if !same_origin {
        return Err(bad("not on this GitHub"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("no query, fragment or credentials allowed"));
    }
    let prefix = github_url.path().trim_end_matches('/');
    let rest = url
        .path()
        .strip_prefix(prefix)
        .ok_or_else(|| bad("not on this GitHub"))?;
    let rest = rest.trim_start_matches('/').trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    rest.parse::<RepoName>()
        .map_err(|_| bad("the path is not OWNER/REPO"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh() -> Url {
        Url::parse("https://github.com").unwrap()
    }

    #[test]
    fn repository_urls_in_their_usual_forms_are_accepted() {
        for raw in [
            "https://github.com/octo/hello",
            "https://github.com/octo/hello/",
            "https://github.com/octo/hello.git",
            "https://GitHub.com/octo/hello",
        ] {
            assert_eq!(
                parse_repo_url(raw, &gh()),
                Ok(RepoName::new("octo", "hello")),
                "{raw}"
            );
        }
    }

    #[test]
    fn urls_that_are_not_a_repository_here_are_refused() {
        for raw in [
            "octo/hello",
            "https://gitlab.com/octo/hello",
            "http://github.com/octo/hello",
            "https://github.com/octo",
            "https://github.com/octo/hello/issues/1",
            "https://github.com/octo/hello?x=1",
            "https://user:pw@github.com/octo/hello",
            "https://github.com/../etc",
            "https://github.com:8443/octo/hello",
        ] {
            let e = parse_repo_url(raw, &gh()).unwrap_err();
            assert_eq!(e.field, "repoUrl", "{raw}");
        }
    }

    #[test]
    fn enterprise_bases_with_a_path_are_honoured() {
        let base = Url::parse("http://127.0.0.1:8080/ghe/").unwrap();
        assert_eq!(
            parse_repo_url("http://127.0.0.1:8080/ghe/o/r", &base),
            Ok(RepoName::new("o", "r"))
        );
        assert!(parse_repo_url("http://127.0.0.1:8080/o/r", &base).is_err());
    }

    #[test]
    fn each_bad_body_names_its_field() {
        let cases: &[(&str, &str)] = &[
            ("not json", "body"),
            ("[1]", "body"),
            (r#"{"prompt":"x"}"#, "repoUrl"),
            (r#"{"repoUrl":5,"prompt":"x"}"#, "repoUrl"),
            (r#"{"repoUrl":"https://github.com/o/r"}"#, "prompt"),
            (
                r#"{"repoUrl":"https://github.com/o/r","prompt":"  "}"#,
                "prompt",
            ),
            (
                r#"{"repoUrl":"https://github.com/o/r","prompt":7}"#,
                "prompt",
            ),
        ];
        for (body, field) in cases {
            let e = parse_code_request(body.as_bytes(), &gh()).unwrap_err();
            assert_eq!(e.field, *field, "{body}");
        }
        let long = format!(
            r#"{{"repoUrl":"https://github.com/o/r","prompt":"{}"}}"#,
            "é".repeat(MAX_PROMPT_CHARS + 1)
        );
        assert_eq!(
            parse_code_request(long.as_bytes(), &gh())
                .unwrap_err()
                .field,
            "prompt"
        );
    }

    #[test]
    fn both_spellings_of_the_repository_field_work() {
        for body in [
            r#"{"repoUrl":"https://github.com/o/r","prompt":" fix it "}"#,
            r#"{"repo_url":"https://github.com/o/r","prompt":" fix it "}"#,
        ] {
            assert_eq!(
                parse_code_request(body.as_bytes(), &gh()),
                Ok(CodeRequest {
                    repo: RepoName::new("o", "r"),
                    prompt: "fix it".into()
                })
            );
        }
    }
}
