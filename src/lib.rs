//! Backspace: a GitHub App that turns `/backspace <request>` into a pull request written by a
//! Claude agent in a locked-down Docker sandbox. The modules follow the data flow of DESIGN §2:
//! `server` (ingress) → `store` (jobs) → `runner` (workers) → `sandbox` / `agent`, with
//! `github` for the REST calls and git on the host. `command`, `trigger` and `webhook` are pure.

pub mod agent;
pub mod clock;
pub mod command;
pub mod config;
pub mod doctor;
pub mod egress;
pub mod github;
pub mod job;
pub mod local_run;
pub mod metrics;
pub mod progress;
pub mod redact;
pub mod redelivery;
pub mod repo_settings;
pub mod retention;
pub mod retry;
pub mod run_event;
pub mod runner;
pub mod safe_text;
pub mod sandbox;
pub mod server;
pub mod setup_store;
pub mod store;
pub mod telemetry;
pub mod trigger;
pub mod webhook;

/// Helpers for the crate's own unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    /// `../shared/fixtures` beside the repository (CI clones the repository with `shared/`
    /// beside it); `BACKSPACE_SHARED_DIR` overrides the `shared` folder.
    pub fn shared_fixtures_dir() -> PathBuf {
        std::env::var_os("BACKSPACE_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
            .join("fixtures")
    }

    pub fn shared_fixture(rel: &str) -> Vec<u8> {
        let path = shared_fixtures_dir().join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }
}
