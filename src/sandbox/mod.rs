//! Hardened Docker containers through bollard: the repository copied in and out through the
//! archive API, one exec per command, limits, and a reaper for containers left behind.
//!
//! [`Sandboxes`] is the engine connection plus settings; [`Sandboxes::create`] gives a
//! [`Sandbox`]: one idle container for one run. Every path out of a `Sandbox` removes its
//! container: [`Sandbox::destroy`], dropping it (panic, cancellation), the run's time limit,
//! and, after a crash, [`Sandboxes::reap`] at the next start-up.

mod archive;
mod container;
mod error;
mod exec;
mod handle;
mod output;
mod pool;
mod reaper;
mod sandboxes;
mod settings;

pub use archive::{pack_dir, resolves_inside, unpack_tree, Unpacked};
pub use container::{LABEL_CREATED, LABEL_INSTANCE, LABEL_RUN, SANDBOX_ENV};
pub use error::SandboxError;
pub use exec::{ExecOutcome, ExecOutput, ExecSpec, WORKSPACE};
pub use handle::Sandbox;
pub use output::{CappedOutput, Captured};
pub use sandboxes::{CreateOptions, Sandboxes};
pub use settings::{new_instance_id, SandboxSettings, DEFAULT_IMAGE};
