//! The vocabulary of jobs shared by ingress, the store and the workers: what kind of job, where
//! it came from, its state, and a new job's fields as the trigger rules produce them.

use serde::{Deserialize, Serialize};

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
    /// What a job does.
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

/// A job to store, as the trigger rules (or the API) produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: JobKind,
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
    /// Extras the run needs: the issue title, a review comment's file and line, a usage error.
    pub context: serde_json::Value,
}
