//! Workers and the phases of one run. Host-side git lives here too: the host clones, commits and
//! pushes in its own clean clone, never in a directory the sandbox wrote.

pub mod apply;
pub mod git;
