//! The fake's answers in GitHub's JSON shapes: each starts from the example GitHub's OpenAPI
//! description gives for the operation and overwrites the fields that carry the fake's state,
//! so every field GitHub documents is present.

use backspace::github::format_github_time;
use base64::Engine as _;
use serde_json::{json, Value};

use super::openapi::{example, example_named};
use super::{
    CommentRec, FakeCheckRun, IssueRec, RepoRec, ReviewRec, APP_ID, APP_SLUG, WEBHOOK_SECRET,
};

fn set(v: &mut Value, fields: Value) {
    if let (Some(obj), Some(new)) = (v.as_object_mut(), fields.as_object()) {
        for (k, val) in new {
            obj.insert(k.clone(), val.clone());
        }
    }
}

pub fn user(base: &str, login: &str, id: u64) -> Value {
    let mut u = example(
        "GET",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        200,
    )["user"]
        .clone();
    let kind = if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    };
    set(
        &mut u,
        json!({
            "login": login, "id": id, "node_id": format!("U_{id}"), "type": kind,
            "url": format!("{base}/users/{login}"), "html_url": format!("{base}/{login}"),
            "avatar_url": format!("{base}/avatars/{id}"),
            "followers_url": format!("{base}/users/{login}/followers"),
            "following_url": format!("{base}/users/{login}/following{{/other_user}}"),
            "gists_url": format!("{base}/users/{login}/gists{{/gist_id}}"),
            "starred_url": format!("{base}/users/{login}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{base}/users/{login}/subscriptions"),
            "organizations_url": format!("{base}/users/{login}/orgs"),
            "repos_url": format!("{base}/users/{login}/repos"),
            "events_url": format!("{base}/users/{login}/events{{/privacy}}"),
            "received_events_url": format!("{base}/users/{login}/received_events"),
        }),
    );
    u
}

