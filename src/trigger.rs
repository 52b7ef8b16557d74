//! Pure: which webhook event becomes which job, and which are dropped, and who may start one.
//!
//! - `/backspace <prompt>` on an issue → a run; on a pull request → an iteration;
//! - a label added to an issue → a run with the title and body, which the worker ends quietly
//!   unless the label is the repository's trigger label ([`is_trigger_label`]: `label:` in its
//!   `.github/backspace.yml`, `backspace` by default; ingress cannot read those settings);
//! - a review submitted with `/backspace <prompt>` in its body → an iteration, with the
//!   review's comments as context;
//! - `/backspace cancel`, `/backspace help`, and user errors (answered with the usage);
//! - an issue or pull request closed → its jobs are cancelled;
//! - dropped: bots, the app's own comments, bodies over 65,536 characters, deleted comments,
//!   and every other action.
//!
//! The write-permission check needs GitHub, so the worker makes it (`github::RepoClient::
//! may_start_run`, failing closed) for the jobs [`needs_permission`] names.

use crate::command::{self, Command, CommandError};
use crate::job::{AgentSpec, JobKind, JobRequest, JobSource, JobSpec, ReviewCommentRef, ReviewRef};
use crate::webhook::{payload, Account, CommentAction, IssueAction, Repository, WebhookEvent};

/// Comment and issue bodies longer than this (in characters) are not read for commands.
pub const MAX_BODY_CHARS: usize = 65_536;

/// What the rules need besides the event.
#[derive(Debug, Clone)]
pub struct TriggerContext {
    /// The command word: comments start with `/<word>`.
    pub command_word: String,
    /// The app's own login, `<slug>[bot]`, once known.
    pub bot_login: Option<String>,
}

impl Default for TriggerContext {
    fn default() -> Self {
        TriggerContext {
            command_word: "backspace".into(),
            bot_login: None,
        }
    }
}

/// Whether `added` starts a run in a repository whose settings name `configured` (`label:`),
/// or the default label when they name none. Labels compare without case, as GitHub's do.
pub fn is_trigger_label(added: &str, configured: Option<&str>) -> bool {
    let trigger = configured.unwrap_or(crate::repo_settings::DEFAULT_LABEL);
    added.trim().eq_ignore_ascii_case(trigger.trim())
}

/// Why an event starts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Bot,
    OwnComment,
    BodyTooLong,
    NoCommand,
    NotActedOn,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Bot => "sender is a bot",
            Ignored::OwnComment => "the app's own comment",
            Ignored::BodyTooLong => "body over 65,536 characters",
            Ignored::NoCommand => "no command",
            Ignored::NotActedOn => "not acted on",
        }
    }
}

// One decision per delivery, never collected: boxing the job would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Job(JobRequest),
    /// A command from someone who plainly lacks write access (their `author_association` is
    /// none of OWNER, MEMBER, COLLABORATOR): no job, no permission call; one reply per
    /// requester and issue.
    Deny(Denial),
    Ignore(Ignored),
}

/// A command refused at the door, for the one reply its requester gets on that issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub installation_id: Option<u64>,
    pub repository: String,
    pub number: u64,
    pub requester: String,
}

/// Whether an author association says plainly that its author cannot write: anyone with write
/// access is the owner, a member of the owning organisation or a collaborator. Unknown (absent)
/// is not plain: the permission API decides.
pub fn plainly_without_write(association: Option<&str>) -> bool {
    association.is_some_and(|a| !matches!(a, "OWNER" | "MEMBER" | "COLLABORATOR"))
}

/// The job, or its denial when the author plainly cannot start it (a close needs no write
/// access and is never denied here).
fn job_or_denial(job: JobRequest, association: Option<&str>) -> Decision {
    match job.number {
        Some(number)
            if needs_permission(job.kind(), job.source) && plainly_without_write(association) =>
        {
            Decision::Deny(Denial {
                installation_id: job.installation_id,
                repository: job.repository,
                number,
                requester: job.requester,
            })
        }
        _ => Decision::Job(job),
    }
}

