//! The fake's git side: bare repositories in a temp dir, made from a list of files, served over
//! Git smart HTTP by the real `git http-backend` (CGI), and read back for assertions.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

/// Runs git synchronously for setup and inspection; panics with git's message on failure
/// (test setup only).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fake GitHub")
        .env("GIT_AUTHOR_EMAIL", "fake@github.invalid")
        .env("GIT_COMMITTER_NAME", "Fake GitHub")
        .env("GIT_COMMITTER_EMAIL", "fake@github.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`git`] but `None` when git fails (a missing branch or file).
pub fn git_maybe(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// Creates `root/owner/name.git`, a bare repository whose `branch` holds `files`.
pub fn create_bare_repo(
    root: &Path,
    full_name: &str,
    branch: &str,
    files: &[(&str, &str)],
) -> PathBuf {
    let bare = root.join(format!("{full_name}.git"));
    let work = root.join("_work").join(full_name);
    std::fs::create_dir_all(&work).expect("work dir");
    git(&work, &["init", "-q", "-b", branch]);
    for (path, content) in files {
        let p = work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(&p, content).expect("write file");
    }
    git(&work, &["add", "-A"]);
    git(
        &work,
        &["commit", "-q", "--allow-empty", "-m", "Initial commit"],
    );
    std::fs::create_dir_all(bare.parent().expect("parent")).expect("owner dir");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf-8"),
            bare.to_str().expect("utf-8"),
        ],
    );
    git(&bare, &["config", "http.receivepack", "true"]);
    git(&bare, &["config", "http.uploadpack", "true"]);
    let _ = std::fs::remove_dir_all(&work);
    bare
}

/// What `git http-backend` answered.
pub struct CgiAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One CGI request to `git http-backend`.
pub struct CgiRequest<'a> {
    pub project_root: &'a Path,
    /// `/owner/name.git/info/refs` and the like.
    pub path_info: &'a str,
    pub query: &'a str,
    pub method: &'a str,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub git_protocol: Option<&'a str>,
    pub remote_user: Option<&'a str>,
    pub body: &'a [u8],
}

pub async fn http_backend(req: CgiRequest<'_>) -> std::io::Result<CgiAnswer> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", req.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", req.path_info)
        .env("QUERY_STRING", req.query)
        .env("REQUEST_METHOD", req.method)
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "100M")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(ct) = req.content_type {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = req.content_encoding {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = req.git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(u) = req.remote_user {
        cmd.env("REMOTE_USER", u);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = req.body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let out = child.wait_with_output().await?;
    let _ = writer.await;
    parse_cgi(&out.stdout)
}

/// Splits CGI output into the status (from `Status:`, 200 without it), headers and body.
pub fn parse_cgi(out: &[u8]) -> std::io::Result<CgiAnswer> {
    let (head_end, sep) = if let Some(i) = find(out, b"\r\n\r\n") {
        (i, 4)
    } else if let Some(i) = find(out, b"\n\n") {
        (i, 2)
    } else {
        return Err(std::io::Error::other("CGI output without a header block"));
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    Ok(CgiAnswer {
        status,
        headers,
        body: out[head_end + sep..].to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
