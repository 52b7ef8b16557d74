//! The egress proxy: the only way from a sandbox to the network, for repositories whose
//! `.github/backspace.yml` asks for `network.allow` (within the operator's
//! `BACKSPACE_EGRESS_ALLOW`). The container itself keeps `network: none`: a small forwarder in
//! the sandbox (Python, [`mux::FORWARDER`]) listens on its own loopback and carries each
//! connection over one exec's stdio through the Docker API, so it works the same on a local and
//! a remote engine. Backspace reads the request (`CONNECT host:port`, or plain HTTP with an
//! absolute URI), checks the host and port against the repository's list, resolves the name
//! itself, refuses loopback, private, link-local and this host's addresses unless the operator
//! listed them by address, and opens the connection. No TLS is intercepted and no credential
//! added; logs hold host and port only. Every refusal is answered `403` with a reason the agent
//! reads, and reported as an `egress_blocked` run event with the settings change that would
//! allow it.
//!
//! Pure: [`allowlist`], [`address`], [`request`], [`mux`] (framing), [`blocked`] (counting and
//! saying). I/O: [`proxy`] (one connection), [`link`] (the stream's frames), [`session`] (a
//! run's network, started and stopped).

pub mod address;
pub mod allowlist;
pub mod blocked;
mod link;
pub mod mux;
pub mod proxy;
pub mod request;
pub mod session;

pub use allowlist::{Allowlist, Entry, EntryError};
pub use blocked::Blocked;
pub use proxy::{Limits, Policy, Proxy, Reason, Refusal};
pub use session::{proxy_env, Plan, Session, FORWARDER_PORT};

/// Runs `link` over any byte stream pair (tests drive the forwarder as a local process).
pub use link::run as run_link;
