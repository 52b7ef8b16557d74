//! Test support shared by the integration tests: fakes of the services that cannot be reached
//! from here (GitHub, Anthropic, OpenAI-compatible), speaking their real wire formats, and
//! helpers for the real ones (Docker, Postgres). Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod bot;
pub mod browser;
pub mod db;
pub mod docker;
pub mod docker_tls;
pub mod fake_anthropic;
pub mod fake_github;
pub mod fake_openai;
pub mod fixtures;
pub mod tester;
pub mod webhooks;

/// Runs `f`, failing the test when it takes longer than `secs` seconds.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs}s"))
}

/// A run id of its own for a test's sandbox: `t-<name>-<8 hex>`.
pub fn run_id(name: &str) -> String {
    format!(
        "t-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
