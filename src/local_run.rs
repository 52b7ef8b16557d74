//! `backspace run --repo PATH [--branch NAME] "<prompt>"`: the same agent and sandbox against a
//! local checkout, no GitHub. The flow is the server's (DESIGN §2): the host makes its own clean
//! clone of HEAD (so ignored files such as `.env` never reach the sandbox), the sandbox gets a
//! copy of it, the working tree that comes back is applied onto the host's clone under the same
//! policy, committed there on a new branch, and that branch is fetched into the user's
//! repository. The user's working tree and current branch are never touched.
//!
//! Exit codes: 0 a commit on a new branch, 1 the run failed, 2 bad usage or input (also clap's
//! own), 3 the agent answered without changing a file.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use clap::Args;

use crate::agent::{Agent, AgentConfig, AgentTask};
use crate::config::ModelArgs;
use crate::repo_settings::RepoSettings;
use crate::run_event::{EventSender, RunEvent, RunStatus, Usage};
use crate::runner::apply::{Policy, Refusal};
use crate::runner::deliver::{self, Verdict};
use crate::runner::git::{self, Identity, Repo};
use crate::runner::instructions;
use crate::runner::prepare::{self, Workdir};
use crate::runner::work::{self, Work};
use crate::runner::{Cause, Failure};
use crate::sandbox::Sandboxes;

/// The flags and environment of `backspace run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The local git checkout to work on.
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// The new branch for the commit (default: backspace/<slug of the prompt>).
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// What to do.
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sandbox image.
    #[arg(
        long,
        env = "BACKSPACE_SANDBOX_IMAGE",
        default_value = "backspace-sandbox:latest"
    )]
    pub sandbox_image: String,
    /// Print each event as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a local run ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalOutcome {
    /// A commit on a new branch of the user's repository.
    Committed {
        branch: String,
        commit: String,
        files: Vec<String>,
        refused: Vec<Refusal>,
        summary: String,
    },
    /// The agent answered without changing a file.
    Answered { answer: String },
}

/// How a local run ended badly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// Bad input: not a repository, a dirty tree, a branch that exists (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The run failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Invalid repository settings are bad input (exit 2); anything else, a failing setup command
/// included, is a failed run (exit 1).
impl From<Failure> for LocalError {
    fn from(f: Failure) -> LocalError {
        match f.cause {
            Cause::Settings => LocalError::Usage(f.what),
            _ => LocalError::Failed(f.what),
        }
    }
}

impl LocalError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LocalError::Usage(_) => 2,
            LocalError::Failed(_) => 1,
        }
    }
}

impl LocalOutcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            LocalOutcome::Committed { .. } => 0,
            LocalOutcome::Answered { .. } => 3,
        }
    }
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct LocalRequest {
    /// The repository's top level.
    pub repo: PathBuf,
    pub branch: String,
    pub prompt: String,
}

