//! The Claude agent: the loop, its two tools executed in the sandbox, budgets, and the model
//! clients under `llm/`. Never reaches `github`: nothing that drives the sandbox holds a GitHub
//! credential.
//!
//! The runner builds a provider (`llm::build_provider`), an [`Agent`] with an [`AgentConfig`],
//! and calls [`Agent::run`] with an [`AgentTask`], a [`Workspace`] (the sandbox) and its event
//! sender; it gets an [`AgentOutcome`] back.
//!
//! ```text
//! let mut settings = ProviderSettings::new(anthropic_base_url, anthropic_api_key, model);
//! settings.openai_base_url = openai_base_url;          // optional: fallback / self-hosted
//! settings.openai_api_key = openai_api_key;
//! let agent = Agent::new(settings.build()?, AgentConfig {
//!     budgets: Budgets { max_turns: repo_settings.max_turns.unwrap_or(50), ..Budgets::default() },
//!     ..AgentConfig::default()
//! });
//! let task = AgentTask { repo: "owner/name".into(), issue: Some(issue), request, repo_instructions, test_command };
//! let outcome = agent.run(&task, &sandbox, &events).await;   // sandbox: crate::sandbox::Sandbox
//! match outcome.stop {
//!     StopReason::Finished | StopReason::BudgetHit(_) => { /* diff the tree; commit if changed */ }
//!     StopReason::Failed(_) => { /* an error event was already sent */ }
//! }
//! ```
//!
//! The agent sends `ai_message`, `tool` and `progress` (stage `agent`, "turn N: ...") events,
//! a last `progress` saying how it stopped (or an `error` event when it failed); `start`,
//! `pr_created` and `complete` are the runner's. Dropping the `run` future cancels the run.

pub mod budget;
pub mod llm;
pub mod pricing;
pub mod prompt;
pub mod session;
pub mod tools;
pub mod workspace;

pub use budget::{BudgetKind, Budgets};
pub use llm::{LlmError, ModelProvider, ProviderChoice, ProviderSettings, RetryPolicy};
pub use pricing::{ModelPrice, PriceTable};
pub use prompt::{AgentTask, InstructionFile, IssueComment, IssueContext};
pub use session::{Agent, AgentConfig, AgentOutcome, StopReason};
pub use tools::ToolLimits;
pub use workspace::{CommandOutput, Workspace, WorkspaceError};
