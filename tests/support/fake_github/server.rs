//! The fake's HTTP side: routing by OpenAPI template, injected delays and faults, the app JWT
//! and installation token checks, the REST handlers over the fake's state, and Git smart HTTP
//! through `git http-backend`. Every request is recorded with what the OpenAPI subset finds
//! wrong with it.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::*;

/// The REST routes the fake serves, as OpenAPI templates.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/app"),
    ("GET", "/app/installations/{installation_id}"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/repos/{owner}/{repo}"),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
    ),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    (
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
    ),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments",
    ),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("GET", "/users/{username}"),
];

fn route(method: &str, path: &str) -> Option<(&'static str, HashMap<String, String>)> {
    ROUTES
        .iter()
        .filter(|(m, _)| *m == method)
        .find_map(|(_, t)| {
            let params = openapi::match_template(t, path)?;
            Some((*t, params.into_iter().collect()))
        })
}

/// An answer of the fake, before recording.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn json_answer(status: u16, value: &Value) -> Answer {
    Answer {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn error(status: u16, message: &str) -> Answer {
    json_answer(
        status,
        &json!({"message": message, "documentation_url": DOCS, "status": status.to_string()}),
    )
}

pub(super) async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = percent_decode(req.uri().path());
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 256 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();

    let is_git = path.contains(".git/");
    let operation = if is_git {
        Some(git_operation(&path, &query))
    } else {
        route(method.as_str(), &path).map(|(t, _)| format!("{method} {t}"))
    };
    let auth_kind = auth_kind(&headers);
    let json_body: Option<Value> = if body.is_empty() || is_git {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let problems = if is_git {
        Vec::new()
    } else {
        openapi::check_request(method.as_str(), &path, &query, json_body.as_ref())
    };

    // Injected delays and faults, per operation.
    let (delay, fault) = {
        let mut s = lock(&shared.state);
        let op = operation.clone().unwrap_or_default();
        let delay = s
            .delays
            .iter_mut()
            .find(|d| d.operation == op && d.times > 0)
            .map(|d| {
                d.times -= 1;
                d.delay
            });
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.operation == op && f.times > 0)
            .map(|f| {
                f.times -= 1;
                f.clone()
            });
        (delay, fault)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let answer = if let Some(f) = fault {
        let message = match f.status {
            429 | 403 => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            _ => "Server Error",
        };
        let mut a = error(f.status, message);
        a.headers.extend(f.headers);
        a
    } else if is_git {
        serve_git(&shared, &method, &path, &query, &headers, &body).await
    } else if headers.get("user-agent").is_none() {
        // GitHub refuses requests without a User-Agent.
        error(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.")
    } else {
        match route(method.as_str(), &path) {
            None => error(404, "Not Found"),
            Some((template, params)) => {
                let a = rest(
                    &shared,
                    method.as_str(),
                    template,
                    &params,
                    &query,
                    &headers,
                    json_body.as_ref(),
                );
                if (200..300).contains(&a.status) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&a.body) {
                        let p = openapi::check_response(method.as_str(), template, a.status, &v);
                        lock(&shared.state).response_problems.extend(p);
                    }
                }
                a
            }
        }
    };

    lock(&shared.state).requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query,
        operation,
        body: json_body,
        auth: auth_kind,
        status: answer.status,
        problems,
    });

    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &answer.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    response
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn percent_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn git_operation(path: &str, query: &str) -> String {
    if path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack") {
        "git push".into()
    } else {
        "git fetch".into()
    }
}

fn auth_kind(headers: &HeaderMap) -> &'static str {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => "none",
        Some(v) if v.starts_with("Basic ") => "basic",
        Some(v) => {
            let t = v.split_whitespace().nth(1).unwrap_or("");
            if t.matches('.').count() == 2 {
                "jwt"
            } else {
                "token"
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| cred.trim().to_string())
}

