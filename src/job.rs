//! The vocabulary of jobs shared by ingress, the store and the workers: what a job is asked to
//! do ([`JobSpec`], one variant per kind), where it came from, its state, and how it ended
//! ([`JobResult`], one variant per outcome).
//!
//! Both are stored as JSON in the `jobs` table (`context` and `result`), beside the `kind`
//! column; [`JobSpec::from_stored`] and [`JobResult::from_stored`] read every shape written
//! since the first release, so old rows still read after an upgrade.

use serde::{Deserialize, Serialize};

use crate::run_event::{RunStatus, Usage};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A stored value that is none of the known ones (a row written by a newer version, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// What a job does (the `kind` column; the same as its [`JobSpec`]'s variant).
    JobKind {
        Run => "run",
        Iterate => "iterate",
        Help => "help",
        Cancel => "cancel",
        UsageError => "usage_error",
    }
);

string_enum!(
    /// What started a job.
    JobSource {
        Comment => "comment",
        Label => "label",
        ReviewComment => "review_comment",
        Review => "review",
        Closed => "closed",
        Api => "api",
        Cli => "cli",
    }
);

string_enum!(
    /// queued → running → succeeded | failed | cancelled.
    JobState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl JobKind {
    /// Kinds that run the agent (and so take the one-run-per-target slot).
    pub fn runs_agent(self) -> bool {
        matches!(self, JobKind::Run | JobKind::Iterate)
    }
}

/// The review comment an iteration was asked for in: the agent is shown its place, and the
/// answer goes into its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewCommentRef {
    pub id: u64,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub diff_hunk: Option<String>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// The pull request review (`pull_request_review` submitted with a command in its body) an
/// iteration was asked for in: its comments are the agent's context, fetched by the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRef {
    pub id: u64,
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// What an agent job (a run or an iteration) knows besides its columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The issue's or pull request's title when the job was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_url: Option<String>,
    /// The requester's GitHub user id (for their noreply address in `Co-authored-by:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_comment: Option<ReviewCommentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRef>,
    /// The label that was added, for a job started by a label: the worker checks it against
    /// the repository's `label:` (ingress cannot read the repository's settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// What a job is asked to do: one variant per [`JobKind`], with what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    /// The agent on an issue (or from the API or the CLI): a new branch and pull request.
    Run(AgentSpec),
    /// The agent on a pull request: commits on its branch.
    Iterate(AgentSpec),
    Help,
    /// Stop the running job and drop the queued ones of the same issue or pull request.
    Cancel,
    /// A command Backspace could not read: answered with what was wrong and the usage.
    UsageError {
        problem: String,
    },
}

/// The stored shape of a usage error's context (other keys of old rows are ignored).
#[derive(Serialize, Deserialize)]
struct UsageErrorContext {
    usage_error: String,
}

/// Why a stored job could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoredShapeError(String);

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Run(_) => JobKind::Run,
            JobSpec::Iterate(_) => JobKind::Iterate,
            JobSpec::Help => JobKind::Help,
            JobSpec::Cancel => JobKind::Cancel,
            JobSpec::UsageError { .. } => JobKind::UsageError,
        }
    }

    /// The agent job's details; `None` for the quick kinds.
    pub fn agent(&self) -> Option<&AgentSpec> {
        match self {
            JobSpec::Run(a) | JobSpec::Iterate(a) => Some(a),
            _ => None,
        }
    }

    /// The JSON stored in `jobs.context`.
    pub fn context_json(&self) -> String {
        let value = match self {
            JobSpec::Run(a) | JobSpec::Iterate(a) => serde_json::to_value(a),
            JobSpec::Help | JobSpec::Cancel => Ok(serde_json::json!({})),
            JobSpec::UsageError { problem } => serde_json::to_value(UsageErrorContext {
                usage_error: problem.clone(),
            }),
        };
        // Plain structs of strings and numbers always serialise.
        value.map(|v| v.to_string()).unwrap_or_else(|_| "{}".into())
    }

    /// Reads a stored job's spec from its `kind` column and `context` JSON.
    pub fn from_stored(kind: JobKind, context: &str) -> Result<JobSpec, StoredShapeError> {
        let bad = |e: serde_json::Error| StoredShapeError(format!("{kind} context: {e}"));
        Ok(match kind {
            JobKind::Run => JobSpec::Run(serde_json::from_str(context).map_err(bad)?),
            JobKind::Iterate => JobSpec::Iterate(serde_json::from_str(context).map_err(bad)?),
            JobKind::Help => JobSpec::Help,
            JobKind::Cancel => JobSpec::Cancel,
            JobKind::UsageError => {
                let c: UsageErrorContext = serde_json::from_str(context).map_err(bad)?;
                JobSpec::UsageError {
                    problem: c.usage_error,
                }
            }
        })
    }
}