/// The rules. Installation and ping events start no job (they are recorded by ingress).
pub fn decide(event: &WebhookEvent, ctx: &TriggerContext) -> Decision {
    match event {
        WebhookEvent::IssueComment {
            action,
            installation_id,
            repository,
            issue,
            comment,
            sender,
        } => {
            if let Some(why) = dropped_sender(sender, ctx) {
                return Decision::Ignore(why);
            }
            let body = comment.body.as_deref().unwrap_or_default();
            if too_long(body) {
                return Decision::Ignore(Ignored::BodyTooLong);
            }
            let commands = match action {
                CommentAction::Created => command::parse_commands(body, &ctx.command_word),
                CommentAction::Edited { previous_body } => command::new_commands(
                    previous_body.as_deref().unwrap_or_default(),
                    body,
                    &ctx.command_word,
                ),
                CommentAction::Deleted => return Decision::Ignore(Ignored::NotActedOn),
            };
            let Some(first) = commands.into_iter().next() else {
                return Decision::Ignore(Ignored::NoCommand);
            };
            let target = Target::issue(*installation_id, repository, issue, sender);
            let spec = issue_spec(issue, sender);
            let job = target.job(first, JobSource::Comment, Some(comment.id), spec);
            job_or_denial(job, comment.author_association.as_deref())
        }
        WebhookEvent::Issues {
            action,
            installation_id,
            repository,
            issue,
            sender,
        } => match action {
            IssueAction::Labeled { label } => {
                if let Some(why) = dropped_sender(sender, ctx) {
                    return Decision::Ignore(why);
                }
                let body = issue.body.as_deref().unwrap_or_default();
                if too_long(body) {
                    return Decision::Ignore(Ignored::BodyTooLong);
                }
                let prompt = if body.trim().is_empty() {
                    issue.title.clone()
                } else {
                    format!("{}\n\n{}", issue.title, body.trim())
                };
                let target = Target::issue(*installation_id, repository, issue, sender);
                let spec = AgentSpec {
                    label: Some(label.clone()),
                    ..issue_spec(issue, sender)
                };
                Decision::Job(target.job(Ok(Command::Run { prompt }), JobSource::Label, None, spec))
            }
            IssueAction::Closed => {
                let target = Target::issue(*installation_id, repository, issue, sender);
                let spec = AgentSpec::default();
                Decision::Job(target.job(Ok(Command::Cancel), JobSource::Closed, None, spec))
            }
            IssueAction::Opened => Decision::Ignore(Ignored::NotActedOn),
        },
        WebhookEvent::PullRequestClosed {
            installation_id,
            repository,
            pull_request,
            sender,
        } => {
            let target = Target::pull(*installation_id, repository, pull_request, sender);
            let spec = AgentSpec::default();
            Decision::Job(target.job(Ok(Command::Cancel), JobSource::Closed, None, spec))
        }
        WebhookEvent::ReviewCommentCreated {
            installation_id,
            repository,
            pull_request,
            comment,
            sender,
        } => {
            let body = comment.body.as_deref().unwrap_or_default();
            let first = match first_command(sender, body, ctx) {
                Ok(c) => c,
                Err(why) => return Decision::Ignore(why),
            };
            let target = Target::pull(*installation_id, repository, pull_request, sender);
            let spec = AgentSpec {
                title: pull_request.title.clone(),
                issue_url: None,
                requester_id: Some(sender.id),
                review_comment: Some(ReviewCommentRef {
                    id: comment.id,
                    path: Some(comment.path.clone()),
                    line: comment.line.or(comment.original_line),
                    diff_hunk: comment.diff_hunk.clone(),
                    in_reply_to_id: comment.in_reply_to_id,
                    commit_id: comment.commit_id.clone(),
                }),
                ..AgentSpec::default()
            };
            let job = target.job(first, JobSource::ReviewComment, Some(comment.id), spec);
            job_or_denial(job, comment.author_association.as_deref())
        }
        WebhookEvent::ReviewSubmitted {
            installation_id,
            repository,
            pull_request,
            review,
            sender,
        } => {
            let body = review.body.as_deref().unwrap_or_default();
            let first = match first_command(sender, body, ctx) {
                Ok(c) => c,
                Err(why) => return Decision::Ignore(why),
            };
            let target = Target::pull(*installation_id, repository, pull_request, sender);
            let spec = AgentSpec {
                title: pull_request.title.clone(),
                requester_id: Some(sender.id),
                review: Some(ReviewRef {
                    id: review.id,
                    commit_id: review.commit_id.clone(),
                }),
                ..AgentSpec::default()
            };
            // A review has no reactions API: the progress comment is the first answer.
            let job = target.job(first, JobSource::Review, None, spec);
            job_or_denial(job, review.author_association.as_deref())
        }
        WebhookEvent::Ping { .. }
        | WebhookEvent::Installation { .. }
        | WebhookEvent::InstallationRepositories { .. } => Decision::Ignore(Ignored::NotActedOn),
    }
}

