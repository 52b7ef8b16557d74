//! The agent's two tools, Anthropic's `bash` and `str_replace_based_edit_tool`, executed in the
//! workspace: their dispatch, results (errors as `is_error`), and the cutting of long output.

pub mod bash;
pub mod editor;

use std::time::Duration;

use serde_json::Value;

use super::llm::types::{BASH_TOOL, EDITOR_TOOL};
use super::workspace::Workspace;

/// Limits of tool execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolLimits {
    /// Time limit of one bash command.
    pub command_timeout: Duration,
    /// Bytes of each output stream the workspace keeps.
    pub exec_output_cap: usize,
    /// Characters of a tool result sent back to the model.
    pub result_chars: usize,
    /// Characters of a tool output put in a run event.
    pub event_chars: usize,
}

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits {
            command_timeout: Duration::from_secs(300),
            exec_output_cap: 1024 * 1024,
            result_chars: 30_000,
            event_chars: 2_000,
        }
    }
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// Text for the model (already cut to `result_chars`).
    pub content: String,
    pub is_error: bool,
    /// The command's exit code (bash only).
    pub exit_code: Option<i64>,
    /// The call changed a file (editor writes).
    pub changed_file: bool,
}

impl ToolResult {
    pub fn ok(content: impl Into<String>) -> Self {
        ToolResult {
            content: content.into(),
            is_error: false,
            exit_code: None,
            changed_file: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        ToolResult {
            content: content.into(),
            is_error: true,
            exit_code: None,
            changed_file: false,
        }
    }
}

/// Runs one tool call. Unknown tools and bad input come back as errors for the model to see.
pub async fn run_tool(
    workspace: &dyn Workspace,
    name: &str,
    input: &Value,
    limits: &ToolLimits,
    command_timeout: Duration,
) -> ToolResult {
    let mut result = match name {
        BASH_TOOL => bash::run(workspace, input, limits, command_timeout).await,
        EDITOR_TOOL => editor::run(workspace, input).await,
        other => ToolResult::error(format!(
            "Unknown tool `{other}`. The available tools are `{BASH_TOOL}` and `{EDITOR_TOOL}`."
        )),
    };
    result.content = cut_output(&result.content, limits.result_chars);
    result
}

/// Keeps the head and the tail of `text` within `max_chars` characters, with a note in the
/// middle saying how much was cut.
pub fn cut_output(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_owned();
    }
    let head_n = max_chars * 2 / 5;
    let tail_n = max_chars.saturating_sub(head_n);
    let head: String = text.chars().take(head_n).collect();
    let tail: String = text.chars().skip(total - tail_n).collect();
    format!(
        "{head}\n\n[... {} characters cut: the output was {total} characters long ...]\n\n{tail}",
        total - head_n - tail_n
    )
}

/// A one-line description of a call for progress messages: "bash `cargo test`".
pub fn describe_call(name: &str, input: &Value) -> String {
    let s = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or_default();
    let short = |t: &str| {
        let line = t.lines().next().unwrap_or_default();
        if line.chars().count() > 80 || t.lines().nth(1).is_some() {
            format!("{}…", line.chars().take(80).collect::<String>())
        } else {
            line.to_owned()
        }
    };
    match name {
        BASH_TOOL if input.get("restart").and_then(Value::as_bool) == Some(true) => {
            "bash restart".into()
        }
        BASH_TOOL => format!("bash `{}`", short(s("command"))),
        EDITOR_TOOL => format!("{} {}", s("command"), s("path")).trim().to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_head_and_tail_and_says_it_was_cut() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let cut = cut_output(&text, 200);
        assert!(cut.starts_with("line 0\n"));
        assert!(cut.ends_with("line 999\n"));
        assert!(cut.contains("characters cut"));
        assert_eq!(cut_output("short", 200), "short");
    }

    #[test]
    fn calls_are_described_in_one_short_line() {
        let d = describe_call("bash", &serde_json::json!({"command": "cargo test\nls"}));
        assert_eq!(d, "bash `cargo test…`");
        let d = describe_call(
            "str_replace_based_edit_tool",
            &serde_json::json!({"command": "view", "path": "src/a.rs"}),
        );
        assert_eq!(d, "view src/a.rs");
    }
}