/// Runs git in `dir` with the host's hygiene (`git::command`: hooks and fsmonitor off, the
/// local transport only, none of the shell's `GIT_*`), since the user's repository is trusted
/// less than nothing here: its config may name programs. The user's own global configuration
/// still applies (their identity is there).
async fn git_in(dir: &Path, args: &[&str]) -> Result<String, String> {
    git_bytes(dir, args)
        .await
        .map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// Like [`git_in`], but the output's bytes (a file at a revision need not be text).
async fn git_bytes(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let mut cmd = git::command(Some("file"));
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home).env_remove("GIT_CONFIG_GLOBAL");
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Checks the repository, the tree and the branch; picks a free branch name when none is given.
pub async fn prepare(
    repo: &Path,
    branch: Option<&str>,
    prompt: &str,
) -> Result<LocalRequest, LocalError> {
    let prompt = prompt.trim();
    if prompt.is_empty() {
        return Err(LocalError::Usage("the prompt is empty".into()));
    }
    if !repo.is_dir() {
        return Err(LocalError::Usage(format!(
            "{} is not a directory",
            repo.display()
        )));
    }
    let top = git_in(repo, &["rev-parse", "--show-toplevel"])
        .await
        .map_err(|_| {
            LocalError::Usage(format!("{} is not inside a git checkout", repo.display()))
        })?;
    let top = PathBuf::from(top.trim());
    git_in(&top, &["rev-parse", "--verify", "--quiet", "HEAD"])
        .await
        .map_err(|_| LocalError::Usage("the repository has no commit yet".into()))?;
    let dirty = git_in(&top, &["status", "--porcelain", "--untracked-files=no"])
        .await
        .map_err(LocalError::Failed)?;
    if !dirty.trim().is_empty() {
        return Err(LocalError::Usage(
            "the checkout has uncommitted changes: commit or stash them first".into(),
        ));
    }
    let exists = |name: String| {
        let top = top.clone();
        async move {
            git_in(
                &top,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{name}"),
                ],
            )
            .await
            .is_ok()
        }
    };
    let branch = match branch {
        Some(b) => {
            if git_in(&top, &["check-ref-format", "--branch", b])
                .await
                .is_err()
            {
                return Err(LocalError::Usage(format!(
                    "{b:?} is not a valid branch name"
                )));
            }
            if exists(b.to_owned()).await {
                return Err(LocalError::Usage(format!(
                    "the branch {b} exists already: pick another --branch"
                )));
            }
            b.to_owned()
        }
        None => {
            let base = git::branch_name(None, prompt);
            let mut name = base.clone();
            let mut n = 2;
            while exists(name.clone()).await {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        }
    };
    Ok(LocalRequest {
        repo: top,
        branch,
        prompt: prompt.to_owned(),
    })
}

/// The repository's `.github/backspace.yml` at HEAD, if any.
async fn settings_at_head(repo: &Path) -> Result<RepoSettings, LocalError> {
    let bytes = git_bytes(repo, &["show", "HEAD:.github/backspace.yml"])
        .await
        .ok();
    prepare::parse_settings(bytes).map_err(LocalError::from)
}

/// Who commits: the repository's configured user, or Backspace.
async fn identity(repo: &Path) -> Identity {
    let get = |key: &'static str| async move {
        git_in(repo, &["config", key])
            .await
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Identity {
        name: get("user.name").await.unwrap_or_else(|| "Backspace".into()),
        email: get("user.email")
            .await
            .unwrap_or_else(|| "backspace@localhost".into()),
    }
}

/// The run itself, after [`prepare`]. Events go to `events`, ending with `complete`.
pub async fn run_local(
    sandboxes: &Sandboxes,
    agent: &Agent,
    req: &LocalRequest,
    events: &EventSender,
) -> Result<LocalOutcome, LocalError> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let _ = events.send(RunEvent::Start {
        run_id: run_id.clone(),
        repo: Some(req.repo.display().to_string()),
        prompt: Some(req.prompt.clone()),
    });
    let result = run_inner(sandboxes, agent, req, events, &run_id).await;
    let (status, usage, cost) = match &result {
        Ok((LocalOutcome::Committed { .. }, u, c)) => (RunStatus::Succeeded, *u, *c),
        Ok((LocalOutcome::Answered { .. }, u, c)) => (RunStatus::Answered, *u, *c),
        Err(e) => {
            let _ = events.send(RunEvent::Error {
                message: e.to_string(),
            });
            (RunStatus::Failed, Usage::default(), 0.0)
        }
    };
    let _ = events.send(RunEvent::Complete {
        run_id,
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        usage,
        cost_usd: cost,
    });
    result.map(|(o, _, _)| o)
}