/// A job to store, as the trigger rules (or the API, or the CLI) produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub spec: JobSpec,
    pub source: JobSource,
    pub installation_id: Option<u64>,
    /// `owner/name`.
    pub repository: String,
    pub clone_url: Option<String>,
    pub default_branch: Option<String>,
    /// The issue or pull request number.
    pub number: Option<u64>,
    pub is_pull_request: bool,
    /// The comment that asked, for reactions and replies.
    pub comment_id: Option<u64>,
    pub requester: String,
    pub prompt: String,
}

impl JobRequest {
    pub fn kind(&self) -> JobKind {
        self.spec.kind()
    }
}

/// The result of the repository's test command, as the PR body and the job result show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    pub command: String,
    pub passed: bool,
    /// `exit 0`, `exit 1`, `timed out`, …
    pub summary: String,
}

/// What an agent run produced, for its job result (and the API's `GET /api/runs/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default)]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub files_changed: Vec<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    /// Why the agent stopped (`finished`, a budget, a failure), in words.
    #[serde(default)]
    pub stop: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub cache_read_share: Option<f64>,
    #[serde(default)]
    pub turns: Option<u32>,
    #[serde(default)]
    pub test: Option<TestReport>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// A job that ended badly, and what it cost so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    pub error: String,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// What the agent used before the failure (absent in rows of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A job that was cancelled: while queued (with who or what cancelled it), or while running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CancelReport {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// What the agent used before it was stopped (absent in rows of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A job that had nothing to do after all: a label that is not the repository's trigger label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SkipReport {
    pub reason: String,
}

/// What a cancel sent by closing an issue or pull request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseReport {
    pub cancelled_queued: u64,
    pub cancelling_running: u64,
}

/// How a job ended: one variant per outcome, stored as JSON in `jobs.result` with a `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobResult {
    /// The agent's work was pushed and its pull request opened (or updated).
    Succeeded(RunReport),
    /// Nothing changed: the agent's answer was posted (an empty report for quick jobs).
    Answered(RunReport),
    Failed(FailureReport),
    Cancelled(CancelReport),
    /// A close cancelled the issue's or pull request's jobs.
    Closed(CloseReport),
    /// Nothing to do after all; nothing was posted.
    Skipped(SkipReport),
}

impl JobResult {
    pub fn failed(error: impl Into<String>) -> JobResult {
        JobResult::Failed(FailureReport {
            error: error.into(),
            ..FailureReport::default()
        })
    }

    /// The job's final state: an answer and a close are successes too.
    pub fn state(&self) -> JobState {
        match self {
            JobResult::Succeeded(_)
            | JobResult::Answered(_)
            | JobResult::Closed(_)
            | JobResult::Skipped(_) => JobState::Succeeded,
            JobResult::Failed(_) => JobState::Failed,
            JobResult::Cancelled(_) => JobState::Cancelled,
        }
    }

    /// The run status this outcome reports, for the agent kinds.
    pub fn run_status(&self) -> Option<RunStatus> {
        match self {
            JobResult::Succeeded(_) => Some(RunStatus::Succeeded),
            JobResult::Answered(_) => Some(RunStatus::Answered),
            JobResult::Failed(_) => Some(RunStatus::Failed),
            JobResult::Cancelled(_) => Some(RunStatus::Cancelled),
            JobResult::Closed(_) | JobResult::Skipped(_) => None,
        }
    }

