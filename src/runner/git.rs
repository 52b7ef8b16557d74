//! Host-side git: clone, branch, commit and push in a clone the host owns.
//!
//! The installation token is passed per command through `GIT_CONFIG_*` environment variables (an
//! `http.extraHeader`), so it is never written into `.git/config`, never on a command line that
//! `ps` shows, and never in a URL. Every command runs with an environment of its own (nothing
//! from the server's but [`PASSED_THROUGH`]: no `GIT_DIR`, `GIT_SSH_COMMAND` or other `GIT_*`),
//! hooks, fsmonitor and credential helpers off, no global or system configuration, and only the
//! one transport its remote needs (`protocol.allow=never` otherwise). Clones are `--no-local`: a
//! local source is read through git's protocol, so only objects reachable from its branches
//! arrive (not its stashes, reflogs or unreachable blobs).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not start git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

impl GitError {
    /// Whether the remote refused the credential (an installation token that expired or was
    /// revoked): git says "Authentication failed", or, with prompts off, that it could not
    /// read a username; an HTTP 401 is named as such.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            GitError::Failed { stderr, .. } => {
                stderr.contains("Authentication failed")
                    || stderr.contains("could not read Username")
                    || stderr.contains("The requested URL returned error: 401")
            }
            GitError::Spawn(_) => false,
        }
    }
}

/// Who commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// A clone the host owns.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
    /// The transport of its `origin`, the only one its commands may use.
    protocol: Option<&'static str>,
}

/// What host git keeps of the server's environment: where programs are, the locale and time
/// zone, the temporary directory, proxies and CA certificates for reaching GitHub.
pub const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The git transport a remote is reached with: `https`, `http` (tests, GitHub Enterprise
/// behind a proxy) or `file` (a local path). Anything else is not allowed at all.
pub fn protocol_of(remote: &str) -> Option<&'static str> {
    let lower = remote.to_ascii_lowercase();
    if lower.starts_with("https://") {
        Some("https")
    } else if lower.starts_with("http://") {
        Some("http")
    } else if lower.starts_with("file://") || !remote.contains("://") && !remote.contains(':') {
        Some("file")
    } else {
        None
    }
}

/// `git` with the host's hygiene: a cleared environment (see [`PASSED_THROUGH`]), no system or
/// global configuration, no terminal prompt, hooks, fsmonitor and credential helpers off, and
/// no transport but `protocol` (none at all when it is `None`).
pub fn command(protocol: Option<&str>) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "credential.helper=",
        "-c",
        "protocol.allow=never",
    ]);
    if let Some(p) = protocol {
        cmd.arg("-c").arg(format!("protocol.{p}.allow=always"));
    }
    cmd
}

fn auth_env(token: Option<&SecretString>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(token) = token {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.expose_secret()));
        env.extend([
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
            (
                "GIT_CONFIG_VALUE_0".into(),
                format!("Authorization: Basic {basic}"),
            ),
        ]);
    }
    env
}

/// Removes any trace of the token from text that may end up in an error or a log.
fn redact(text: &str, token: Option<&SecretString>) -> String {
    let mut out = text.to_owned();
    if let Some(t) = token {
        let secret = t.expose_secret();
        if !secret.is_empty() {
            out = out.replace(secret, "[redacted]");
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{secret}"));
            out = out.replace(&basic, "[redacted]");
        }
    }
    out
}

async fn run_git(
    dir: Option<&Path>,
    protocol: Option<&str>,
    args: &[&str],
    token: Option<&SecretString>,
) -> Result<String, GitError> {
    let mut cmd = command(protocol);
    cmd.args(["-c", "advice.detachedHead=false"]);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    for (k, v) in auth_env(token) {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let verb = args
            .iter()
            .find(|a| !a.starts_with('-'))
            .copied()
            .unwrap_or("command");
        Err(GitError::Failed {
            command: verb.to_owned(),
            stderr: redact(String::from_utf8_lossy(&out.stderr).trim(), token),
        })
    }
}