/// Checks the app JWT like GitHub: RS256 signature by the app's key, `iss` the app id, `exp`
/// in the future but at most 10 minutes ahead, `iat` not in the future, at most 10 minutes
/// between them.
fn check_jwt(shared: &Shared, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(jwt) = bearer(headers) else {
        return Err(error(401, "Bad credentials"));
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let data = jsonwebtoken::decode::<Value>(&jwt, &shared.public_key, &validation)
        .map_err(|_| error(401, "A JSON web token could not be decoded"))?;
    let claims = data.claims;
    let iss_ok = match &claims["iss"] {
        Value::String(s) => s == &APP_ID.to_string(),
        Value::Number(n) => n.as_u64() == Some(APP_ID),
        _ => false,
    };
    if !iss_ok {
        return Err(error(401, "A JSON web token could not be decoded"));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(error(401, "A JSON web token could not be decoded"));
    };
    let t = now();
    if exp > t + 600 || exp.saturating_sub(iat) > 600 {
        return Err(error(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    if iat > t + 1 {
        return Err(error(401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"));
    }
    Ok(())
}

/// The permission a repository operation needs from an installation token.
fn needed_permission(method: &str, template: &str) -> (&'static str, &'static str) {
    let write = method != "GET";
    let level = if write { "write" } else { "read" };
    if template.contains("/check-runs") {
        ("checks", level)
    } else if template.contains("/contents/") {
        ("contents", level)
    } else if template.contains("/pulls") {
        ("pull_requests", level)
    } else if template.contains("/issues") {
        ("issues", level)
    } else {
        ("metadata", "read")
    }
}

/// Checks an installation token: minted here, unexpired, its installation alive, covering the
/// repository, with the permission needed.
fn check_token(
    s: &FakeState,
    token: Option<&str>,
    repo: &RepoRec,
    need: (&str, &str),
) -> Result<(), Answer> {
    let Some(grant) = token.and_then(|t| s.tokens.get(t)) else {
        return Err(error(401, "Bad credentials"));
    };
    if grant.expires_at <= now() {
        return Err(error(401, "Bad credentials"));
    }
    match s.installations.get(&grant.installation) {
        None => return Err(error(401, "Bad credentials")),
        Some(i) if i.suspended => return Err(error(403, "This installation has been suspended")),
        Some(_) => {}
    }
    let covers = repo.installation == grant.installation
        && grant
            .repositories
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&repo.name)));
    if !covers {
        // GitHub hides private repositories from tokens that do not cover them.
        return Err(if repo.private {
            error(404, "Not Found")
        } else {
            error(403, "Resource not accessible by integration")
        });
    }
    let granted = grant.permissions[need.0].as_str().unwrap_or("none");
    let ok = match need.1 {
        "read" => granted == "read" || granted == "write",
        _ => granted == "write",
    };
    if !ok {
        return Err(error(403, "Resource not accessible by integration"));
    }
    Ok(())
}

fn rest(
    shared: &Shared,
    method: &str,
    template: &'static str,
    params: &HashMap<String, String>,
    query: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Answer {
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let num = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
    if template == "/app-manifests/{code}/conversions" {
        // No credential: the one-time code is the credential, and it works once.
        let mut s = lock(&shared.state);
        let code = p("code");
        let Some(i) = s.manifest_codes.iter().position(|c| *c == code) else {
            return error(404, "Not Found");
        };
        s.manifest_codes.remove(i);
        let base = s.base_url.clone();
        return json_answer(201, &shapes::manifest_conversion(&base));
    }
    let app_route = template == "/app"
        || template.starts_with("/app/")
        || template == "/repos/{owner}/{repo}/installation";
    if app_route {
        if let Err(a) = check_jwt(shared, headers) {
            return a;
        }
    }
    let mut s = lock(&shared.state);
    let base = s.base_url.clone();
    match (method, template) {
        ("GET", "/app") => json_answer(200, &shapes::app(&base)),
        ("GET", "/app/installations/{installation_id}") => {
            match num("installation_id").and_then(|i| s.installations.get(&i)) {
                Some(i) => json_answer(200, &shapes::installation(&base, i.id, &i.account)),
                None => error(404, "Not Found"),
            }
        }
        ("POST", "/app/installations/{installation_id}/access_tokens") => {
            let Some(inst) = num("installation_id")
                .and_then(|i| s.installations.get(&i))
                .cloned()
            else {
                return error(404, "Not Found");
            };
            if inst.suspended {
                return error(403, "This installation has been suspended");
            }
            let names: Option<Vec<String>> =
                body.and_then(|b| b["repositories"].as_array()).map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let repos: Vec<RepoRec> = s
                .repos
                .values()
                .filter(|r| r.installation == inst.id)
                .cloned()
                .collect();
            if let Some(names) = &names {
                for n in names {
                    if !repos.iter().any(|r| r.name.eq_ignore_ascii_case(n)) {
                        return error(422, "There is at least one repository that does not exist or is not accessible to the parent installation.");
                    }
                }
            }
            let permissions = body
                .and_then(|b| b.get("permissions").cloned())
                .unwrap_or_else(default_permissions);
            // Nothing beyond what the installation granted the app.
            let granted = inst.granted.clone();
            let within_grant = permissions.as_object().is_some_and(|asked| {
                asked.iter().all(|(k, v)| {
                    matches!(
                        (granted[k].as_str(), v.as_str()),
                        (Some("write"), Some("read" | "write")) | (Some("read"), Some("read"))
                    )
                })
            });
            if !within_grant {
                return error(
                    422,
                    "The permissions requested are not granted to this installation.",
                );
            }
            let ttl = s.token_ttl;
            let grant = mint(&mut s, inst.id, names.clone(), permissions.clone(), ttl);
            let covered: Vec<Value> = repos
                .iter()
                .filter(|r| {
                    names
                        .as_ref()
                        .is_none_or(|n| n.iter().any(|n| n.eq_ignore_ascii_case(&r.name)))
                })
                .map(|r| shapes::repository(&base, r))
                .collect();
            json_answer(
                201,
                &json!({
                    "token": grant.token,
                    "expires_at": format_github_time(grant.expires_at),
                    "permissions": permissions,
                    "repository_selection": if names.is_some() { "selected" } else { "all" },
                    "repositories": covered,
                }),
            )
        }
        // Public: GitHub answers it with any credential or none.
        ("GET", "/users/{username}") => {
            let login = p("username");
            let found = s
                .users
                .iter()
                .find(|(l, _)| l.eq_ignore_ascii_case(&login))
                .map(|(l, id)| (l.clone(), *id));
            match found {
                Some((login, id)) => json_answer(200, &shapes::full_user(&base, &login, id)),
                None => error(404, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/installation") => {
            match s
                .repo(&format!("{}/{}", p("owner"), p("repo")))
                .and_then(|r| s.installations.get(&r.installation))
            {
                Some(i) => json_answer(200, &shapes::installation(&base, i.id, &i.account)),
                None => error(404, "Not Found"),
            }
        }
        _ => {
            let full = format!("{}/{}", p("owner"), p("repo"));
            let Some(repo) = s.repo(&full).cloned() else {
                return error(404, "Not Found");
            };
            if let Err(a) = check_token(
                &s,
                bearer(headers).as_deref(),
                &repo,
                needed_permission(method, template),
            ) {
                return a;
            }
            repo_route(&mut s, &base, &repo, method, template, &p, query, body)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn repo_route(
    s: &mut FakeState,
    base: &str,
    repo: &RepoRec,
    method: &str,
    template: &str,
    p: &dyn Fn(&str) -> String,
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let num = |k: &str| p(k).parse::<u64>().ok();
    let full = repo.full_name();
    let body_text = || body.and_then(|b| b["body"].as_str()).map(str::to_string);
    match (method, template) {
        ("GET", "/repos/{owner}/{repo}") => json_answer(200, &shapes::repository(base, repo)),
        ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission") => {
            let user = p("username");
            let uid = s.user_id(&user);
            let role = repo.collaborators.get(&user.to_ascii_lowercase()).cloned();
            let role = role.unwrap_or_else(|| {
                if repo.private {
                    "none".into()
                } else {
                    "read".into()
                }
            });
            json_answer(200, &shapes::permission(base, &user, uid, &role))
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => {
            match num("issue_number").and_then(|n| repo.issues.get(&n)) {
                Some(i) => {
                    let uid = s.user_id(&i.author);
                    let count = s
                        .comments
                        .values()
                        .filter(|c| c.review.is_none() && c.repo == full && c.issue == i.number)
                        .count();
                    json_answer(200, &shapes::issue(base, repo, i, uid, count))
                }
                None => error(404, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            let Some(n) = num("issue_number").filter(|n| repo.issues.contains_key(n)) else {
                return error(404, "Not Found");
            };
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let per_page = q
                .get("per_page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = q
                .get("page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let list: Vec<CommentRec> = s
                .comments
                .values()
                .filter(|c| c.review.is_none() && c.repo == full && c.issue == n)
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect();
            let items: Vec<Value> = list
                .iter()
                .map(|c| {
                    let uid = s.user_id(&c.author);
                    shapes::comment(base, &full, c, uid)
                })
                .collect();
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            let (Some(n), Some(text)) = (
                num("issue_number").filter(|n| repo.issues.contains_key(n)),
                body_text(),
            ) else {
                return error(
                    if body_text().is_none() { 422 } else { 404 },
                    if body_text().is_none() {
                        "Validation Failed"
                    } else {
                        "Not Found"
                    },
                );
            };
            let bot = format!("{APP_SLUG}[bot]");
            let id = insert_comment(s, &full, n, &bot, &text, None);
            let c = s.comments[&id].clone();
            let uid = s.user_id(&bot);
            json_answer(201, &shapes::comment(base, &full, &c, uid))
        }
        ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            match num("comment_id")
                .and_then(|id| s.comments.get(&id))
                .filter(|c| c.repo == full && c.review.is_none())
                .cloned()
            {
                Some(c) => {
                    let uid = s.user_id(&c.author);
                    json_answer(200, &shapes::comment(base, &full, &c, uid))
                }
                None => error(404, "Not Found"),
            }
        }
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            let Some(text) = body_text() else {
                return error(422, "Validation Failed");
            };
            let bot = format!("{APP_SLUG}[bot]");
            let Some(c) = num("comment_id")
                .and_then(|id| s.comments.get_mut(&id))
                .filter(|c| c.repo == full && c.review.is_none())
            else {
                return error(404, "Not Found");
            };
            if c.author != bot {
                return error(403, "Resource not accessible by integration");
            }
            c.history.push(text);
            c.updated_at = now();
            let c = c.clone();
            let uid = s.user_id(&bot);
            json_answer(200, &shapes::comment(base, &full, &c, uid))
        }
        ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
        | ("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
        | ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions") => {
            let target = if template.contains("/issues/comments/") {
                num("comment_id")
                    .filter(|id| {
                        s.comments
                            .get(id)
                            .is_some_and(|c| c.repo == full && c.review.is_none())
                    })
                    .map(ReactionTarget::Comment)
            } else if template.contains("/pulls/comments/") {
                num("comment_id")
                    .filter(|id| {
                        s.comments
                            .get(id)
                            .is_some_and(|c| c.repo == full && c.review.is_some())
                    })
                    .map(ReactionTarget::ReviewComment)
            } else {
                num("issue_number")
                    .filter(|n| repo.issues.contains_key(n))
                    .map(|n| ReactionTarget::Issue(full.to_ascii_lowercase(), n))
            };
            let Some(target) = target else {
                return error(404, "Not Found");
            };
            let content = body
                .and_then(|b| b["content"].as_str())
                .unwrap_or("")
                .to_string();
            const CONTENTS: [&str; 8] = [
                "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
            ];
            if !CONTENTS.contains(&content.as_str()) {
                return error(422, "Validation Failed");
            }
            let bot = format!("{APP_SLUG}[bot]");
            let uid = s.user_id(&bot);
            // The same reaction by the same user answers 200 with the existing one.
            if let Some(r) = s
                .reactions
                .iter()
                .find(|r| r.target == target && r.user == bot && r.content == content)
            {
                return json_answer(200, &shapes::reaction(base, r.id, &bot, uid, &content));
            }
            let id = s.id();
            s.reactions.push(ReactionRec {
                id,
                target,
                user: bot.clone(),
                content: content.clone(),
            });
            json_answer(201, &shapes::reaction(base, id, &bot, uid, &content))
        }
        ("GET", "/repos/{owner}/{repo}/contents/{path}") => {
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let git_ref = q
                .get("ref")
                .cloned()
                .unwrap_or_else(|| repo.default_branch.clone());
            let path = p("path");
            let Some(bare) = repo.bare.clone() else {
                return error(404, "Not Found");
            };
            let spec = format!("{git_ref}:{path}");
            match git::git_maybe(&bare, &["cat-file", "-t", &spec])
                .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            {
                Some(kind) if kind == "blob" => {
                    let bytes =
                        git::git_maybe(&bare, &["cat-file", "blob", &spec]).unwrap_or_default();
                    let sha = git::git_maybe(&bare, &["rev-parse", &spec])
                        .map(|s| String::from_utf8_lossy(&s).trim().to_string())
                        .unwrap_or_default();
                    json_answer(
                        200,
                        &shapes::file_content(base, &full, &git_ref, &path, &sha, &bytes),
                    )
                }
                Some(kind) if kind == "tree" => {
                    let listing =
                        git::git_maybe(&bare, &["ls-tree", "-l", &spec]).unwrap_or_default();
                    let entries: Vec<Value> = String::from_utf8_lossy(&listing)
                        .lines()
                        .filter_map(|line| {
                            // "<mode> <type> <sha> <size>\t<name>"
                            let (meta, name) = line.split_once('\t')?;
                            let mut m = meta.split_whitespace();
                            let (_mode, kind, sha, size) =
                                (m.next()?, m.next()?, m.next()?, m.next()?);
                            let kind = if kind == "tree" { "dir" } else { "file" };
                            let entry_path = if path.is_empty() {
                                name.to_string()
                            } else {
                                format!("{path}/{name}")
                            };
                            Some(shapes::dir_entry(
                                base,
                                &full,
                                &git_ref,
                                &entry_path,
                                kind,
                                sha,
                                size.parse().unwrap_or(0),
                            ))
                        })
                        .collect();
                    json_answer(200, &Value::Array(entries))
                }
                _ => error(404, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/pulls") => {
            let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let state = q.get("state").cloned().unwrap_or_else(|| "open".into());
            let head = q.get("head").cloned();
            let list: Vec<IssueRec> = repo
                .issues
                .values()
                .filter(|i| i.pull.is_some())
                .filter(|i| state == "all" || i.state == state)
                .filter(|i| match (&head, &i.pull) {
                    (Some(h), Some(pr)) => {
                        let (owner, branch) = h
                            .split_once(':')
                            .unwrap_or((repo.owner.as_str(), h.as_str()));
                        let head_owner = pr.head_repo.split('/').next().unwrap_or("");
                        head_owner.eq_ignore_ascii_case(owner) && pr.head == branch
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            let items: Vec<Value> = list.iter().map(|i| pull_json(s, base, repo, i)).collect();
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/pulls") => {
            let (Some(head), Some(base_branch)) = (
                body.and_then(|b| b["head"].as_str()),
                body.and_then(|b| b["base"].as_str()),
            ) else {
                return error(422, "Validation Failed");
            };
            let (head_owner, head_branch) =
                head.split_once(':').unwrap_or((repo.owner.as_str(), head));
            let head_repo = format!("{head_owner}/{}", repo.name);
            let bare = repo.bare.clone();
            let exists = |b: &str| {
                bare.as_ref()
                    .and_then(|d| {
                        git::git_maybe(d, &["rev-parse", "--verify", &format!("refs/heads/{b}")])
                    })
                    .is_some()
            };
            if !head_owner.eq_ignore_ascii_case(&repo.owner)
                || !exists(head_branch)
                || !exists(base_branch)
            {
                return error(422, "Validation Failed");
            }
            let already = repo.issues.values().any(|i| {
                i.state == "open"
                    && i.pull.as_ref().is_some_and(|p| {
                        p.head == head_branch && p.head_repo.eq_ignore_ascii_case(&head_repo)
                    })
            });
            if already {
                return error(422, &format!("Validation Failed: A pull request already exists for {head_owner}:{head_branch}."));
            }
            let bot = format!("{APP_SLUG}[bot]");
            s.user_id(&bot);
            let id = s.id();
            let Some(r) = s.repo_mut(&full) else {
                return error(404, "Not Found");
            };
            let number = r.issues.keys().max().copied().unwrap_or(0) + 1;
            let rec = IssueRec {
                number,
                id,
                author: bot,
                title: body.and_then(|b| b["title"].as_str()).unwrap_or("").into(),
                body: body.and_then(|b| b["body"].as_str()).unwrap_or("").into(),
                state: "open".into(),
                pull: Some(PullRec {
                    head_repo: repo.full_name(),
                    head: head_branch.into(),
                    base: base_branch.into(),
                    draft: body.and_then(|b| b["draft"].as_bool()).unwrap_or(false),
                    reviewers: Vec::new(),
                }),
            };
            r.issues.insert(number, rec.clone());
            let repo = r.clone();
            json_answer(201, &pull_json(s, base, &repo, &rec))
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            match num("pull_number")
                .and_then(|n| repo.issues.get(&n))
                .filter(|i| i.pull.is_some())
                .cloned()
            {
                Some(i) => json_answer(200, &pull_json(s, base, repo, &i)),
                None => error(404, "Not Found"),
            }
        }
        ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            let Some(n) = num("pull_number") else {
                return error(404, "Not Found");
            };
            let Some(r) = s.repo_mut(&full) else {
                return error(404, "Not Found");
            };
            let Some(i) = r.issues.get_mut(&n).filter(|i| i.pull.is_some()) else {
                return error(404, "Not Found");
            };
            if let Some(t) = body.and_then(|b| b["title"].as_str()) {
                i.title = t.into();
            }
            if let Some(b) = body.and_then(|b| b["body"].as_str()) {
                i.body = b.into();
            }
            let rec = i.clone();
            let repo = r.clone();
            json_answer(200, &pull_json(s, base, &repo, &rec))
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments") => {
            let Some(n) = num("pull_number") else {
                return error(404, "Not Found");
            };
            let items = review_comments_json(s, base, &full, |c| {
                c.review.is_some() && c.repo == full && c.issue == n
            });
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies") => {
            let Some(text) = body_text() else {
                return error(422, "Validation Failed");
            };
            let (Some(n), Some(parent)) = (num("pull_number"), num("comment_id")) else {
                return error(404, "Not Found");
            };
            if !s
                .comments
                .get(&parent)
                .is_some_and(|c| c.review.is_some() && c.repo == full && c.issue == n)
            {
                return error(404, "Not Found");
            }
            let bot = format!("{APP_SLUG}[bot]");
            let id = insert_comment(s, &full, n, &bot, &text, Some(Some(parent)));
            let c = s.comments[&id].clone();
            let uid = s.user_id(&bot);
            json_answer(201, &shapes::review_comment(base, &full, &c, uid))
        }
        ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers") => {
            request_reviewers(s, base, repo, num("pull_number"), body)
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments") => {
            let (Some(n), Some(review)) = (num("pull_number"), num("review_id")) else {
                return error(404, "Not Found");
            };
            let known = s
                .reviews
                .get(&review)
                .is_some_and(|r| r.repo.eq_ignore_ascii_case(&full) && r.pull == n);
            if !known {
                return error(404, "Not Found");
            }
            let items = review_comments_json(s, base, &full, |c| c.review_id == Some(review));
            json_answer(200, &Value::Array(items))
        }
        ("POST", "/repos/{owner}/{repo}/check-runs") => create_check_run(s, base, repo, body),
        ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}") => {
            update_check_run(s, base, &full, num("check_run_id"), body)
        }
        ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs") => {
            list_check_runs(s, base, repo, &p("ref"), query)
        }
        _ => error(404, "Not Found"),
    }
}

/// The review comments `keep` selects, as GitHub renders them.
fn review_comments_json(
    s: &mut FakeState,
    base: &str,
    full: &str,
    keep: impl Fn(&CommentRec) -> bool,
) -> Vec<Value> {
    let list: Vec<CommentRec> = s.comments.values().filter(|c| keep(c)).cloned().collect();
    list.iter()
        .map(|c| {
            let uid = s.user_id(&c.author);
            shapes::review_comment(base, full, c, uid)
        })
        .collect()
}

/// `POST .../requested_reviewers`: only collaborators, never the pull request's author.
fn request_reviewers(
    s: &mut FakeState,
    base: &str,
    repo: &RepoRec,
    number: Option<u64>,
    body: Option<&Value>,
) -> Answer {
    let full = repo.full_name();
    let Some(n) = number.filter(|n| repo.issues.get(n).is_some_and(|i| i.pull.is_some())) else {
        return error(404, "Not Found");
    };
    let asked: Vec<String> = body
        .and_then(|b| b["reviewers"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let author = repo.issues[&n].author.clone();
    if asked.iter().any(|r| r.eq_ignore_ascii_case(&author)) {
        return error(422, "Review cannot be requested from pull request author.");
    }
    if asked
        .iter()
        .any(|r| !repo.collaborators.contains_key(&r.to_ascii_lowercase()))
    {
        return error(422, &format!("Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the {full} repository."));
    }
    let Some(r) = s.repo_mut(&full) else {
        return error(404, "Not Found");
    };
    let Some(i) = r.issues.get_mut(&n) else {
        return error(404, "Not Found");
    };
    if let Some(pr) = i.pull.as_mut() {
        for a in asked {
            if !pr.reviewers.contains(&a) {
                pr.reviewers.push(a);
            }
        }
    }
    let rec = i.clone();
    let repo = r.clone();
    json_answer(201, &pull_json(s, base, &repo, &rec))
}

/// `POST .../check-runs`: on a commit of the repository; `completed` needs a conclusion.
fn create_check_run(s: &mut FakeState, base: &str, repo: &RepoRec, body: Option<&Value>) -> Answer {
    let text = |k: &str| body.and_then(|b| b[k].as_str()).map(str::to_owned);
    let (Some(name), Some(head_sha)) = (text("name"), text("head_sha")) else {
        return error(422, "Validation Failed");
    };
    let on_a_commit = repo.bare.as_ref().is_some_and(|d| {
        git::git_maybe(d, &["cat-file", "-e", &format!("{head_sha}^{{commit}}")]).is_some()
    });
    if !on_a_commit {
        return error(422, &format!("No commit found for SHA: {head_sha}"));
    }
    let status = text("status").unwrap_or_else(|| "queued".into());
    let conclusion = text("conclusion");
    if status == "completed" && conclusion.is_none() {
        return error(
            422,
            "Validation Failed: conclusion is required when status is completed",
        );
    }
    let id = s.id();
    let run = FakeCheckRun {
        id,
        repo: repo.full_name(),
        head_sha,
        name,
        status: status.clone(),
        conclusion,
        details_url: text("details_url"),
        external_id: text("external_id"),
        output: body.map(|b| b["output"].clone()).unwrap_or(Value::Null),
        statuses: vec![status],
    };
    s.check_runs.insert(id, run.clone());
    json_answer(201, &shapes::check_run(base, &run))
}

/// `PATCH .../check-runs/{id}`.
fn update_check_run(
    s: &mut FakeState,
    base: &str,
    full: &str,
    id: Option<u64>,
    body: Option<&Value>,
) -> Answer {
    let Some(run) = id
        .and_then(|id| s.check_runs.get_mut(&id))
        .filter(|r| r.repo.eq_ignore_ascii_case(full))
    else {
        return error(404, "Not Found");
    };
    let text = |k: &str| body.and_then(|b| b[k].as_str()).map(str::to_owned);
    let status = text("status").unwrap_or_else(|| run.status.clone());
    let conclusion = text("conclusion").or_else(|| run.conclusion.clone());
    if status == "completed" && conclusion.is_none() {
        return error(
            422,
            "Validation Failed: conclusion is required when status is completed",
        );
    }
    if let Some(url) = text("details_url") {
        run.details_url = Some(url);
    }
    if let Some(output) = body.and_then(|b| b.get("output")) {
        run.output = output.clone();
    }
    run.statuses.push(status.clone());
    run.status = status;
    run.conclusion = conclusion;
    let run = run.clone();
    json_answer(200, &shapes::check_run(base, &run))
}

/// `GET .../commits/{ref}/check-runs`: by name, the latest per name unless `filter=all`.
fn list_check_runs(
    s: &FakeState,
    base: &str,
    repo: &RepoRec,
    git_ref: &str,
    query: &str,
) -> Answer {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let sha = repo
        .bare
        .as_ref()
        .and_then(|d| {
            git::git_maybe(
                d,
                &["rev-parse", "--verify", &format!("{git_ref}^{{commit}}")],
            )
        })
        .map(|o| String::from_utf8_lossy(&o).trim().to_string());
    let Some(sha) = sha else {
        return error(422, &format!("No commit found for SHA: {git_ref}"));
    };
    let mut runs: Vec<&FakeCheckRun> = s
        .check_runs
        .values()
        .filter(|r| r.repo.eq_ignore_ascii_case(&repo.full_name()) && r.head_sha == sha)
        .filter(|r| q.get("check_name").is_none_or(|n| &r.name == n))
        .collect();
    if q.get("filter").map(String::as_str) != Some("all") {
        let mut latest: Vec<&FakeCheckRun> = Vec::new();
        for r in runs.iter().rev() {
            if !latest.iter().any(|l| l.name == r.name) {
                latest.push(r);
            }
        }
        runs = latest;
    }
    let items: Vec<Value> = runs.iter().map(|r| shapes::check_run(base, r)).collect();
    json_answer(
        200,
        &json!({"total_count": items.len(), "check_runs": items}),
    )
}

fn pull_json(s: &mut FakeState, base: &str, repo: &RepoRec, i: &IssueRec) -> Value {
    let pr = i.pull.clone().unwrap_or(PullRec {
        head_repo: repo.full_name(),
        head: String::new(),
        base: repo.default_branch.clone(),
        draft: false,
        reviewers: Vec::new(),
    });
    let uid = s.user_id(&i.author);
    let sha = |r: &RepoRec, b: &str| {
        r.bare
            .as_ref()
            .and_then(|d| git::git_maybe(d, &["rev-parse", "--verify", &format!("refs/heads/{b}")]))
            .map(|o| String::from_utf8_lossy(&o).trim().to_string())
            .unwrap_or_else(|| "0".repeat(40))
    };
    let head_repo = s
        .repo(&pr.head_repo)
        .cloned()
        .unwrap_or_else(|| repo.clone());
    let head_sha = sha(&head_repo, &pr.head);
    let base_sha = sha(repo, &pr.base);
    let mut v = shapes::pull(
        base, repo, &head_repo, i, &pr.head, &head_sha, &pr.base, &base_sha, pr.draft, uid,
    );
    let reviewers: Vec<Value> = pr
        .reviewers
        .iter()
        .map(|r| {
            let id = s.user_id(r);
            shapes::user(base, r, id)
        })
        .collect();
    v["requested_reviewers"] = Value::Array(reviewers);
    v
}

async fn serve_git(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    // /owner/name.git/...
    let Some((repo_part, _)) = path.trim_start_matches('/').split_once(".git/") else {
        return plain(404, "Repository not found.");
    };
    let push = git_operation(path, query) == "git push";
    let (repo, user) = {
        let s = lock(&shared.state);
        let Some(repo) = s.repo(repo_part).cloned() else {
            return plain(404, "Repository not found.");
        };
        let token = basic_token(headers);
        let need = if push {
            ("contents", "write")
        } else {
            ("contents", "read")
        };
        let authed = token
            .as_deref()
            .map(|t| check_token(&s, Some(t), &repo, need).is_ok());
        match authed {
            Some(true) => (repo, Some("x-access-token")),
            // Anonymous reads of public repositories are fine; anything else asks for
            // credentials like GitHub does.
            None if !push && !repo.private => (repo, None),
            _ => {
                return Answer {
                    status: 401,
                    headers: vec![("www-authenticate".into(), "Basic realm=\"GitHub\"".into())],
                    body: b"Invalid username or token. Password authentication is not supported for Git operations.\n".to_vec(),
                }
            }
        }
    };
    let Some(bare) = repo.bare.clone() else {
        return plain(404, "Repository not found.");
    };
    let root = shared.repos_dir.path();
    let rel = bare
        .strip_prefix(root)
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let suffix = path.split_once(".git/").map(|(_, s)| s).unwrap_or("");
    let path_info = format!("/{}/{suffix}", rel.display());
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let git_protocol = header("git-protocol");
    let answer = git::http_backend(git::CgiRequest {
        project_root: root,
        path_info: &path_info,
        query,
        method: method.as_str(),
        content_type: content_type.as_deref(),
        content_encoding: content_encoding.as_deref(),
        git_protocol: git_protocol.as_deref(),
        remote_user: user,
        body,
    })
    .await;
    match answer {
        Ok(a) => Answer {
            status: a.status,
            headers: a.headers,
            body: a.body,
        },
        Err(e) => plain(500, &format!("git http-backend failed: {e}")),
    }
}

fn plain(status: u16, text: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: format!("{text}\n").into_bytes(),
    }
}

/// The password of `Basic x-access-token:<token>`.
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, token) = text.split_once(':')?;
    (user == "x-access-token").then(|| token.to_string())
}
