//! The part of a run that happens in the sandbox, shared by GitHub runs, API runs and the local
//! `backspace run`: the checkout goes in, the repository's network starts when it asks for one
//! (only through the egress proxy, to its `network.allow`), the setup commands run (then the
//! network stops when it says `setup_only`), the agent works, the test command runs, and the
//! working tree comes back out into a fresh directory. The sandbox is removed on every path.

use std::path::Path;
use std::time::Instant;

use crate::agent::{Agent, AgentOutcome, AgentTask};
use crate::egress::{self, Session};
use crate::repo_settings::RepoSettings;
use crate::run_event::{EventSender, RunEvent};
use crate::sandbox::{ExecOutcome, ExecOutput, HeldBack, Sandbox, SandboxError, Sandboxes};

use super::failure::{Cause, Failure, ADVICE_REPOSITORY, ADVICE_SANDBOX, ADVICE_SETUP};
use super::pr_body::TestResult;

/// What the sandbox phase needs.
pub struct Work<'a> {
    pub run_id: &'a str,
    /// The checkout copied into the sandbox (its `.git` included; the copy is thrown away).
    pub checkout: &'a Path,
    pub task: &'a AgentTask,
    pub settings: &'a RepoSettings,
    pub events: &'a EventSender,
}

/// What came out of it.
pub struct WorkResult {
    pub outcome: AgentOutcome,
    pub test: Option<TestResult>,
    /// The sandbox's working tree, without `.git`.
    pub tree: tempfile::TempDir,
    /// What copy-out did not bring back (links that leave the tree, refused entries): apply
    /// leaves those paths as the clone has them.
    pub held_back: Vec<HeldBack>,
    /// Time from asking for the sandbox to its being ready.
    pub sandbox_start: std::time::Duration,
    /// Connections the egress proxy refused.
    pub blocked: egress::Blocked,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the sandbox failed: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("the setup command `{command}` failed ({status}): {output}")]
    Setup {
        command: String,
        status: String,
        output: String,
    },
    #[error("could not make a directory for the sandbox's working tree: {0}")]
    TempDir(std::io::Error),
}

impl WorkError {
    /// Whether the repository's content (or what the agent made of it) is the problem, not the
    /// Docker engine or the image: too big for the sandbox's disk, too many files to copy out.
    pub fn is_repository_content(&self) -> bool {
        matches!(self, WorkError::Sandbox(e) if e.is_content())
    }
}

impl From<WorkError> for Failure {
    fn from(e: WorkError) -> Failure {
        match e {
            WorkError::Setup { .. } => Failure::new(Cause::Setup, e.to_string(), ADVICE_SETUP),
            e if e.is_repository_content() => {
                Failure::new(Cause::Repository, e.to_string(), ADVICE_REPOSITORY)
            }
            other => Failure::new(Cause::Sandbox, other.to_string(), ADVICE_SANDBOX),
        }
    }
}

/// How much of a command's output the events and the PR keep.
const EXCERPT_BYTES: usize = 4_000;

fn emit(events: &EventSender, e: RunEvent) {
    let _ = events.send(e);
}

fn status_of(out: &ExecOutput) -> String {
    match out.outcome {
        ExecOutcome::Exited => format!("exit {}", out.exit_code),
        other => other.to_string(),
    }
}

/// The end of a command's output, stdout then stderr.
fn tail(out: &ExecOutput) -> String {
    let mut text = out.stdout.clone();
    if !out.stderr.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&out.stderr);
    }
    if text.len() <= EXCERPT_BYTES {
        return text;
    }
    let mut start = text.len() - EXCERPT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut]\n{}", &text[start..])
}

fn tool_event(command: &str, out: &ExecOutput) -> RunEvent {
    RunEvent::Tool {
        name: "bash".into(),
        input: serde_json::json!({ "command": command }),
        output: tail(out),
        exit_code: Some(out.exit_code),
        duration_ms: Some(out.duration.as_millis() as u64),
    }
}

/// The repository's `setup` commands, in order; the first that fails ends the run.
async fn run_setup(sandbox: &Sandbox, w: &Work<'_>) -> Result<(), WorkError> {
    for command in &w.settings.setup {
        let what = format!("setup: `{command}`");
        emit(w.events, RunEvent::progress("sandbox", what));
        let out = sandbox.exec(sandbox.command(command.as_str())).await?;
        emit(w.events, tool_event(command, &out));
        if !out.success() {
            return Err(WorkError::Setup {
                command: command.clone(),
                status: status_of(&out),
                output: tail(&out),
            });
        }
    }
    Ok(())
}