pub fn app(base: &str) -> Value {
    let mut a = example("GET", "/app", 200);
    set(
        &mut a,
        json!({
            "id": APP_ID, "slug": APP_SLUG, "name": "Backspace (test)",
            "html_url": format!("{base}/apps/{APP_SLUG}"),
            "permissions": {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read"},
            "events": ["issue_comment", "issues", "pull_request", "pull_request_review", "pull_request_review_comment", "installation", "installation_repositories"],
        }),
    );
    a
}

pub fn installation(base: &str, id: u64, account: &str) -> Value {
    let mut i = example("GET", "/app/installations/{installation_id}", 200);
    set(
        &mut i,
        json!({
            "id": id, "app_id": APP_ID, "app_slug": APP_SLUG,
            "account": user(base, account, 1),
            "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
            "repositories_url": format!("{base}/installation/repositories"),
            "html_url": format!("{base}/settings/installations/{id}"),
            "repository_selection": "selected",
        }),
    );
    i
}

pub fn repository(base: &str, r: &RepoRec) -> Value {
    let mut v = example("GET", "/repos/{owner}/{repo}", 200);
    let full = r.full_name();
    set(
        &mut v,
        json!({
            "id": r.id, "node_id": format!("R_{}", r.id), "name": r.name, "full_name": full,
            "owner": user(base, &r.owner, 1), "private": r.private, "fork": r.fork,
            "visibility": if r.private { "private" } else { "public" },
            "default_branch": r.default_branch, "language": "Rust",
            "url": format!("{base}/repos/{full}"), "html_url": format!("{base}/{full}"),
            "clone_url": format!("{base}/{full}.git"), "git_url": format!("{base}/{full}.git"),
            "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true},
        }),
    );
    // Only a fork has a parent and a source.
    if let Some(o) = v.as_object_mut() {
        if !r.fork {
            o.remove("parent");
            o.remove("source");
        }
    }
    v
}

pub fn permission(base: &str, login: &str, id: u64, role: &str) -> Value {
    // GitHub's `permission` folds maintain into write and triage into read.
    let permission = match role {
        "admin" => "admin",
        "maintain" | "write" => "write",
        "triage" | "read" => "read",
        _ => "none",
    };
    let mut v = example(
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        200,
    );
    let mut u = v["user"].clone();
    set(&mut u, user(base, login, id));
    set(&mut u, json!({"role_name": role}));
    set(
        &mut v,
        json!({"permission": permission, "role_name": role, "user": u}),
    );
    v
}

pub fn comment(base: &str, full: &str, c: &CommentRec, uid: u64) -> Value {
    let mut v = example(
        "GET",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        200,
    );
    set(
        &mut v,
        json!({
            "id": c.id, "node_id": format!("IC_{}", c.id),
            "url": format!("{base}/repos/{full}/issues/comments/{}", c.id),
            "html_url": format!("{base}/{full}/issues/{}#issuecomment-{}", c.issue, c.id),
            "issue_url": format!("{base}/repos/{full}/issues/{}", c.issue),
            "body": c.history.last().cloned().unwrap_or_default(),
            "user": user(base, &c.author, uid),
            "created_at": format_github_time(c.created_at), "updated_at": format_github_time(c.updated_at),
            "author_association": if c.author.ends_with("[bot]") { "NONE" } else { "CONTRIBUTOR" },
        }),
    );
    v
}

pub fn review_comment(base: &str, full: &str, c: &CommentRec, uid: u64) -> Value {
    let mut v = example(
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
        201,
    );
    set(
        &mut v,
        json!({
            "id": c.id, "node_id": format!("PRRC_{}", c.id),
            "url": format!("{base}/repos/{full}/pulls/comments/{}", c.id),
            "html_url": format!("{base}/{full}/pull/{}#discussion_r{}", c.issue, c.id),
            "pull_request_url": format!("{base}/repos/{full}/pulls/{}", c.issue),
            "body": c.history.last().cloned().unwrap_or_default(),
            "user": user(base, &c.author, uid),
            "created_at": format_github_time(c.created_at), "updated_at": format_github_time(c.updated_at),
        }),
    );
    if let (Some(o), Some(Some(parent))) = (v.as_object_mut(), c.review) {
        o.insert("in_reply_to_id".into(), json!(parent));
    }
    if let Some(review) = c.review_id {
        set(&mut v, json!({"pull_request_review_id": review}));
    }
    if let Some(path) = &c.path {
        set(
            &mut v,
            json!({"path": path, "line": c.line, "original_line": c.line}),
        );
    }
    v
}

/// A user as `GET /users/{username}` renders it (the bot user like GitHub's `dependabot[bot]`).
pub fn full_user(base: &str, login: &str, id: u64) -> Value {
    let mut u = example("GET", "/users/{username}", 200);
    let short = user(base, login, id);
    set(&mut u, short);
    let html = if login.ends_with("[bot]") {
        format!("{base}/apps/{}", login.trim_end_matches("[bot]"))
    } else {
        format!("{base}/{login}")
    };
    set(&mut u, json!({"html_url": html}));
    u
}

/// A submitted review, as `pull_request_review` payloads carry it.
pub fn review(base: &str, r: &ReviewRec, uid: u64) -> Value {
    json!({
        "id": r.id, "node_id": format!("PRR_{}", r.id), "user": user(base, &r.author, uid),
        "body": r.body, "commit_id": r.commit_id, "state": "commented",
        "submitted_at": "2026-01-01T00:00:00Z", "author_association": "COLLABORATOR",
        "html_url": format!("{base}/{}/pull/{}#pullrequestreview-{}", r.repo, r.pull, r.id),
        "pull_request_url": format!("{base}/repos/{}/pulls/{}", r.repo, r.pull),
        "_links": {
            "html": {"href": format!("{base}/{}/pull/{}#pullrequestreview-{}", r.repo, r.pull, r.id)},
            "pull_request": {"href": format!("{base}/repos/{}/pulls/{}", r.repo, r.pull)},
        },
    })
}

/// A check run as the Checks API renders it.
pub fn check_run(base: &str, c: &FakeCheckRun) -> Value {
    let mut v = example("POST", "/repos/{owner}/{repo}/check-runs", 201);
    let full = &c.repo;
    let output = json!({
        "title": c.output["title"], "summary": c.output["summary"],
        "text": c.output.get("text").cloned().unwrap_or(Value::Null),
        "annotations_count": 0,
        "annotations_url": format!("{base}/repos/{full}/check-runs/{}/annotations", c.id),
    });
    set(
        &mut v,
        json!({
            "id": c.id, "node_id": format!("CR_{}", c.id), "head_sha": c.head_sha, "name": c.name,
            "external_id": c.external_id, "details_url": c.details_url,
            "url": format!("{base}/repos/{full}/check-runs/{}", c.id),
            "html_url": format!("{base}/{full}/runs/{}", c.id),
            "status": c.status, "conclusion": c.conclusion,
            "started_at": "2026-01-01T00:00:00Z",
            "completed_at": if c.status == "completed" { json!("2026-01-01T00:01:00Z") } else { Value::Null },
            "output": output, "check_suite": {"id": 1},
            "app": {"id": APP_ID, "slug": APP_SLUG, "node_id": "A_1", "name": "Backspace (test)", "owner": user(base, "octo", 1)},
            "pull_requests": [],
        }),
    );
    v
}

pub fn reaction(base: &str, id: u64, login: &str, uid: u64, content: &str) -> Value {
    let mut v = example(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
        201,
    );
    set(
        &mut v,
        json!({"id": id, "node_id": format!("REA_{id}"), "user": user(base, login, uid), "content": content}),
    );
    v
}

pub fn issue(base: &str, r: &RepoRec, i: &IssueRec, uid: u64, comments: usize) -> Value {
    let mut v = example("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 200);
    let full = r.full_name();
    let n = i.number;
    set(
        &mut v,
        json!({
            "id": i.id, "node_id": format!("I_{}", i.id), "number": n, "title": i.title, "body": i.body,
            "state": i.state, "user": user(base, &i.author, uid), "comments": comments,
            "url": format!("{base}/repos/{full}/issues/{n}"),
            "html_url": format!("{base}/{full}/{}/{n}", if i.pull.is_some() { "pull" } else { "issues" }),
            "repository_url": format!("{base}/repos/{full}"),
            "comments_url": format!("{base}/repos/{full}/issues/{n}/comments"),
            "events_url": format!("{base}/repos/{full}/issues/{n}/events"),
            "labels_url": format!("{base}/repos/{full}/issues/{n}/labels{{/name}}"),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "labels": [], "assignee": null, "assignees": [], "milestone": null, "closed_at": null,
            "locked": false,
        }),
    );
    if let Some(o) = v.as_object_mut() {
        o.remove("repository");
        if i.pull.is_none() {
            o.remove("pull_request");
        } else {
            o.insert(
                "pull_request".into(),
                json!({
                    "url": format!("{base}/repos/{full}/pulls/{n}"),
                    "html_url": format!("{base}/{full}/pull/{n}"),
                    "diff_url": format!("{base}/{full}/pull/{n}.diff"),
                    "patch_url": format!("{base}/{full}/pull/{n}.patch"),
                }),
            );
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
pub fn pull(
    base: &str,
    r: &RepoRec,
    head_repo: &RepoRec,
    i: &IssueRec,
    head: &str,
    head_sha: &str,
    base_branch: &str,
    base_sha: &str,
    draft: bool,
    uid: u64,
) -> Value {
    let mut v = example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200);
    let full = r.full_name();
    let n = i.number;
    let side = |template: &Value, repo: &RepoRec, branch: &str, sha: &str| {
        let mut s = template.clone();
        set(
            &mut s,
            json!({
                "ref": branch, "sha": sha, "label": format!("{}:{branch}", repo.owner),
                "repo": repository(base, repo), "user": user(base, &repo.owner, 1),
            }),
        );
        s
    };
    let head_side = side(&v["head"], head_repo, head, head_sha);
    let base_side = side(&v["base"], r, base_branch, base_sha);
    set(
        &mut v,
        json!({
            "id": i.id, "node_id": format!("PR_{}", i.id), "number": n, "title": i.title, "body": i.body,
            "state": i.state, "draft": draft, "user": user(base, &i.author, uid),
            "head": head_side, "base": base_side,
            "url": format!("{base}/repos/{full}/pulls/{n}"),
            "html_url": format!("{base}/{full}/pull/{n}"),
            "issue_url": format!("{base}/repos/{full}/issues/{n}"),
            "merged": false, "merged_at": null, "merge_commit_sha": null, "closed_at": null,
            "labels": [], "assignee": null, "assignees": [], "milestone": null,
            "requested_reviewers": [], "requested_teams": [],
        }),
    );
    v
}

pub fn file_content(
    base: &str,
    full: &str,
    git_ref: &str,
    path: &str,
    sha: &str,
    bytes: &[u8],
) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    // GitHub wraps the base64 text at 60 columns.
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut v = example_named(
        "GET",
        "/repos/{owner}/{repo}/contents/{path}",
        200,
        "response-if-content-is-a-file",
    );
    set(
        &mut v,
        json!({
            "type": "file", "encoding": "base64", "size": bytes.len(), "name": name, "path": path,
            "content": format!("{}\n", wrapped.join("\n")), "sha": sha,
            "url": format!("{base}/repos/{full}/contents/{path}?ref={git_ref}"),
            "git_url": format!("{base}/repos/{full}/git/blobs/{sha}"),
            "html_url": format!("{base}/{full}/blob/{git_ref}/{path}"),
            "download_url": format!("{base}/{full}/raw/{git_ref}/{path}"),
            "_links": {
                "self": format!("{base}/repos/{full}/contents/{path}?ref={git_ref}"),
                "git": format!("{base}/repos/{full}/git/blobs/{sha}"),
                "html": format!("{base}/{full}/blob/{git_ref}/{path}"),
            },
        }),
    );
    v
}

pub fn manifest_conversion(base: &str) -> Value {
    use secrecy::ExposeSecret as _;
    let mut v = example("POST", "/app-manifests/{code}/conversions", 201);
    set(&mut v, app(base));
    set(
        &mut v,
        json!({
            "client_id": "Iv1.fakeclientid",
            "client_secret": "fake-client-secret",
            "webhook_secret": WEBHOOK_SECRET,
            "pem": super::app_private_key().expose_secret(),
        }),
    );
    v
}

pub fn dir_entry(
    base: &str,
    full: &str,
    git_ref: &str,
    path: &str,
    kind: &str,
    sha: &str,
    size: u64,
) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    let blob_or_tree = if kind == "dir" { "trees" } else { "blobs" };
    json!({
        "type": kind, "size": size, "name": name, "path": path, "sha": sha,
        "url": format!("{base}/repos/{full}/contents/{path}?ref={git_ref}"),
        "git_url": format!("{base}/repos/{full}/git/{blob_or_tree}/{sha}"),
        "html_url": format!("{base}/{full}/tree/{git_ref}/{path}"),
        "download_url": if kind == "dir" { Value::Null } else { json!(format!("{base}/{full}/raw/{git_ref}/{path}")) },
        "_links": {
            "self": format!("{base}/repos/{full}/contents/{path}?ref={git_ref}"),
            "git": format!("{base}/repos/{full}/git/{blob_or_tree}/{sha}"),
            "html": format!("{base}/{full}/tree/{git_ref}/{path}"),
        },
    })
}
