//! Hardened Docker containers through bollard: the repository copied in and out through the
//! archive API, one exec per command, limits, and a reaper for containers left behind.
//!
//! [`Sandboxes`] is the engine connection plus settings; [`Sandboxes::create`] gives a
//! [`Sandbox`]: one idle container for one run. Every path out of a `Sandbox` removes its
//! container: [`Sandbox::destroy`], dropping it (panic, cancellation), the run's time limit,
//! and, after a crash, [`Sandboxes::reap`] at the next start-up.
//!
//! A run, in order:
//! 1. `Sandboxes::connect(settings)` once per process, then `reap()` and `spawn_reaper(..)`;
//!    `warm_up()` when `settings.warm_pool > 0`; `shutdown()` at the end.
//! 2. `create(run_id, checkout)`: the checkout (working tree and `.git`) goes into
//!    `/workspace`. For a repository's `setup` commands, `create_with(.., CreateOptions {
//!    network: true })`, run them, then `cut_network()` before the agent's first command.
//! 3. `exec(sandbox.command("..."))`, `read_file`, `write_file`: as the agent (uid 1000), one
//!    at a time. After each command every process it left is killed. The outcome says whether
//!    it exited, timed out, ran out of memory or hit the process limit.
//! 4. `copy_out(empty_dir)`: the working tree without `.git`; links that would resolve outside
//!    the directory are dropped. Then `destroy()`.
//!
//! Guarantees: no network unless asked (and cut after), no capabilities, no-new-privileges,
//! the default seccomp profile, read-only root with writable `/workspace` (a volume) and
//! tmpfs `/tmp` (also HOME), memory without swap, CPU and process limits, and an
//! environment of our own ([`SANDBOX_ENV`]): nothing from the host ever enters.

mod archive;
mod container;
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
    pack_dir, resolves_inside, unpack_tree, HeldBack, HoldReason, Limits, OverLimit, Unpacked,
};
pub use container::{LABEL_CREATED, LABEL_INSTANCE, LABEL_RUN, SANDBOX_ENV};
pub use error::SandboxError;
pub use exec::{ExecOutcome, ExecOutput, ExecSpec, WORKSPACE};
pub use handle::Sandbox;
pub use output::{CappedOutput, Captured};
pub use sandboxes::{CreateOptions, Sandboxes};
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