/// The repository's `test` command, after the agent, when it has one.
async fn run_test(sandbox: &Sandbox, w: &Work<'_>) -> Result<Option<TestResult>, WorkError> {
    let Some(command) = &w.settings.test else {
        return Ok(None);
    };
    let what = format!("running `{command}`");
    emit(w.events, RunEvent::progress("checks", what));
    let out = sandbox.exec(sandbox.command(command.as_str())).await?;
    emit(w.events, tool_event(command, &out));
    Ok(Some(TestResult {
        command: command.clone(),
        passed: out.success(),
        summary: status_of(&out),
        output: tail(&out),
    }))
}

/// The repository's network, when its settings ask for one: through the egress proxy only.
async fn start_network(
    sandboxes: &Sandboxes,
    sandbox: &Sandbox,
    w: &Work<'_>,
) -> Result<Option<Session>, WorkError> {
    let allow = w.settings.network_allow();
    if allow.is_empty() {
        return Ok(None);
    }
    let plan = egress::Plan {
        allow,
        operator: sandboxes.settings().egress_allow.clone(),
        engine_addresses: sandboxes.engine_addresses().to_vec(),
        limits: egress::Limits::default(),
    };
    emit(w.events, egress::session::started_event(&plan));
    let session = Session::start(sandbox, plan, w.events.clone()).await?;
    Ok(Some(session))
}

/// Runs the sandbox phase. The agent's own failures are in the outcome; an error here means the
/// sandbox or a setup command failed, and no agent ran (or its work could not be copied out).
pub async fn work(
    sandboxes: &Sandboxes,
    agent: &Agent,
    w: Work<'_>,
) -> Result<WorkResult, WorkError> {
    emit(
        w.events,
        RunEvent::progress("sandbox", "starting the sandbox"),
    );
    let asked = Instant::now();
    let sandbox = sandboxes.create(w.run_id, w.checkout).await?;
    let sandbox_start = asked.elapsed();
    if let Some(m) = crate::metrics::global() {
        m.sandbox_started(sandbox_start);
    }
    emit(
        w.events,
        RunEvent::progress(
            "sandbox",
            format!("sandbox ready in {} ms", sandbox_start.as_millis()),
        ),
    );
    // From here the sandbox is removed on every path: `destroy` below, or its drop guard when
    // this future is dropped (cancellation).
    let result = async {
        let mut network = start_network(sandboxes, &sandbox, &w).await?;
        let mut blocked = egress::Blocked::default();
        run_setup(&sandbox, &w).await?;
        if !w.settings.agent_network() {
            if let Some(session) = network.take() {
                blocked = session.stop(&sandbox).await;
                emit(
                    w.events,
                    RunEvent::progress("sandbox", "setup done; network stopped"),
                );
            }
        }
        let outcome = agent.run(w.task, &sandbox, w.events).await;
        let test = run_test(&sandbox, &w).await?;
        if let Some(session) = network.take() {
            blocked = session.stop(&sandbox).await;
        }
        let tree = tempfile::tempdir().map_err(WorkError::TempDir)?;
        let copied = sandbox.copy_out_report(tree.path()).await?;
        Ok(WorkResult {
            outcome,
            test,
            tree,
            held_back: copied.held_back,
            sandbox_start,
            blocked,
        })
    }
    .await;
    if let Err(e) = sandbox.destroy().await {
        tracing::warn!(error = %e, "could not remove a sandbox; the reaper will");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_too_big_for_the_sandbox_is_the_repositorys_problem() {
        let too_big = WorkError::Sandbox(SandboxError::RepositoryTooLarge { limit: 1 << 30 });
        assert!(too_big.is_repository_content());
        let entries = WorkError::Sandbox(SandboxError::TooManyEntries { limit: 100_000 });
        assert!(entries.is_repository_content());
        let engine = WorkError::Sandbox(SandboxError::Gone("no such container".into()));
        assert!(!engine.is_repository_content());
        let image = WorkError::Sandbox(SandboxError::ImageMissing { image: "x".into() });
        assert!(!image.is_repository_content());
        assert!(too_big.to_string().contains("BACKSPACE_SANDBOX_DISK"));
        let failure = Failure::from(too_big);
        assert_eq!(failure.cause, Cause::Repository);
        assert_eq!(failure.advice, ADVICE_REPOSITORY);
        assert_eq!(Failure::from(engine).advice, ADVICE_SANDBOX);
    }
}