impl Repo {
    /// Clones `url` (a URL or a local path) into `dest` (which must not exist or be empty), at
    /// `branch` if given. Never a local clone's hard links: only what its branches reach.
    pub async fn clone(
        url: &str,
        dest: &Path,
        token: Option<&SecretString>,
        branch: Option<&str>,
    ) -> Result<Repo, GitError> {
        let protocol = protocol_of(url).ok_or_else(|| GitError::Failed {
            command: "clone".into(),
            stderr: format!("{url:?} is not an https, http or local repository"),
        })?;
        let dest_str = dest.to_string_lossy().into_owned();
        let mut args = vec!["clone", "--no-local", "--no-tags", "--quiet"];
        if let Some(b) = branch {
            args.extend(["--branch", b]);
        }
        args.extend(["--", url, &dest_str]);
        run_git(None, Some(protocol), &args, token).await?;
        Ok(Repo {
            dir: dest.to_path_buf(),
            protocol: Some(protocol),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command that reaches no remote: no transport at all.
    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        run_git(Some(&self.dir), None, args, None).await
    }

    pub async fn head(&self) -> Result<String, GitError> {
        Ok(self.git(&["rev-parse", "HEAD"]).await?.trim().to_owned())
    }

    /// Creates `name` at HEAD and switches to it.
    pub async fn create_branch(&self, name: &str) -> Result<(), GitError> {
        self.git(&["checkout", "--quiet", "-b", name])
            .await
            .map(drop)
    }

    /// Paths that differ from HEAD (new, changed, deleted), sorted.
    pub async fn changed_files(&self) -> Result<Vec<String>, GitError> {
        let out = self
            .git(&["status", "--porcelain=v1", "-z", "--untracked-files=all"])
            .await?;
        let mut files = Vec::new();
        let mut entries = out.split('\0');
        while let Some(entry) = entries.next() {
            if entry.len() < 4 {
                continue;
            }
            let (status, path) = entry.split_at(3);
            // A rename is followed by its old path.
            if status.starts_with('R') || status.starts_with('C') {
                entries.next();
            }
            files.push(path.to_owned());
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Stages everything and commits. `None` when there was nothing to commit.
    pub async fn commit_all(
        &self,
        message: &str,
        author: &Identity,
    ) -> Result<Option<String>, GitError> {
        self.git(&["add", "--all"]).await?;
        if self.git(&["diff", "--cached", "--quiet"]).await.is_ok() {
            return Ok(None);
        }
        let name = format!("user.name={}", author.name);
        let email = format!("user.email={}", author.email);
        self.git(&[
            "-c",
            &name,
            "-c",
            &email,
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            message,
        ])
        .await?;
        Ok(Some(self.head().await?))
    }

    /// Pushes HEAD to `branch` on origin. Never forced: a branch that moved on is an error.
    pub async fn push(&self, branch: &str, token: Option<&SecretString>) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        run_git(
            Some(&self.dir),
            self.protocol,
            &["push", "--quiet", "origin", &refspec],
            token,
        )
        .await
        .map(drop)
    }
}

/// Whether the repository at `url` has the branch `name`.
pub async fn remote_has_branch(
    url: &str,
    name: &str,
    token: Option<&SecretString>,
) -> Result<bool, GitError> {
    let refname = format!("refs/heads/{name}");
    let args = ["ls-remote", "--heads", "--", url, &refname];
    let out = run_git(None, protocol_of(url), &args, token).await?;
    Ok(!out.trim().is_empty())
}

/// `backspace/<number>-<slug of the request>`: lowercase ASCII, at most 40 characters of slug.
pub fn branch_name(number: Option<u64>, prompt: &str) -> String {
    let mut slug = String::new();
    for c in prompt.chars() {
        if slug.len() >= 40 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "change" } else { slug };
    match number {
        Some(n) => format!("backspace/{n}-{slug}"),
        None => format!("backspace/{slug}"),
    }
}

/// A commit message: the title, the summary, and the requester as co-author.
pub fn commit_message(title: &str, summary: &str, co_author: Option<&Identity>) -> String {
    let mut msg = title.trim().to_owned();
    if !summary.trim().is_empty() {
        msg.push_str("\n\n");
        msg.push_str(summary.trim());
    }
    if let Some(c) = co_author {
        msg.push_str(&format!("\n\nCo-authored-by: {} <{}>", c.name, c.email));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_safe_slugs() {
        assert_eq!(
            branch_name(Some(12), "Add input validation to the signup form!"),
            "backspace/12-add-input-validation-to-the-signup-form"
        );
        assert_eq!(
            branch_name(Some(3), "../../etc/passwd; rm -rf"),
            "backspace/3-etc-passwd-rm-rf"
        );
        assert_eq!(branch_name(None, "日本語"), "backspace/change");
        let long = branch_name(Some(1), &"word ".repeat(30));
        assert!(long.len() <= "backspace/1-".len() + 41, "{long}");
    }

    #[test]
    fn the_token_never_reaches_an_error() {
        let t = SecretString::from("ghs_supersecret".to_string());
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_supersecret");
        let text = format!("fatal: ghs_supersecret and {basic}");
        let r = redact(&text, Some(&t));
        assert!(!r.contains("ghs_supersecret") && !r.contains(&basic), "{r}");
    }

    #[test]
    fn a_refused_token_is_told_apart_from_other_failures() {
        let failed = |stderr: &str| GitError::Failed {
            command: "push".into(),
            stderr: stderr.into(),
        };
        assert!(failed("remote: Invalid username or token.\nfatal: Authentication failed for 'https://github.com/o/r.git/'").is_auth_failure());
        assert!(failed(
            "fatal: could not read Username for 'http://127.0.0.1:1': terminal prompts disabled"
        )
        .is_auth_failure());
        assert!(!failed("! [rejected] HEAD -> main (fetch first)").is_auth_failure());
        assert!(
            !failed("fatal: unable to access: The requested URL returned error: 403")
                .is_auth_failure()
        );
    }

    #[test]
    fn each_remote_gets_only_its_own_transport() {
        assert_eq!(protocol_of("https://github.com/o/r.git"), Some("https"));
        assert_eq!(protocol_of("HTTP://127.0.0.1:8080/o/r.git"), Some("http"));
        assert_eq!(protocol_of("/home/dev/repo"), Some("file"));
        assert_eq!(protocol_of("file:///home/dev/repo"), Some("file"));
        assert_eq!(protocol_of("ssh://git@github.com/o/r"), None);
        assert_eq!(protocol_of("git@github.com:o/r.git"), None);
        assert_eq!(protocol_of("ext::sh -c touch% /tmp/pwned"), None);
    }

    #[test]
    fn git_runs_without_the_servers_environment() {
        // Cargo gives every test process variables of its own: none of them may reach git.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let cmd = command(None);
        let env: Vec<(String, Option<String>)> = cmd
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                let v = v.map(|v| v.to_string_lossy().into_owned());
                (k.to_string_lossy().into_owned(), v)
            })
            .collect();
        for (name, _) in &env {
            let ours = [
                "GIT_TERMINAL_PROMPT",
                "GIT_CONFIG_NOSYSTEM",
                "GIT_CONFIG_GLOBAL",
            ];
            assert!(
                PASSED_THROUGH.contains(&name.as_str()) || ours.contains(&name.as_str()),
                "{name} reached git"
            );
        }
        let global = env.iter().find(|(k, _)| k == "GIT_CONFIG_GLOBAL");
        assert_eq!(global.and_then(|(_, v)| v.as_deref()), Some("/dev/null"));
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"protocol.allow=never".to_string()),
            "{args:?}"
        );
        assert!(
            args.contains(&"core.hooksPath=/dev/null".to_string()),
            "{args:?}"
        );
    }

    #[tokio::test]
    async fn a_transport_the_remote_does_not_need_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = command(Some("https"))
            .args(["ls-remote", "--", "ext::sh -c true"])
            .current_dir(dir.path())
            .output()
            .await
            .expect("git");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("transport 'ext' not allowed"), "{err}");
    }

    #[test]
    fn the_requester_is_a_co_author() {
        let m = commit_message(
            "Add validation",
            "Checks emails.",
            Some(&Identity {
                name: "alice".into(),
                email: "1+alice@users.noreply.github.com".into(),
            }),
        );
        assert_eq!(m, "Add validation\n\nChecks emails.\n\nCo-authored-by: alice <1+alice@users.noreply.github.com>");
    }
}
