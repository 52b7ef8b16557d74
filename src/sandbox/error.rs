//! Errors of the sandbox, kept apart by what a caller does about them.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while creating, using or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the Docker engine does not answer: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error(transparent)]
    Engine(#[from] super::engine::EngineError),
    #[error("sandbox image {image} is not present on the Docker engine (build it; nothing can be pulled)")]
    ImageMissing { image: String },
    #[error("Docker call failed while {action}: {source}")]
    Docker {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("copy-out destination {0} must be an existing empty directory")]
    DestinationNotEmpty(PathBuf),
    #[error("{path} is larger than the limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("the working tree has more than the limit of {limit} files, directories and links")]
    TooManyEntries { limit: u64 },
    #[error("the repository does not fit in the sandbox's {limit} bytes of disk (BACKSPACE_SANDBOX_DISK)")]
    RepositoryTooLarge { limit: u64 },
    #[error("the repository could not be unpacked in the sandbox: {message}")]
    CopyIn { message: String },
    #[error("the working tree could not be copied out of the sandbox: {message}")]
    CopyOut { message: String },
    #[error("cannot read {path} in the sandbox: {message}")]
    ReadFile { path: String, message: String },
    #[error("cannot write {path} in the sandbox: {message}")]
    WriteFile { path: String, message: String },
    #[error("the run's time limit of {limit:?} is over; its sandbox was removed")]
    RunTimeLimit { limit: Duration },
    #[error("the sandbox container is gone: {0}")]
    Gone(String),
}

impl SandboxError {
    /// Whether the error comes from what the repository (or the agent's work on it) holds, not
    /// from the engine or the image: too big, too many files, names the sandbox cannot write.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            SandboxError::TooLarge { .. }
                | SandboxError::TooManyEntries { .. }
                | SandboxError::RepositoryTooLarge { .. }
                | SandboxError::CopyIn { .. }
        )
    }

    pub(crate) fn docker(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> Self {
        move |source| SandboxError::Docker { action, source }
    }

    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| SandboxError::Io { action, source }
    }
}

/// Whether a bollard error is a 404 from the engine.
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
