//! Pure: a verified delivery (event name + body) → a typed domain event, or `None` for the events
//! and actions Backspace does not act on. Bad JSON is an error naming the field that failed.

pub mod payload;
pub mod signature;

use serde::de::DeserializeOwned;

pub use payload::{Account, Envelope, Repository};

/// What a delivery is about, for the deliveries table, read from any event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryMeta {
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentAction {
    Created,
    /// The body before the edit, when GitHub sent it.
    Edited {
        previous_body: Option<String>,
    },
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueAction {
    Labeled { label: String },
    Opened,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallationAction {
    Created,
    Deleted,
    Suspend,
    Unsuspend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoriesAction {
    Added,
    Removed,
}

/// A typed webhook event. One per delivery, never collected, so the variants stay unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    Ping {
        zen: Option<String>,
        hook_id: Option<u64>,
        app_id: Option<u64>,
    },
    IssueComment {
        action: CommentAction,
        installation_id: Option<u64>,
        repository: Repository,
        issue: payload::Issue,
        comment: payload::Comment,
        sender: Account,
    },
    Issues {
        action: IssueAction,
        installation_id: Option<u64>,
        repository: Repository,
        issue: payload::Issue,
        sender: Account,
    },
    PullRequestClosed {
        installation_id: Option<u64>,
        repository: Repository,
        pull_request: payload::PullRequest,
        sender: Account,
    },
    ReviewCommentCreated {
        installation_id: Option<u64>,
        repository: Repository,
        pull_request: payload::PullRequest,
        comment: payload::ReviewComment,
        sender: Account,
    },
    /// A pull request review was submitted (its body may hold a command).
    ReviewSubmitted {
        installation_id: Option<u64>,
        repository: Repository,
        pull_request: payload::PullRequest,
        review: payload::Review,
        sender: Account,
    },
    Installation {
        action: InstallationAction,
        installation: payload::Installation,
        repositories: Vec<String>,
        sender: Account,
    },
    InstallationRepositories {
        action: RepositoriesAction,
        installation: payload::Installation,
        added: Vec<String>,
        removed: Vec<String>,
        sender: Account,
    },
}

/// A body that is not the JSON its event promises. `path` names the field that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {event} payload at `{path}`: {message}")]
pub struct PayloadError {
    pub event: String,
    pub path: String,
    pub message: String,
}

fn decode<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        PayloadError {
            event: event.to_owned(),
            path: if path.is_empty() { ".".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })?;
    de.end().map_err(|e| PayloadError {
        event: event.to_owned(),
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// The action, installation and repository of any delivery (also of events not acted on).
pub fn envelope(event: &str, body: &[u8]) -> Result<DeliveryMeta, PayloadError> {
    let e: Envelope = decode(event, body)?;
    Ok(DeliveryMeta {
        action: e.action,
        installation_id: e.installation.map(|i| i.id),
        repository: e.repository.map(|r| r.full_name),
    })
}

/// Parses a delivery: its envelope and its domain event (`None`: an event or action Backspace
/// ignores). The common case takes one pass over the body: the typed payload carries the
/// envelope's fields too. Only when that fails is the body read again, for the envelope and for
/// an error that names the field.
pub fn parse_delivery(
    event: &str,
    body: &[u8],
) -> Result<(DeliveryMeta, Option<WebhookEvent>), PayloadError> {
    let one_pass = match event {
        // Pings are rare: the careful path reads their repository too.
        "issue_comment" => fast(body).map(|p: payload::IssueCommentPayload| {
            (
                meta(&p.action, &p.installation, Some(&p.repository)),
                issue_comment(p),
            )
        }),
        "issues" => fast(body).map(|p: payload::IssuesPayload| {
            (
                meta(&p.action, &p.installation, Some(&p.repository)),
                issues(p),
            )
        }),
        "pull_request" => fast(body).map(|p: payload::PullRequestPayload| {
            (
                meta(&p.action, &p.installation, Some(&p.repository)),
                pull_request(p),
            )
        }),
        "pull_request_review_comment" => fast(body).map(|p: payload::ReviewCommentPayload| {
            (
                meta(&p.action, &p.installation, Some(&p.repository)),
                review_comment(p),
            )
        }),
        "pull_request_review" => fast(body).map(|p: payload::ReviewPayload| {
            (
                meta(&p.action, &p.installation, Some(&p.repository)),
                review(p),
            )
        }),
        "installation" => fast(body).map(|p: payload::InstallationPayload| {
            let m = DeliveryMeta {
                action: Some(p.action.clone()),
                installation_id: Some(p.installation.id),
                repository: None,
            };
            (m, installation(p))
        }),
        "installation_repositories" => {
            fast(body).map(|p: payload::InstallationRepositoriesPayload| {
                let m = DeliveryMeta {
                    action: Some(p.action.clone()),
                    installation_id: Some(p.installation.id),
                    repository: None,
                };
                (m, installation_repositories(p))
            })
        }
        _ => None,
    };
    // A labeled event without its label is no event; let the careful path say so.
    if let Some(ok) = one_pass.filter(|(_, ev)| ev.is_some() || event != "issues") {
        return Ok(ok);
    }
    let meta = envelope(event, body)?;
    let ev = parse(event, meta.action.as_deref(), body)?;
    Ok((meta, ev))
}

/// Parses a delivery whose action is known. `Ok(None)`: an event or action Backspace ignores.
pub fn parse(
    event: &str,
    action: Option<&str>,
    body: &[u8],
) -> Result<Option<WebhookEvent>, PayloadError> {
    let parsed = match (event, action) {
        ("ping", _) => Some(ping(decode(event, body)?)),
        ("issue_comment", Some("created" | "edited" | "deleted")) => {
            issue_comment(decode(event, body)?)
        }
        ("issues", Some("labeled" | "opened" | "closed")) => {
            let p: payload::IssuesPayload = decode(event, body)?;
            if p.action == "labeled" && p.label.is_none() {
                return Err(PayloadError {
                    event: event.to_owned(),
                    path: "label".into(),
                    message: "missing field `label` on a labeled event".into(),
                });
            }
            issues(p)
        }
        ("pull_request", Some("closed")) => pull_request(decode(event, body)?),
        ("pull_request_review_comment", Some("created")) => review_comment(decode(event, body)?),
        ("pull_request_review", Some("submitted")) => review(decode(event, body)?),
        ("installation", Some("created" | "deleted" | "suspend" | "unsuspend")) => {
            installation(decode(event, body)?)
        }
        ("installation_repositories", Some("added" | "removed")) => {
            installation_repositories(decode(event, body)?)
        }
        _ => None,
    };
    Ok(parsed)
}

/// Plain serde: fast, but its errors do not name the field.
fn fast<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn meta(
    action: &str,
    installation: &Option<payload::InstallationRef>,
    repository: Option<&Repository>,
) -> DeliveryMeta {
    DeliveryMeta {
        action: Some(action.to_owned()),
        installation_id: installation.as_ref().map(|i| i.id),
        repository: repository.map(|r| r.full_name.clone()),
    }
}

fn ping(p: payload::PingPayload) -> WebhookEvent {
    WebhookEvent::Ping {
        zen: p.zen,
        hook_id: p.hook_id,
        app_id: p.hook.and_then(|h| h.app_id),
    }
}

fn issue_comment(p: payload::IssueCommentPayload) -> Option<WebhookEvent> {
    let action = match p.action.as_str() {
        "created" => CommentAction::Created,
        "edited" => CommentAction::Edited {
            previous_body: p.changes.and_then(|c| c.body).map(|b| b.from),
        },
        "deleted" => CommentAction::Deleted,
        _ => return None,
    };
    Some(WebhookEvent::IssueComment {
        action,
        installation_id: p.installation.map(|i| i.id),
        repository: p.repository,
        issue: p.issue,
        comment: p.comment,
        sender: p.sender,
    })
}

fn issues(p: payload::IssuesPayload) -> Option<WebhookEvent> {
    let action = match p.action.as_str() {
        "labeled" => IssueAction::Labeled {
            label: p.label?.name,
        },
        "opened" => IssueAction::Opened,
        "closed" => IssueAction::Closed,
        _ => return None,
    };
    Some(WebhookEvent::Issues {
        action,
        installation_id: p.installation.map(|i| i.id),
        repository: p.repository,
        issue: p.issue,
        sender: p.sender,
    })
}

fn pull_request(p: payload::PullRequestPayload) -> Option<WebhookEvent> {
    (p.action == "closed").then(|| WebhookEvent::PullRequestClosed {
        installation_id: p.installation.map(|i| i.id),
        repository: p.repository,
        pull_request: p.pull_request,
        sender: p.sender,
    })
}

fn review_comment(p: payload::ReviewCommentPayload) -> Option<WebhookEvent> {
    (p.action == "created").then(|| WebhookEvent::ReviewCommentCreated {
        installation_id: p.installation.map(|i| i.id),
        repository: p.repository,
        pull_request: p.pull_request,
        comment: p.comment,
        sender: p.sender,
    })
}

fn review(p: payload::ReviewPayload) -> Option<WebhookEvent> {
    (p.action == "submitted").then(|| WebhookEvent::ReviewSubmitted {
        installation_id: p.installation.map(|i| i.id),
        repository: p.repository,
        pull_request: p.pull_request,
        review: p.review,
        sender: p.sender,
    })
}

fn installation(p: payload::InstallationPayload) -> Option<WebhookEvent> {
    let action = match p.action.as_str() {
        "created" => InstallationAction::Created,
        "deleted" => InstallationAction::Deleted,
        "suspend" => InstallationAction::Suspend,
        "unsuspend" => InstallationAction::Unsuspend,
        _ => return None,
    };
    Some(WebhookEvent::Installation {
        action,
        installation: p.installation,
        repositories: p
            .repositories
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.full_name)
            .collect(),
        sender: p.sender,
    })
}

fn installation_repositories(p: payload::InstallationRepositoriesPayload) -> Option<WebhookEvent> {
    let action = match p.action.as_str() {
        "added" => RepositoriesAction::Added,
        "removed" => RepositoriesAction::Removed,
        _ => return None,
    };
    Some(WebhookEvent::InstallationRepositories {
        action,
        installation: p.installation,
        added: p
            .repositories_added
            .into_iter()
            .map(|r| r.full_name)
            .collect(),
        removed: p
            .repositories_removed
            .into_iter()
            .map(|r| r.full_name)
            .collect(),
        sender: p.sender,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_fixture;

    fn fixture_event(event: &str, file: &str) -> WebhookEvent {
        let body = shared_fixture(&format!("webhooks/{event}/{file}"));
        let meta = envelope(event, &body).unwrap();
        parse(event, meta.action.as_deref(), &body)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .unwrap_or_else(|| panic!("{file}: ignored"))
    }

    #[test]
    fn every_fixture_parses_into_its_domain_event() {
        match fixture_event("issue_comment", "created.json") {
            WebhookEvent::IssueComment {
                action: CommentAction::Created,
                repository,
                issue,
                comment,
                sender,
                installation_id,
            } => {
                assert_eq!(repository.full_name, "Codertocat/Hello-World");
                assert_eq!(issue.number, 1);
                assert_eq!(comment.id, 492700400);
                assert_eq!(sender.login, "Codertocat");
                assert!(!sender.is_bot());
                assert_eq!(installation_id, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fixture_event("issue_comment", "created.with-installation.json"),
            WebhookEvent::IssueComment {
                installation_id: Some(_),
                ..
            }
        ));
        match fixture_event("issue_comment", "edited.json") {
            WebhookEvent::IssueComment {
                action: CommentAction::Edited { previous_body },
                ..
            } => {
                assert_eq!(
                    previous_body.as_deref(),
                    Some("You are totally right! I'll get this fixed right away.")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fixture_event("issue_comment", "deleted.json"),
            WebhookEvent::IssueComment {
                action: CommentAction::Deleted,
                ..
            }
        ));
        match fixture_event("issues", "labeled.json") {
            WebhookEvent::Issues {
                action: IssueAction::Labeled { label },
                ..
            } => assert_eq!(label, "bug"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fixture_event("issues", "opened.json"),
            WebhookEvent::Issues {
                action: IssueAction::Opened,
                ..
            }
        ));
        match fixture_event("pull_request_review_comment", "created.json") {
            WebhookEvent::ReviewCommentCreated {
                comment,
                pull_request,
                ..
            } => {
                assert_eq!(comment.path, "README.md");
                assert_eq!(pull_request.number, 2);
            }
            other => panic!("{other:?}"),
        }
        match fixture_event("installation", "created.json") {
            WebhookEvent::Installation {
                action: InstallationAction::Created,
                repositories,
                ..
            } => {
                assert!(!repositories.is_empty())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fixture_event("installation", "deleted.json"),
            WebhookEvent::Installation {
                action: InstallationAction::Deleted,
                ..
            }
        ));
        match fixture_event("installation_repositories", "added.json") {
            WebhookEvent::InstallationRepositories {
                action: RepositoriesAction::Added,
                added,
                ..
            } => assert!(!added.is_empty()),
            other => panic!("{other:?}"),
        }
        match fixture_event("installation_repositories", "removed.json") {
            WebhookEvent::InstallationRepositories {
                action: RepositoriesAction::Removed,
                removed,
                ..
            } => assert!(!removed.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fixture_event("ping", "ping.json"),
            WebhookEvent::Ping { app_id: None, .. }
        ));
        assert!(matches!(
            fixture_event("ping", "with-app_id.json"),
            WebhookEvent::Ping {
                app_id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn the_one_pass_parse_agrees_with_the_careful_one_on_every_fixture() {
        for (event, file) in [
            ("ping", "ping/ping.json"),
            ("ping", "ping/with-app_id.json"),
            ("issue_comment", "issue_comment/created.json"),
            (
                "issue_comment",
                "issue_comment/created.with-installation.json",
            ),
            ("issue_comment", "issue_comment/edited.json"),
            ("issue_comment", "issue_comment/deleted.json"),
            ("issues", "issues/labeled.json"),
            ("issues", "issues/opened.json"),
            ("installation", "installation/created.json"),
            ("installation", "installation/deleted.json"),
            (
                "installation_repositories",
                "installation_repositories/added.json",
            ),
            (
                "installation_repositories",
                "installation_repositories/removed.json",
            ),
            ("pull_request", "pull_request/opened.json"),
            (
                "pull_request_review_comment",
                "pull_request_review_comment/created.json",
            ),
        ] {
            let body = shared_fixture(&format!("webhooks/{file}"));
            let careful = envelope(event, &body).unwrap();
            let careful_event = parse(event, careful.action.as_deref(), &body).unwrap();
            let (meta, ev) = parse_delivery(event, &body).unwrap();
            assert_eq!(ev, careful_event, "{file}");
            assert_eq!(meta.action, careful.action, "{file}");
            assert_eq!(meta.repository, careful.repository, "{file}");
            assert_eq!(meta.installation_id, careful.installation_id, "{file}");
        }
        // A bad payload still gets the careful error.
        let err = parse_delivery(
            "issue_comment",
            br#"{"action":"created","issue":{"number":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "issue.number");
    }

    #[test]
    fn other_events_and_actions_are_ignored() {
        let body = shared_fixture("webhooks/pull_request/opened.json");
        assert_eq!(parse("pull_request", Some("opened"), &body), Ok(None));
        assert_eq!(parse("push", None, b"{}"), Ok(None));
        assert_eq!(parse("issue_comment", Some("pinned"), b"{}"), Ok(None));
    }

    #[test]
    fn a_payload_missing_a_field_names_it() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&shared_fixture("webhooks/issue_comment/created.json")).unwrap();
        v["comment"].as_object_mut().unwrap().remove("id");
        let body = serde_json::to_vec(&v).unwrap();
        let err = parse("issue_comment", Some("created"), &body).unwrap_err();
        assert_eq!(err.path, "comment");
        assert!(err.message.contains("id"), "{err}");
        v["comment"]["id"] = serde_json::json!("not a number");
        let err = parse(
            "issue_comment",
            Some("created"),
            &serde_json::to_vec(&v).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.path, "comment.id");
        let err = envelope("issue_comment", b"{not json").unwrap_err();
        assert!(err.message.contains("key must be a string"), "{err}");
    }
}
