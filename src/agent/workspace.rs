//! Where the agent's tools act: the repository checkout inside the sandbox. A small trait so the
//! loop is tested without Docker; `crate::sandbox::Sandbox` is the real implementation.

use std::time::Duration;

use async_trait::async_trait;

/// The repository's directory inside the sandbox; commands run there.
pub const WORKSPACE_ROOT: &str = "/workspace";

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub out_of_memory: bool,
    pub duration: Duration,
    /// Output bytes the workspace dropped past its cap.
    pub truncated_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait Workspace: Send + Sync {
    /// Runs `command` with `bash -c` in [`WORKSPACE_ROOT`], killed after `timeout`, keeping at most
    /// `output_cap` bytes of each stream.
    async fn exec(
        &self,
        command: &str,
        timeout: Duration,
        output_cap: usize,
    ) -> Result<CommandOutput, WorkspaceError>;
    /// Reads a file, `path` relative to [`WORKSPACE_ROOT`] or absolute.
    async fn read_file(&self, path: &str) -> Result<Vec<u8>, WorkspaceError>;
    /// Writes (creates or replaces) a file, creating parent directories.
    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), WorkspaceError>;
}

/// The real workspace: the run's Docker sandbox.
#[async_trait]
impl Workspace for crate::sandbox::Sandbox {
    async fn exec(
        &self,
        command: &str,
        timeout: Duration,
        output_cap: usize,
    ) -> Result<CommandOutput, WorkspaceError> {
        use crate::sandbox::{ExecOutcome, ExecSpec};
        let spec = ExecSpec::new(command)
            .timeout(timeout.max(Duration::from_secs(1)))
            .output_cap(output_cap);
        let out = crate::sandbox::Sandbox::exec(self, spec)
            .await
            .map_err(|e| WorkspaceError::Other(e.to_string()))?;
        // The sandbox's stderr already says why it stopped a command (process limit, idle).
        Ok(CommandOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            timed_out: out.outcome == ExecOutcome::TimedOut,
            out_of_memory: out.outcome == ExecOutcome::OutOfMemory,
            duration: out.duration,
            truncated_bytes: out.truncated_bytes,
        })
    }

    async fn read_file(&self, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        crate::sandbox::Sandbox::read_file(self, path)
            .await
            .map_err(|e| match e {
                crate::sandbox::SandboxError::ReadFile { path, message }
                    if message.contains("No such file") =>
                {
                    WorkspaceError::NotFound { path }
                }
                other => WorkspaceError::Other(other.to_string()),
            })
    }

    async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), WorkspaceError> {
        crate::sandbox::Sandbox::write_file(self, path, contents)
            .await
            .map_err(|e| WorkspaceError::Other(e.to_string()))
    }
}
