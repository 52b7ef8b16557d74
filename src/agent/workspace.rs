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
