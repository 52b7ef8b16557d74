//! The Claude agent: the loop, its two tools executed in the sandbox, budgets, and the model
//! clients under `llm/`. Never reaches `github`: nothing that drives the sandbox holds a GitHub
//! credential.
//!
//! The runner builds a provider (`llm::build_provider`), an [`Agent`] with an [`AgentConfig`],
//! and calls [`Agent::run`] with an [`AgentTask`], a [`Workspace`] (the sandbox) and its event
//! sender; it gets an [`AgentOutcome`] back.

pub mod budget;
pub mod llm;
pub mod pricing;
pub mod prompt;
pub mod session;
pub mod tools;
pub mod workspace;

pub use budget::{BudgetKind, Budgets};
pub use llm::{LlmError, ModelProvider, ProviderChoice, RetryPolicy};
pub use pricing::{ModelPrice, PriceTable};
pub use prompt::{AgentTask, IssueComment, IssueContext};
pub use session::{Agent, AgentConfig, AgentOutcome, StopReason};
pub use tools::ToolLimits;
pub use workspace::{CommandOutput, Workspace, WorkspaceError};
