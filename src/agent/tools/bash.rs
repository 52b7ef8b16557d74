//! The `bash` tool (`bash_20250124`): one command per call, run in the workspace. There is no
//! persistent shell, so `restart` only acknowledges; the system prompt says state does not carry.

use std::time::Duration;

use serde_json::Value;

use super::{ToolLimits, ToolResult};
use crate::agent::workspace::{CommandOutput, Workspace};

pub async fn run(
    workspace: &dyn Workspace,
    input: &Value,
    limits: &ToolLimits,
    timeout: Duration,
) -> ToolResult {
    if input.get("restart").and_then(Value::as_bool) == Some(true) {
        return ToolResult::ok("The bash tool has been restarted.");
    }
    let Some(command) = input.get("command").and_then(Value::as_str) else {
        return ToolResult::error("The bash tool needs a `command` string (or `restart: true`).");
    };
    if command.trim().is_empty() {
        return ToolResult::error("The command is empty.");
    }
    match workspace
        .exec(command, timeout, limits.exec_output_cap)
        .await
    {
        Ok(out) => render(&out, timeout),
        Err(e) => ToolResult::error(format!("The command could not be run: {e}")),
    }
}

/// The text the model sees for a finished command.
pub fn render(out: &CommandOutput, timeout: Duration) -> ToolResult {
    let mut text = String::new();
    text.push_str(&out.stdout);
    if !out.stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&out.stderr);
    }
    if out.truncated_bytes > 0 {
        text.push_str(&format!(
            "\n[{} more bytes of output were dropped]",
            out.truncated_bytes
        ));
    }
    let mut result = if out.timed_out {
        ToolResult::error(format!(
            "{text}\n[The command was killed after {}s without finishing. Run long tasks with a \
             narrower scope, or in the background with output to a file.]",
            timeout.as_secs()
        ))
    } else if out.out_of_memory {
        ToolResult::error(format!(
            "{text}\n[The command was killed: the sandbox ran out of memory.]"
        ))
    } else {
        if out.exit_code != 0 {
            text.push_str(&format!("\n[exit code {}]", out.exit_code));
        }
        if text.trim().is_empty() {
            text = "(no output)".into();
        }
        ToolResult::ok(text)
    };
    result.exit_code = Some(out.exit_code);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i64, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            exit_code: code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            timed_out: false,
            out_of_memory: false,
            duration: Duration::from_millis(3),
            truncated_bytes: 0,
        }
    }

    #[test]
    fn output_joins_streams_and_states_a_failing_exit_code() {
        let r = render(&out(2, "a", "b\n"), Duration::from_secs(1));
        assert_eq!(r.content, "a\nb\n\n[exit code 2]");
        assert!(!r.is_error);
        assert_eq!(r.exit_code, Some(2));
        assert_eq!(
            render(&out(0, "", ""), Duration::from_secs(1)).content,
            "(no output)"
        );
    }

    struct NoShell;

    #[async_trait::async_trait]
    impl Workspace for NoShell {
        async fn exec(
            &self,
            _: &str,
            _: Duration,
            _: usize,
        ) -> Result<CommandOutput, crate::agent::workspace::WorkspaceError> {
            Err(crate::agent::workspace::WorkspaceError::Other(
                "no shell here".into(),
            ))
        }
        async fn read_file(
            &self,
            p: &str,
        ) -> Result<Vec<u8>, crate::agent::workspace::WorkspaceError> {
            Err(crate::agent::workspace::WorkspaceError::NotFound { path: p.into() })
        }
        async fn write_file(
            &self,
            _: &str,
            _: &[u8],
        ) -> Result<(), crate::agent::workspace::WorkspaceError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn restart_is_acknowledged_and_bad_input_or_exec_failure_are_errors() {
        let l = ToolLimits::default();
        let t = Duration::from_secs(1);
        let r = run(&NoShell, &serde_json::json!({"restart": true}), &l, t).await;
        assert!(!r.is_error && r.content.contains("restarted"));
        assert!(run(&NoShell, &serde_json::json!({}), &l, t).await.is_error);
        let r = run(&NoShell, &serde_json::json!({"command": "ls"}), &l, t).await;
        assert!(r.is_error && r.content.contains("no shell here"));
    }

    #[test]
    fn a_timeout_is_an_error_that_says_so() {
        let mut o = out(124, "partial", "");
        o.timed_out = true;
        let r = render(&o, Duration::from_secs(30));
        assert!(r.is_error);
        assert!(r.content.contains("killed after 30s"));
    }
}