/// The first command of a new body on a pull request's diff or review, unless its sender or its
/// length rules it out.
fn first_command(
    sender: &Account,
    body: &str,
    ctx: &TriggerContext,
) -> Result<command::Parsed, Ignored> {
    if let Some(why) = dropped_sender(sender, ctx) {
        return Err(why);
    }
    if too_long(body) {
        return Err(Ignored::BodyTooLong);
    }
    command::parse_commands(body, &ctx.command_word)
        .into_iter()
        .next()
        .ok_or(Ignored::NoCommand)
}

/// What a job on an issue (or a pull request's conversation) knows of it.
fn issue_spec(issue: &payload::Issue, sender: &Account) -> AgentSpec {
    AgentSpec {
        title: Some(issue.title.clone()),
        issue_url: issue.html_url.clone(),
        requester_id: Some(sender.id),
        ..AgentSpec::default()
    }
}

fn dropped_sender(sender: &Account, ctx: &TriggerContext) -> Option<Ignored> {
    if ctx
        .bot_login
        .as_deref()
        .is_some_and(|own| own.eq_ignore_ascii_case(&sender.login))
    {
        return Some(Ignored::OwnComment);
    }
    if sender.is_bot() {
        return Some(Ignored::Bot);
    }
    None
}

fn too_long(body: &str) -> bool {
    // Byte length bounds char count from above: only count chars when it could matter.
    body.len() > MAX_BODY_CHARS && body.chars().count() > MAX_BODY_CHARS
}

/// The issue or pull request a job is about.
struct Target<'a> {
    installation_id: Option<u64>,
    repository: &'a Repository,
    number: u64,
    is_pull_request: bool,
    requester: &'a str,
}

impl<'a> Target<'a> {
    fn issue(
        installation_id: Option<u64>,
        repository: &'a Repository,
        issue: &payload::Issue,
        sender: &'a Account,
    ) -> Self {
        Target {
            installation_id,
            repository,
            number: issue.number,
            is_pull_request: issue.pull_request.is_some(),
            requester: &sender.login,
        }
    }

    fn pull(
        installation_id: Option<u64>,
        repository: &'a Repository,
        pr: &payload::PullRequest,
        sender: &'a Account,
    ) -> Self {
        Target {
            installation_id,
            repository,
            number: pr.number,
            is_pull_request: true,
            requester: &sender.login,
        }
    }

