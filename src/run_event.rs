//! The run event stream (DESIGN §3): one enum, serialised as one JSON object per event with a
//! `type` field. The progress comment, the SSE stream, the run page, the logs and the metrics are
//! all views of this one stream, so every producer (runner, agent, sandbox phases) emits these.

use serde::{Deserialize, Serialize};

/// Where producers (runner, agent) send their events; the runner stores and fans them out.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<RunEvent>;

/// Token usage summed over a run (or one model call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }

    /// All input tokens, whether read from cache, written to it, or neither.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    /// The share of input tokens that were read from the prompt cache, 0.0 ..= 1.0.
    pub fn cache_read_share(&self) -> f64 {
        let total = self.total_input();
        if total == 0 {
            0.0
        } else {
            self.cache_read_input_tokens as f64 / total as f64
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A pull request was opened or updated.
    Succeeded,
    /// The agent answered without changing a file.
    Answered,
    Failed,
    Cancelled,
}

/// One event of a run. `#[serde(tag = "type")]` gives the wire format of DESIGN §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    Start {
        run_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
    },
    Progress {
        stage: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percentage: Option<u8>,
        /// The run's token usage so far, on the agent's progress (an extension of DESIGN §3:
        /// absent elsewhere, so readers that do not know it lose nothing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// The run's cost so far in US dollars, when the model's price is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    Tool {
        name: String,
        input: serde_json::Value,
        /// An excerpt of the output, already cut to a displayable size.
        output: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    AiMessage {
        text: String,
    },
    PrCreated {
        pr_url: String,
        files_changed: Vec<String>,
    },
    Error {
        message: String,
    },
    /// A connection the egress proxy refused (an extension of DESIGN §3): `count` is how many
    /// times `host:port` has been refused in this run so far, `command` what was running.
    EgressBlocked {
        host: String,
        port: u16,
        count: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        /// Why, as the agent was told.
        reason: String,
        /// The repository's `network.allow` that would let it through (what it lists, and the
        /// entry for this host); none when only the operator can (an address, the run's caps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suggested_allow: Option<Vec<String>>,
        /// What the operator must change first, when `BACKSPACE_EGRESS_ALLOW` does not cover it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator_change: Option<String>,
    },
    Complete {
        run_id: String,
        status: RunStatus,
        duration_ms: u64,
        usage: Usage,
        cost_usd: f64,
    },
}

impl RunEvent {
    /// A `progress` event of `stage` with `message`.
    pub fn progress(stage: impl Into<String>, message: impl Into<String>) -> RunEvent {
        RunEvent::Progress {
            stage: stage.into(),
            message: message.into(),
            percentage: None,
            usage: None,
            cost_usd: None,
        }
    }

    /// The value of the `type` field, also stored as its own column.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Start { .. } => "start",
            RunEvent::Progress { .. } => "progress",
            RunEvent::Tool { .. } => "tool",
            RunEvent::AiMessage { .. } => "ai_message",
            RunEvent::PrCreated { .. } => "pr_created",
            RunEvent::Error { .. } => "error",
            RunEvent::EgressBlocked { .. } => "egress_blocked",
            RunEvent::Complete { .. } => "complete",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, RunEvent::Complete { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_the_type_field_of_the_design() {
        let e = RunEvent::PrCreated {
            pr_url: "https://github.com/o/r/pull/2".into(),
            files_changed: vec!["a.rs".into()],
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "pr_created");
        assert_eq!(v["pr_url"], "https://github.com/o/r/pull/2");
        assert_eq!(e.kind(), "pr_created");
        let back: RunEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn cache_read_share_counts_all_input_kinds() {
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_creation_input_tokens: 30,
            cache_read_input_tokens: 60,
        };
        assert!((u.cache_read_share() - 0.6).abs() < 1e-9);
        assert_eq!(Usage::default().cache_read_share(), 0.0);
    }
}