async fn run_inner(
    sandboxes: &Sandboxes,
    agent: &Agent,
    req: &LocalRequest,
    events: &EventSender,
    run_id: &str,
) -> Result<(LocalOutcome, Usage, f64), LocalError> {
    let settings = settings_at_head(&req.repo).await?;
    prepare::check_network(&sandboxes.settings().egress_allow, &settings)
        .map_err(LocalError::from)?;
    let workdir = prepare::workdir()?;
    let clone = clean_clone(req, &workdir, events).await?;
    let mentioned = instructions::mentioned_paths(&req.prompt);
    let concerns = instructions::existing(&workdir.checkout, mentioned);
    let found = instructions::read(&workdir.checkout, &concerns);
    let task = AgentTask {
        repo: req.repo.display().to_string(),
        issue: None,
        request: req.prompt.clone(),
        repo_instructions: settings.instructions.clone(),
        test_command: settings.test.clone(),
        instruction_files: found.files,
        other_instruction_files: found.others,
    };
    let work = Work {
        run_id,
        checkout: &workdir.checkout,
        task: &task,
        settings: &settings,
        events,
    };
    let worked = work::work(sandboxes, agent, work)
        .await
        .map_err(|e| LocalError::from(Failure::from(e)))?;
    let applied = deliver::apply(&clone, &worked, &Policy::default()).await?;
    let outcome = worked.outcome;
    let usage = outcome.usage;
    let cost = outcome.cost_usd.unwrap_or(0.0);
    match deliver::verdict(&outcome, &applied) {
        Verdict::AgentFailed(m) => return Err(deliver::agent_failed(&m).into()),
        Verdict::Answer => {
            let answer = outcome.answer();
            return Ok((LocalOutcome::Answered { answer }, usage, cost));
        }
        Verdict::Commit => {}
    }
    let n = applied.files.len();
    let _ = events.send(RunEvent::progress(
        "commit",
        format!("committing {n} files on {}", req.branch),
    ));
    let commit = deliver::commit(&clone, &outcome, &identity(&req.repo).await, None).await?;
    fetch_branch(req, &workdir).await?;
    let committed = LocalOutcome::Committed {
        branch: req.branch.clone(),
        commit,
        files: applied.files,
        refused: applied.refused,
        summary: outcome.summary,
    };
    Ok((committed, usage, cost))
}

/// The host's own clone of HEAD, on the new branch: ignored and untracked files stay behind.
async fn clean_clone(
    req: &LocalRequest,
    workdir: &Workdir,
    events: &EventSender,
) -> Result<Repo, LocalError> {
    let source = req.repo.to_string_lossy().into_owned();
    let _ = events.send(RunEvent::progress(
        "clone",
        "copying HEAD into a clean clone",
    ));
    let clone = Repo::clone(&source, &workdir.checkout, None, None)
        .await
        .map_err(|e| LocalError::Failed(format!("cloning the checkout: {e}")))?;
    let head = git_in(&req.repo, &["rev-parse", "HEAD"])
        .await
        .map_err(LocalError::Failed)?;
    git_in(
        &workdir.checkout,
        &["checkout", "--quiet", "-B", &req.branch, head.trim()],
    )
    .await
    .map_err(|e| LocalError::Failed(format!("creating the branch: {e}")))?;
    Ok(clone)
}

/// The user's repository fetches the branch from the host's clone; the sandbox never wrote a
/// `.git` either of them reads.
async fn fetch_branch(req: &LocalRequest, workdir: &Workdir) -> Result<(), LocalError> {
    let refspec = format!("refs/heads/{0}:refs/heads/{0}", req.branch);
    let from = workdir.checkout.to_string_lossy();
    git_in(
        &req.repo,
        &["fetch", "--quiet", "--no-tags", &from, &refspec],
    )
    .await
    .map(drop)
    .map_err(|e| LocalError::Failed(format!("bringing the branch into the checkout: {e}")))
}

/// Pure: one event as a line of text for the terminal (`None`: nothing to print).
pub fn event_line(e: &RunEvent) -> Option<String> {
    let one_line = |s: &str, n: usize| {
        let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.chars().count() > n {
            format!("{}…", flat.chars().take(n).collect::<String>())
        } else {
            flat
        }
    };
    match e {
        RunEvent::Start { repo, .. } => Some(format!(
            "▶ run on {}",
            repo.as_deref().unwrap_or("the checkout")
        )),
        RunEvent::Progress { stage, message, .. } => Some(format!("· {stage}: {message}")),
        RunEvent::Tool {
            name,
            input,
            exit_code,
            ..
        } => {
            let what = match (input.get("command"), input.get("path")) {
                (Some(c), Some(p)) => {
                    format!("{} {}", c.as_str().unwrap_or(""), p.as_str().unwrap_or(""))
                }
                (Some(c), None) => c.as_str().unwrap_or("").to_owned(),
                _ => input.to_string(),
            };
            let code = exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            Some(format!("  $ {name}: {}{code}", one_line(&what, 100)))
        }
        RunEvent::AiMessage { text } => Some(format!("  {}", one_line(text, 300))),
        RunEvent::PrCreated { pr_url, .. } => Some(format!("→ {pr_url}")),
        RunEvent::Error { message } => Some(format!("✗ {message}")),
        RunEvent::EgressBlocked {
            host, port, count, ..
        } => Some(format!("🚫 network: {host}:{port} refused ({count}×)")),
        RunEvent::Complete {
            status,
            duration_ms,
            usage,
            cost_usd,
            ..
        } => Some(format!(
            "■ {} in {:.1} s · {} input / {} output tokens · ${cost_usd:.4}",
            serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            *duration_ms as f64 / 1000.0,
            usage.total_input(),
            usage.output_tokens
        )),
    }
}

