//! Workers and the phases of one run (DESIGN §2). A worker claims a job under a lease
//! (`worker`; crashed instances' jobs come back through `recover`) and runs it: a quick job
//! (`quick`: help, cancel, a usage error) or an agent run, which goes through the phases of
//! `pipeline`:
//!
//! gate → announce → prepare → work → deliver → report
//!
//! `gate` checks the requester's permission; `announce` reacts and posts the progress comment
//! (or finds what `acknowledge`, the lane that answers jobs waiting for a worker, made);
//! `prepare` reads the repository's settings, plans the branch, clones it on the host and
//! writes the agent's task (`task`); `work` runs the sandbox (shared with `backspace run`);
//! `deliver` applies the sandbox's tree (`apply`), commits and pushes (`git`) and opens the pull
//! request (`pr_body`); `report` turns any outcome, failures (`failure`) and interrupts
//! included, into the closing events, comment, reaction and job result. Every step is a run
//! event, stored and shown by the `reporter`.

mod acknowledge;
mod announce;
pub mod apply;
mod check_run;
pub mod deliver;
mod denials;
pub mod failure;
mod gate;
pub mod git;
pub mod instructions;
mod label;
mod pipeline;
pub mod pr_body;
pub mod prepare;
mod quick;
mod recover;
mod report;
pub mod reporter;
mod services;
mod task;
pub mod work;
mod worker;

pub use failure::{Cause, Failure};
pub use gate::denied_reply;
pub use recover::given_up_comment;
pub use services::{LinkSigner, RunnerSettings, Services};
pub use worker::{Interrupt, JobEnd, Workers};
