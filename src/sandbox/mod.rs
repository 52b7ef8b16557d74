//! Hardened Docker containers through bollard: the repository copied in and out through `tar`
//! in an exec, one exec per command, limits (memory, CPU, processes, disk), and a reaper for
//! containers left behind.
//!
//! [`Sandboxes`] is the engine connection plus settings; [`Sandboxes::create`] gives a
//! [`Sandbox`]: one idle container for one run. Every path out of a `Sandbox` removes its
//! container: [`Sandbox::destroy`], dropping it (panic, cancellation), the run's time limit,
//! and, after a crash, [`Sandboxes::reap`] at the next start-up.
//!
//! A run, in order:
//! 1. `Sandboxes::connect(settings)` once per process, then `reap()` and `spawn_reaper(..)`;
//!    `warm_up()` when `settings.warm_pool > 0`; `shutdown()` at the end.
//! 2. `create(run_id, checkout)`: the checkout (working tree and `.git`, links as links, even
//!    those that leave it) goes into `/workspace`; one too big for the disk is
//!    [`SandboxError::RepositoryTooLarge`]. The container never has a network; a repository
//!    that asks for one gets the egress proxy (`crate::egress`), whose forwarder runs in an
//!    [`Sandbox::attach`]ed exec and whose variables go in with [`Sandbox::set_command_env`].
//! 3. `exec(sandbox.command("..."))`, `read_file`, `write_file`: as the agent (uid 1000), one
//!    at a time. After each command every process it left is killed. A command that stays at
//!    the process limit, or prints nothing for its idle time, is stopped. The outcome says
//!    whether it exited, timed out, ran out of memory, hit the process limit or went idle, and
//!    the agent reads why on stderr.
//! 4. `copy_out_report(empty_dir)`: the working tree without `.git`, within byte and entry
//!    limits; what did not come back (links that leave the tree, names git takes for `.git`,
//!    ...) is in its `held_back`, for apply to leave as it was. Then `destroy()`.
//!
//! Guarantees: no network interface but loopback, no capabilities, no-new-privileges,
//! the default seccomp profile, read-only root with writable tmpfs `/workspace` and `/tmp`
//! (also HOME) that together hold at most the disk cap, memory without swap, CPU and process
//! limits, PID 1 out of the agent's reach, and an environment of our own ([`SANDBOX_ENV`]):
//! nothing from the host ever enters. Command output is redacted of credential-shaped text.

mod archive;
mod container;
mod engine;
mod error;
mod exec;
pub mod git_path;
mod handle;
mod output;
mod pool;
mod reaper;
mod sandboxes;
mod settings;
mod tar_stream;

pub use archive::{
    pack_dir, pack_into, resolves_inside, unpack_tree, HeldBack, HoldReason, Limits, OverLimit,
    Unpacked,
};
pub use container::{LABEL_CREATED, LABEL_INSTANCE, LABEL_RUN, SANDBOX_ENV};
pub use engine::{DockerEndpoint, EngineError, TlsFiles};
pub use error::SandboxError;
pub use exec::{ExecOutcome, ExecOutput, ExecSpec, WORKSPACE};
pub use handle::{ExecPipe, RunningCommand, Sandbox};
pub use output::{CappedOutput, Captured};
pub use sandboxes::Sandboxes;
pub use settings::{new_instance_id, parse_secs, parse_size, SandboxSettings, DEFAULT_IMAGE};

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync + 'static>() {}

    #[test]
    fn handles_can_be_shared_across_tasks() {
        shareable::<Sandboxes>();
        shareable::<Sandbox>();
        shareable::<SandboxError>();
    }
}
