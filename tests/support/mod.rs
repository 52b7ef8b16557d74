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