    /// The agent's report, when the run got that far.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            JobResult::Succeeded(r) | JobResult::Answered(r) => Some(r),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            JobResult::Failed(f) => Some(&f.error),
            JobResult::Cancelled(c) => c.reason.as_deref(),
            _ => None,
        }
    }

    pub fn duration_ms(&self) -> Option<u64> {
        match self {
            JobResult::Succeeded(r) | JobResult::Answered(r) => r.duration_ms,
            JobResult::Failed(f) => f.duration_ms,
            JobResult::Cancelled(c) => c.duration_ms,
            JobResult::Closed(_) | JobResult::Skipped(_) => None,
        }
    }

    /// The JSON stored in `jobs.result`.
    pub fn to_json(&self) -> serde_json::Value {
        // Plain structs of strings and numbers always serialise.
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }

    /// Reads a stored result. Rows of the first release wrote two shapes without a `status`:
    /// `{"reason"}` for a queued job that was cancelled, and `{"cancelled_queued",
    /// "cancelling_running"}` for a close.
    pub fn from_stored(text: &str) -> Result<JobResult, StoredShapeError> {
        let bad = |e: serde_json::Error| StoredShapeError(format!("result: {e}"));
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        if let Some(object) = value.as_object_mut() {
            if !object.contains_key("status") {
                let status = if object.contains_key("cancelled_queued") {
                    "closed"
                } else {
                    "cancelled"
                };
                object.insert("status".into(), status.into());
            }
        }
        serde_json::from_value(value).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_round_trip_through_their_stored_shape() {
        let specs = [
            JobSpec::Run(AgentSpec {
                title: Some("Signup".into()),
                issue_url: Some("https://github.com/o/r/issues/1".into()),
                requester_id: Some(7),
                label: Some("backspace".into()),
                ..Default::default()
            }),
            JobSpec::Iterate(AgentSpec {
                review_comment: Some(ReviewCommentRef {
                    id: 3,
                    path: Some("a.rs".into()),
                    line: Some(4),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            JobSpec::Iterate(AgentSpec {
                review: Some(ReviewRef {
                    id: 8,
                    commit_id: Some("abc".into()),
                }),
                ..Default::default()
            }),
            JobSpec::Help,
            JobSpec::Cancel,
            JobSpec::UsageError {
                problem: "unknown command".into(),
            },
        ];
        for spec in specs {
            let stored = spec.context_json();
            assert_eq!(JobSpec::from_stored(spec.kind(), &stored), Ok(spec));
        }
    }

    /// The contexts the first release wrote (`trigger.rs` with `json!`), read by this one.
    #[test]
    fn contexts_written_by_the_first_release_still_read() {
        let comment = r#"{"title":"Greeting is rude","issue_url":"https://github.com/octo/app/issues/1","requester_id":42}"#;
        let JobSpec::Run(a) = JobSpec::from_stored(JobKind::Run, comment).unwrap() else {
            panic!("a run");
        };
        assert_eq!(
            (a.title.as_deref(), a.requester_id),
            (Some("Greeting is rude"), Some(42))
        );
        let review = r#"{"title":"PR","requester_id":5,"review_comment":{"id":9,"path":"README.md","line":null,"diff_hunk":"@@ -1 +1 @@","in_reply_to_id":null,"commit_id":"abc"}}"#;
        let JobSpec::Iterate(a) = JobSpec::from_stored(JobKind::Iterate, review).unwrap() else {
            panic!("an iteration");
        };
        let rc = a.review_comment.unwrap();
        assert_eq!((rc.id, rc.path.as_deref()), (9, Some("README.md")));
        let usage = r#"{"title":"x","issue_url":"u","requester_id":1,"usage_error":"unknown command `cancle`"}"#;
        assert_eq!(
            JobSpec::from_stored(JobKind::UsageError, usage).unwrap(),
            JobSpec::UsageError {
                problem: "unknown command `cancle`".into()
            }
        );
        assert_eq!(
            JobSpec::from_stored(JobKind::Cancel, "{}").unwrap(),
            JobSpec::Cancel
        );
        assert!(JobSpec::from_stored(JobKind::UsageError, "{}").is_err());
        assert!(JobSpec::from_stored(JobKind::Run, "not json").is_err());
    }

    /// The results the first release wrote, read by this one.
    #[test]
    fn results_written_by_the_first_release_still_read() {
        let pushed = r#"{"status":"succeeded","pr_url":"https://github.com/octo/app/pull/2","files_changed":["src/app.js"],"title":"Greet","summary":"Changed it.","stop":"finished","usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"cost_usd":0.01,"cache_read_share":0.0,"turns":2,"test":{"command":"npm test","passed":true,"summary":"exit 0"},"duration_ms":1500}"#;
        let r = JobResult::from_stored(pushed).unwrap();
        let report = r.report().unwrap();
        assert_eq!(
            report.pr_url.as_deref(),
            Some("https://github.com/octo/app/pull/2")
        );
        assert_eq!(report.test.as_ref().map(|t| t.passed), Some(true));
        assert_eq!(r.run_status(), Some(RunStatus::Succeeded));

        let answered = r#"{"status":"answered","pr_url":null,"files_changed":[],"title":"Q","summary":"It is there.","stop":"finished","usage":{"input_tokens":1,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"cost_usd":null,"cache_read_share":0.0,"turns":1,"test":null,"duration_ms":9}"#;
        assert_eq!(
            JobResult::from_stored(answered).unwrap().run_status(),
            Some(RunStatus::Answered)
        );
        assert!(matches!(
            JobResult::from_stored(r#"{"status":"answered"}"#).unwrap(),
            JobResult::Answered(_)
        ));
        let failed = r#"{"status":"failed","error":"the requester's permission is read"}"#;
        assert_eq!(
            JobResult::from_stored(failed).unwrap().error(),
            Some("the requester's permission is read")
        );
        let cancelled = r#"{"status":"cancelled","duration_ms":40}"#;
        assert_eq!(
            JobResult::from_stored(cancelled).unwrap().duration_ms(),
            Some(40)
        );
        let queued_cancel = r#"{"reason":"cancelled by @alice"}"#;
        assert_eq!(
            JobResult::from_stored(queued_cancel).unwrap().error(),
            Some("cancelled by @alice")
        );
        let close = r#"{"cancelled_queued":1,"cancelling_running":0}"#;
        assert_eq!(
            JobResult::from_stored(close).unwrap(),
            JobResult::Closed(CloseReport {
                cancelled_queued: 1,
                cancelling_running: 0
            })
        );
    }

    #[test]
    fn results_are_stored_with_their_status() {
        let r = JobResult::failed("boom");
        assert_eq!(
            r.to_json(),
            json!({"status": "failed", "error": "boom", "duration_ms": null})
        );
        assert_eq!(JobResult::from_stored(&r.to_json().to_string()), Ok(r));
    }
}