    fn job(
        &self,
        command: Result<Command, CommandError>,
        source: JobSource,
        comment_id: Option<u64>,
        agent: AgentSpec,
    ) -> JobRequest {
        let (spec, prompt) = match command {
            Ok(Command::Run { prompt }) if self.is_pull_request => {
                (JobSpec::Iterate(agent), prompt)
            }
            Ok(Command::Run { prompt }) => (JobSpec::Run(agent), prompt),
            Ok(Command::Cancel) => (JobSpec::Cancel, String::new()),
            Ok(Command::Help) => (JobSpec::Help, String::new()),
            Err(e) => {
                let problem = e.to_string();
                (JobSpec::UsageError { problem }, String::new())
            }
        };
        JobRequest {
            spec,
            source,
            installation_id: self.installation_id,
            repository: self.repository.full_name.clone(),
            clone_url: self.repository.clone_url.clone(),
            default_branch: self.repository.default_branch.clone(),
            number: Some(self.number),
            is_pull_request: self.is_pull_request,
            comment_id,
            requester: self.requester.to_owned(),
            prompt,
        }
    }
}

/// What makes an event's request the same request again, whatever delivery brings it: a
/// comment (or review) by its id and its body's digest, a label event by its issue, label and
/// time. `None` for events whose repetition does no harm (closes) or that start nothing.
pub fn replay_key(event: &WebhookEvent) -> Option<String> {
    match event {
        WebhookEvent::IssueComment {
            repository,
            comment,
            ..
        } => Some(format!(
            "comment:{}:{}:{}",
            repository.id,
            comment.id,
            digest(comment.body.as_deref().unwrap_or_default())
        )),
        WebhookEvent::ReviewCommentCreated {
            repository,
            comment,
            ..
        } => Some(format!(
            "review-comment:{}:{}:{}",
            repository.id,
            comment.id,
            digest(comment.body.as_deref().unwrap_or_default())
        )),
        WebhookEvent::ReviewSubmitted {
            repository, review, ..
        } => Some(format!(
            "review:{}:{}:{}",
            repository.id,
            review.id,
            digest(review.body.as_deref().unwrap_or_default())
        )),
        WebhookEvent::Issues {
            action: IssueAction::Labeled { label },
            repository,
            issue,
            ..
        } => issue.updated_at.as_ref().map(|at| {
            format!(
                "label:{}:{}:{}:{at}",
                repository.id,
                issue.number,
                digest(&label.to_lowercase())
            )
        }),
        _ => None,
    }
}

/// The key of a delivery's body: the same signed body under another delivery id is a replay.
pub fn body_replay_key(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!("body:{}", hex::encode(sha2::Sha256::digest(body)))
}

fn digest(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
}

