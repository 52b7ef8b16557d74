//! Backspace: a GitHub App that turns `/backspace <request>` into a pull request written by a
//! Claude agent in a locked-down Docker sandbox. The modules follow the data flow of DESIGN §2:
//! `server` (ingress) → `store` (jobs) → `runner` (workers) → `sandbox` / `agent`, with
//! `github` for the REST calls and git on the host. `command`, `trigger` and `webhook` are pure.

pub mod agent;
pub mod command;
pub mod config;
pub mod github;
pub mod run_event;
pub mod runner;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod trigger;
pub mod webhook;
