//! The GitHub App client against the fake GitHub.
mod support;
