//! Workers and the phases of one run (DESIGN §2): a worker claims a job under a lease, the run
//! goes through its phases (`run`), the sandbox part of it is shared with the local CLI
//! (`work`), and the host applies what came back (`apply`) and commits and pushes it (`git`).
//! Every step is a run event, stored and shown by the `reporter`.

pub mod apply;
pub mod git;
pub mod pr_body;
mod quick;
pub mod reporter;
mod run;
mod services;
pub mod work;
mod worker;

pub use services::{LinkSigner, RunnerSettings, Services};
pub use worker::{Interrupt, JobEnd, Workers};
