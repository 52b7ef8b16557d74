//! The Claude agent: the loop, its two tools executed in the sandbox, budgets, and the model
//! clients under `llm/`. Never reaches `github`: nothing that drives the sandbox holds a GitHub
//! credential.