/// Prints events as they come: lines, with the latest progress kept on one line that is
/// rewritten on a terminal; JSON lines with `json`.
pub async fn print_events(mut rx: tokio::sync::mpsc::UnboundedReceiver<RunEvent>, json: bool) {
    let tty = std::io::stderr().is_terminal() && !json;
    let mut pending_progress = false;
    while let Some(e) = rx.recv().await {
        let e = crate::redact::redact_event(&e);
        let mut out = std::io::stderr().lock();
        if json {
            if let Ok(line) = serde_json::to_string(&e) {
                let _ = writeln!(out, "{line}");
            }
            continue;
        }
        let Some(line) = event_line(&e) else { continue };
        if tty && matches!(e, RunEvent::Progress { .. }) {
            // The progress line is rewritten in place until something else is printed.
            let _ = write!(out, "\r\x1b[2K{line}");
            pending_progress = true;
        } else {
            if pending_progress {
                let _ = writeln!(out);
                pending_progress = false;
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    if pending_progress {
        let _ = writeln!(std::io::stderr());
    }
}

/// `backspace run`: returns the process exit code.
pub async fn main(args: RunArgs) -> u8 {
    let req = match prepare(&args.repo, args.branch.as_deref(), &args.prompt).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backspace run: {e}");
            return e.exit_code();
        }
    };
    args.model.remember_secrets();
    let model = match args.model.provider() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("backspace run: {e}");
            return 2;
        }
    };
    let sandboxes = match Sandboxes::connect(crate::sandbox::SandboxSettings {
        image: args.sandbox_image.clone(),
        ..crate::sandbox::SandboxSettings::default()
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backspace run: cannot reach the Docker engine (DOCKER_HOST, or the local socket): {e}");
            return 1;
        }
    };
    let agent = Agent::new(model, AgentConfig::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(print_events(rx, args.json));
    let result = run_local(&sandboxes, &agent, &req, &tx).await;
    drop(tx);
    let _ = printer.await;
    match result {
        Ok(outcome) => {
            match &outcome {
                LocalOutcome::Committed {
                    branch,
                    commit,
                    files,
                    refused,
                    ..
                } => {
                    println!(
                        "Committed {} on branch {branch} ({} files changed): git switch {branch}",
                        &commit[..commit.len().min(12)],
                        files.len()
                    );
                    for r in refused {
                        println!("Refused {}: {}", r.path, r.reason);
                    }
                }
                LocalOutcome::Answered { answer } => {
                    println!("{answer}");
                    println!("(no file changed; no branch made)");
                }
            }
            outcome.exit_code()
        }
        Err(e) => {
            eprintln!("backspace run: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_events_print_as_one_command_line() {
        let e = RunEvent::Tool {
            name: "bash".into(),
            input: json!({ "command": "cargo test\n  --quiet" }),
            output: "ok".into(),
            exit_code: Some(1),
            duration_ms: None,
        };
        assert_eq!(
            event_line(&e).unwrap(),
            "  $ bash: cargo test --quiet (exit 1)"
        );
        let e = RunEvent::Tool {
            name: "str_replace_based_edit_tool".into(),
            input: json!({ "command": "view", "path": "src/a.rs" }),
            output: String::new(),
            exit_code: None,
            duration_ms: None,
        };
        assert_eq!(
            event_line(&e).unwrap(),
            "  $ str_replace_based_edit_tool: view src/a.rs"
        );
    }

    #[test]
    fn exit_codes_say_how_it_ended() {
        assert_eq!(LocalError::Usage("x".into()).exit_code(), 2);
        assert_eq!(LocalError::Failed("x".into()).exit_code(), 1);
        assert_eq!(
            LocalOutcome::Answered {
                answer: String::new()
            }
            .exit_code(),
            3
        );
    }
}