/// Whether a job needs the requester's write permission before it goes ahead. A close needs
/// no check: only someone with triage or more can close, and cancelling does no harm. Jobs from
/// the HTTP API and the CLI are authorised by their key or by running locally.
pub fn needs_permission(kind: JobKind, source: JobSource) -> bool {
    !matches!(
        (kind, source),
        (JobKind::Cancel, JobSource::Closed) | (_, JobSource::Api) | (_, JobSource::Cli)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_fixture;
    use crate::webhook::{envelope, parse};
    use serde_json::json;

    fn event(path: &str, edit: impl FnOnce(&mut serde_json::Value)) -> WebhookEvent {
        let mut v: serde_json::Value =
            serde_json::from_slice(&shared_fixture(&format!("webhooks/{path}"))).unwrap();
        edit(&mut v);
        let body = serde_json::to_vec(&v).unwrap();
        let name = path.split('/').next().unwrap();
        let meta = envelope(name, &body).unwrap();
        parse(name, meta.action.as_deref(), &body).unwrap().unwrap()
    }

    /// The JSON of a review event built on the review comment fixture (the shared fixtures have
    /// no `pull_request_review` example): its pull request, repository and sender, a review.
    fn review_payload() -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&shared_fixture(
            "webhooks/pull_request_review_comment/created.json",
        ))
        .unwrap();
        let user = v["comment"]["user"].clone();
        v["action"] = json!("submitted");
        v["review"] = json!({
            "id": 80, "node_id": "PRR_1", "user": user,
            "body": "Nice start.\n\n/backspace address these comments",
            "state": "commented", "commit_id": "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091",
            "html_url": "https://github.com/Codertocat/Hello-World/pull/2#pullrequestreview-80",
        });
        v.as_object_mut().map(|o| o.remove("comment"));
        v
    }

    fn comment(body: &str) -> impl FnOnce(&mut serde_json::Value) + '_ {
        move |v| v["comment"]["body"] = json!(body)
    }

    fn job(d: Decision) -> JobRequest {
        match d {
            Decision::Job(j) => j,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    fn ctx() -> TriggerContext {
        TriggerContext {
            bot_login: Some("backspace-app[bot]".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_command_on_an_issue_is_a_run_with_the_requester_and_comment() {
        let j = job(decide(
            &event(
                "issue_comment/created.with-installation.json",
                comment("/backspace add input validation"),
            ),
            &ctx(),
        ));
        assert_eq!(j.kind(), JobKind::Run);
        assert_eq!(j.source, JobSource::Comment);
        assert_eq!(j.prompt, "add input validation");
        assert_eq!(j.repository, "Codertocat/Hello-World");
        assert_eq!(j.number, Some(1));
        assert!(!j.is_pull_request);
        assert_eq!(j.requester, "Codertocat");
        assert!(j.installation_id.is_some());
        assert_eq!(j.comment_id, Some(492700400));
        assert_eq!(
            j.clone_url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World.git")
        );
    }

    #[test]
    fn trigger_rules_table() {
        let on_pr = |body: &'static str| {
            move |v: &mut serde_json::Value| {
                v["comment"]["body"] = json!(body);
                v["issue"]["pull_request"] =
                    json!({"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"});
            }
        };
        let bot = |v: &mut serde_json::Value| {
            v["comment"]["body"] = json!("/backspace fix");
            v["sender"]["type"] = json!("Bot");
            v["sender"]["login"] = json!("dependabot[bot]");
        };
        let own = |v: &mut serde_json::Value| {
            v["comment"]["body"] = json!("/backspace fix");
            v["sender"]["login"] = json!("backspace-app[bot]");
        };
        let long = "/backspace fix\n".to_string() + &"x".repeat(MAX_BODY_CHARS);
        let edited_new = |v: &mut serde_json::Value| {
            v["comment"]["body"] = json!("/backspace fix it");
            v["changes"]["body"]["from"] = json!("looking at it");
        };
        let edited_same = |v: &mut serde_json::Value| {
            v["comment"]["body"] = json!("/backspace fix it\n\n(typo fixed)");
            v["changes"]["body"]["from"] = json!("/backspace fix it");
        };
        let c = ctx();
        let kind = |e: WebhookEvent| match decide(&e, &c) {
            Decision::Job(j) => Ok(j.kind()),
            Decision::Ignore(why) => Err(why),
            Decision::Deny(d) => panic!("denied {d:?}"),
        };
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                on_pr("/backspace more tests")
            )),
            Ok(JobKind::Iterate)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("/backspace cancel")
            )),
            Ok(JobKind::Cancel)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("/backspace help")
            )),
            Ok(JobKind::Help)
        );
        assert_eq!(
            kind(event("issue_comment/created.json", comment("/backspace"))),
            Ok(JobKind::UsageError)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("/backspace cancle")
            )),
            Ok(JobKind::UsageError)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("```\n/backspace fix\n```")
            )),
            Err(Ignored::NoCommand)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("> /backspace fix")
            )),
            Err(Ignored::NoCommand)
        );
        assert_eq!(
            kind(event(
                "issue_comment/created.json",
                comment("can we /backspace fix")
            )),
            Err(Ignored::NoCommand)
        );
        assert_eq!(
            kind(event("issue_comment/created.json", bot)),
            Err(Ignored::Bot)
        );
        assert_eq!(
            kind(event("issue_comment/created.json", own)),
            Err(Ignored::OwnComment)
        );
        assert_eq!(
            kind(event("issue_comment/created.json", comment(&long))),
            Err(Ignored::BodyTooLong)
        );
        assert_eq!(
            kind(event("issue_comment/edited.json", edited_new)),
            Ok(JobKind::Run)
        );
        assert_eq!(
            kind(event("issue_comment/edited.json", edited_same)),
            Err(Ignored::NoCommand)
        );
        assert_eq!(
            kind(event(
                "issue_comment/deleted.json",
                comment("/backspace fix")
            )),
            Err(Ignored::NotActedOn)
        );
        assert_eq!(
            kind(event("issues/opened.json", |_| {})),
            Err(Ignored::NotActedOn)
        );
        // Any label queues a run; the worker checks it against the repository's settings.
        assert_eq!(kind(event("issues/labeled.json", |_| {})), Ok(JobKind::Run));
        assert_eq!(
            kind(event("issues/labeled.json", |v| v["action"] = json!("closed"))),
            Ok(JobKind::Cancel)
        );
        assert_eq!(
            kind(event("installation/created.json", |_| {})),
            Err(Ignored::NotActedOn)
        );
        assert_eq!(
            kind(event("ping/ping.json", |_| {})),
            Err(Ignored::NotActedOn)
        );
    }

    #[test]
    fn commands_from_people_plainly_without_write_access_are_denied_at_the_door() {
        let c = ctx();
        for association in ["NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "MANNEQUIN"] {
            for body in ["/backspace fix it", "/backspace cancel", "/backspace help"] {
                let e = event("issue_comment/created.json", |v| {
                    v["comment"]["body"] = json!(body);
                    v["comment"]["author_association"] = json!(association);
                });
                match decide(&e, &c) {
                    Decision::Deny(d) => {
                        assert_eq!((d.number, d.requester.as_str()), (1, "Codertocat"));
                        assert_eq!(d.repository, "Codertocat/Hello-World");
                    }
                    other => panic!("{association} {body}: {other:?}"),
                }
            }
        }
        // Owners, members and collaborators (a collaborator may still only read) go to the
        // permission API, and so does a comment that does not say.
        for association in [Some("OWNER"), Some("MEMBER"), Some("COLLABORATOR"), None] {
            let e = event("issue_comment/created.json", |v| {
                v["comment"]["body"] = json!("/backspace fix it");
                match association {
                    Some(a) => v["comment"]["author_association"] = json!(a),
                    None => {
                        v["comment"]
                            .as_object_mut()
                            .unwrap()
                            .remove("author_association");
                    }
                }
            });
            assert!(
                matches!(decide(&e, &c), Decision::Job(_)),
                "{association:?}"
            );
        }
    }

    #[test]
    fn a_comment_replays_by_its_id_and_body_and_a_label_by_its_time() {
        let comment_key = |body: &str, sender: &str| {
            replay_key(&event("issue_comment/created.json", |v| {
                v["comment"]["body"] = json!(body);
                v["sender"]["login"] = json!(sender);
            }))
        };
        assert_eq!(
            comment_key("/backspace x", "a"),
            comment_key("/backspace x", "b")
        );
        assert_ne!(
            comment_key("/backspace x", "a"),
            comment_key("/backspace y", "a")
        );
        let label_key = |label: &str, at: &str| {
            replay_key(&event("issues/labeled.json", |v| {
                v["label"]["name"] = json!(label);
                v["issue"]["updated_at"] = json!(at);
            }))
        };
        let t1 = "2026-01-01T00:00:00Z";
        assert!(label_key("backspace", t1).is_some());
        assert_eq!(label_key("backspace", t1), label_key("Backspace", t1));
        assert_ne!(
            label_key("backspace", t1),
            label_key("backspace", "2026-01-02T00:00:00Z")
        );
        assert_ne!(label_key("backspace", t1), label_key("bug", t1));
        assert_ne!(body_replay_key(b"{}"), body_replay_key(b"{} "));
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_read() {
        let body = format!("/backspace fix\n\n{}", "é".repeat(MAX_BODY_CHARS - 16));
        assert_eq!(body.chars().count(), MAX_BODY_CHARS);
        assert!(matches!(
            decide(&event("issue_comment/created.json", comment(&body)), &ctx()),
            Decision::Job(_)
        ));
    }

    #[test]
    fn the_label_runs_with_the_title_and_body_as_prompt() {
        let e = event("issues/labeled.json", |v| {
            v["label"]["name"] = json!("backspace");
            v["issue"]["title"] = json!("Signup form accepts empty email");
            v["issue"]["body"] = json!("Add validation.");
        });
        let j = job(decide(&e, &ctx()));
        assert_eq!(j.kind(), JobKind::Run);
        assert_eq!(j.source, JobSource::Label);
        assert_eq!(
            j.prompt,
            "Signup form accepts empty email\n\nAdd validation."
        );
        assert_eq!(j.comment_id, None);
        assert_eq!(
            j.spec.agent().and_then(|a| a.label.as_deref()),
            Some("backspace")
        );
        let by_bot = event("issues/labeled.json", |v| {
            v["label"]["name"] = json!("backspace");
            v["sender"]["type"] = json!("Bot");
        });
        assert_eq!(decide(&by_bot, &ctx()), Decision::Ignore(Ignored::Bot));
    }

    #[test]
    fn the_repositorys_label_or_the_default_starts_runs() {
        assert!(is_trigger_label("backspace", None));
        assert!(is_trigger_label("Backspace", None));
        assert!(!is_trigger_label("bug", None));
        assert!(is_trigger_label("AI", Some("ai")));
        assert!(!is_trigger_label("backspace", Some("ai")));
    }

    #[test]
    fn a_review_with_a_command_in_its_body_iterates_on_its_pull_request() {
        let body = serde_json::to_vec(&review_payload()).unwrap();
        let ev = parse("pull_request_review", Some("submitted"), &body)
            .unwrap()
            .unwrap();
        let j = job(decide(&ev, &ctx()));
        assert_eq!((j.kind(), j.source), (JobKind::Iterate, JobSource::Review));
        assert_eq!(j.prompt, "address these comments");
        assert_eq!(j.comment_id, None);
        let review = j.spec.agent().and_then(|a| a.review.clone());
        assert_eq!(review.map(|r| r.id), Some(80));
    }

    #[test]
    fn a_review_comment_iterates_with_its_file_and_line() {
        let e = event(
            "pull_request_review_comment/created.json",
            comment("/backspace handle the None case here"),
        );
        let j = job(decide(&e, &ctx()));
        assert_eq!(j.kind(), JobKind::Iterate);
        assert_eq!(j.source, JobSource::ReviewComment);
        assert!(j.is_pull_request);
        let rc = j.spec.agent().and_then(|a| a.review_comment.clone());
        let rc = rc.expect("the review comment");
        assert_eq!(rc.path.as_deref(), Some("README.md"));
        assert!(rc.diff_hunk.is_some());
    }

    #[test]
    fn a_closed_pull_request_cancels_its_jobs() {
        let e = event("pull_request/opened.json", |v| {
            v["action"] = json!("closed")
        });
        let j = job(decide(&e, &ctx()));
        assert_eq!(
            (j.kind(), j.source, j.is_pull_request),
            (JobKind::Cancel, JobSource::Closed, true)
        );
        assert!(!needs_permission(j.kind(), j.source));
    }

    #[test]
    fn only_closes_and_api_or_cli_jobs_skip_the_permission_check() {
        assert!(needs_permission(JobKind::Run, JobSource::Comment));
        assert!(needs_permission(JobKind::Cancel, JobSource::Comment));
        assert!(needs_permission(JobKind::Help, JobSource::Comment));
        assert!(needs_permission(JobKind::Run, JobSource::Label));
        assert!(!needs_permission(JobKind::Cancel, JobSource::Closed));
        assert!(!needs_permission(JobKind::Run, JobSource::Api));
    }
}
