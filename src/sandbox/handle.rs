//! One run's container as callers hold it: commands, files, copy out, an attached exec (the
//! egress forwarder's), and
//! removal on every way out (destroy, drop, the run's time limit).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::archive::{self, Limits};
use super::container::{self, AGENT_USER};
use super::error::SandboxError;
use super::exec::{self, Counters, ExecOutcome, ExecOutput, ExecSpec, WORKSPACE};
use super::output::CappedOutput;
use super::settings::SandboxSettings;
use super::tar_stream;

/// Time allowed past a command's own limit before the host gives up on it.
const HOST_GRACE: Duration = Duration::from_secs(10);
/// Time limit of the small helper execs (files, counters, kills).
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);
/// When the process count of a running command starts being watched.
const PIDS_WATCH_AFTER: Duration = Duration::from_secs(1);
/// How long the output may go on after a command was stopped.
const STOP_DRAIN: Duration = Duration::from_secs(10);

/// One run's container. Commands run one at a time. Dropped without
/// [`Sandbox::destroy`], it still removes its container (in the background).
pub struct Sandbox {
    docker: Docker,
    id: String,
    run_id: String,
    run_timeout: Duration,
    deadline: Instant,
    max_file_bytes: u64,
    max_copy_out_bytes: u64,
    max_copy_out_entries: u64,
    command_timeout: Duration,
    command_idle: Duration,
    pids_limit: i64,
    output_cap: usize,
    /// Counters after the last command; the lock also keeps commands one at a time, which
    /// the wrapper's `kill -1` relies on.
    counters: Mutex<Counters>,
    expired: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    removed: bool,
    /// Variables every command gets besides the container's own (the egress proxy's).
    command_env: std::sync::Mutex<Vec<String>>,
    /// The command running now, for whoever reports what it did (the egress proxy's refusals).
    running: RunningCommand,
}

/// The command a sandbox is running now, readable from another task.
#[derive(Debug, Clone, Default)]
pub struct RunningCommand(Arc<std::sync::Mutex<Option<String>>>);

impl RunningCommand {
    pub fn get(&self) -> Option<String> {
        self.0.lock().map(|c| c.clone()).unwrap_or(None)
    }

    fn set(&self, command: Option<String>) {
        if let Ok(mut c) = self.0.lock() {
            *c = command;
        }
    }
}

/// Both ends of a long-lived exec's stdio: its stdout as a byte stream, and its stdin.
pub struct ExecPipe {
    pub stdout:
        std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>,
    pub stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.id)
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl Sandbox {
    pub(super) fn new(
        docker: Docker,
        id: String,
        run_id: &str,
        settings: &SandboxSettings,
    ) -> Sandbox {
        Sandbox {
            docker,
            id,
            run_id: run_id.to_string(),
            run_timeout: settings.run_timeout,
            deadline: Instant::now() + settings.run_timeout,
            max_file_bytes: settings.max_file_bytes,
            max_copy_out_bytes: settings.max_copy_out_bytes,
            max_copy_out_entries: settings.max_copy_out_entries,
            command_timeout: settings.command_timeout,
            command_idle: settings.command_idle,
            pids_limit: settings.pids_limit,
            output_cap: settings.output_cap,
            counters: Mutex::new(Counters::default()),
            expired: Arc::new(AtomicBool::new(false)),
            watchdog: None,
            removed: false,
            command_env: std::sync::Mutex::new(Vec::new()),
            running: RunningCommand::default(),
        }
    }

    /// Sets the variables every later command gets besides the container's own (`NAME=value`;
    /// nothing secret: commands print their environment).
    pub fn set_command_env(&self, env: Vec<String>) {
        if let Ok(mut e) = self.command_env.lock() {
            *e = env;
        }
    }

    /// What reads the command running now.
    pub fn running_command(&self) -> RunningCommand {
        self.running.clone()
    }

    /// Starts `argv` as PID 1's user (not the agent's, so the agent's `kill -1` after each
    /// command spares it) with its stdin and stdout attached for as long as the caller holds
    /// them; stderr goes to the debug log. Dropping the stdin ends its input.
    pub async fn attach(&self, argv: Vec<String>) -> Result<ExecPipe, SandboxError> {
        self.check_run_limit()?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(argv),
            user: Some(container::IDLE_USER.to_string()),
            working_dir: Some("/".to_string()),
            ..Default::default()
        };
        let Attached { output, input, .. } = self.start_attached(config, 256 * 1024).await?;
        let stdout = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(LogOutput::StdErr { message }) => {
                    let text = String::from_utf8_lossy(&message);
                    tracing::debug!(stderr = %text.trim_end(), "attached exec wrote to stderr");
                    None
                }
                Ok(_) => None,
                Err(e) => Some(Err(std::io::Error::other(e))),
            }
        });
        Ok(ExecPipe {
            stdout: Box::pin(stdout),
            stdin: input,
        })
    }

    /// Removes the container when the run's time limit is over, whatever the caller does.
    pub(super) fn arm_run_limit(&mut self) {
        let docker = self.docker.clone();
        let id = self.id.clone();
        let expired = self.expired.clone();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let watchdog = async move {
            tokio::time::sleep_until(deadline).await;
            expired.store(true, Ordering::SeqCst);
            tracing::warn!(container = %id, "run time limit reached: removing its sandbox");
            if let Err(e) = container::remove(&docker, &id).await {
                tracing::warn!(container = %id, error = %e, "could not remove an expired sandbox");
            }
        };
        // The run's own span: the watchdog's lines belong to the run that armed it.
        self.watchdog = Some(tokio::spawn(watchdog.in_current_span()));
    }

    /// A command with this sandbox's default time limit, idle limit and output cap (from its
    /// settings).
    pub fn command(&self, command: impl Into<String>) -> ExecSpec {
        ExecSpec::new(command)
            .timeout(self.command_timeout)
            .idle(self.command_idle)
            .output_cap(self.output_cap)
    }

    /// When the run's time limit is over and the container goes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn check_run_limit(&self) -> Result<(), SandboxError> {
        if self.expired.load(Ordering::SeqCst) || Instant::now() >= self.deadline {
            return Err(SandboxError::RunTimeLimit {
                limit: self.run_timeout,
            });
        }
        Ok(())
    }

    /// Runs one command. A command that outlives its limit, prints nothing for its idle time
    /// (the sandbox's `command_idle` unless the spec says), or stays at the process limit is
    /// killed with everything it started; so is anything a finished command left running in
    /// the background. Output that looks like a credential is redacted.
    pub async fn exec(&self, spec: ExecSpec) -> Result<ExecOutput, SandboxError> {
        self.check_run_limit()?;
        let mut counters = self.counters.lock().await;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = spec.timeout.min(remaining);
        let workdir =
            exec::resolve_workdir(spec.workdir.as_deref()).map_err(SandboxError::Invalid)?;
        let marker = format!("backspace-exit-{}", uuid::Uuid::new_v4().simple());
        let config = ExecConfig {
            // For the wrapper's stopper; the command itself reads /dev/null.
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(exec::wrapped_command(&marker, timeout, &spec.command)),
            user: Some(AGENT_USER.to_string()),
            working_dir: Some(workdir),
            env: self
                .command_env
                .lock()
                .ok()
                .map(|e| e.clone())
                .filter(|e| !e.is_empty()),
            ..Default::default()
        };
        let started_at = Instant::now();
        let watch = Watch {
            idle: spec.idle.unwrap_or(self.command_idle),
            pids_limit: self.pids_limit,
        };
        self.running.set(Some(spec.command.clone()));
        let result = self
            .run_exec(
                config,
                timeout + HOST_GRACE,
                spec.output_cap,
                None,
                Some(watch),
            )
            .await;
        self.running.set(None);
        let run = match result {
            Ok(run) => run,
            Err(e) => {
                self.check_run_limit()?;
                return Err(e);
            }
        };
        let elapsed = started_at.elapsed();
        let mut stdout = run.stdout;
        let mut stderr = run.stderr;
        let trailer = stderr
            .take_trailer(&format!("{marker} "))
            .and_then(|t| exec::parse_trailer(&t));
        if run.host_timed_out {
            // The wrapper itself did not finish: kill what the agent has from another exec.
            self.kill_all_detached().await;
        }
        self.check_run_limit()?;
        let exit_code = match trailer {
            Some(t) => t.exit_code,
            // Only asked when the wrapper could not say (it saves a round trip otherwise).
            None if run.host_timed_out => -1,
            None => self.exit_code(&run.exec_id).await.unwrap_or(-1),
        };
        let trailer = match trailer {
            Some(t) => Some(t),
            // The wrapper was killed (by the OOM killer, say): read the counters directly.
            None => self.read_counters(exit_code).await,
        };
        let outcome = match run.stopped {
            Some(Stop::Idle) => ExecOutcome::Idle,
            Some(Stop::ProcessLimit) => ExecOutcome::ProcessLimit,
            None if run.host_timed_out => ExecOutcome::TimedOut,
            None => exec::classify(exit_code, elapsed, timeout, *counters, trailer),
        };
        if let Some(t) = trailer {
            if let Some(n) = t.oom_kills {
                counters.oom_kills = n;
            }
            if let Some(n) = t.pids_max_hits {
                counters.pids_max_hits = n;
            }
        }
        let out = std::mem::replace(&mut stdout, CappedOutput::new(0)).finish();
        let err = std::mem::replace(&mut stderr, CappedOutput::new(0)).finish();
        let mut err_text = crate::redact::redact(&err.text, &[]);
        if let Some(note) = exec::stop_note(outcome, watch.idle, self.pids_limit) {
            if !err_text.is_empty() && !err_text.ends_with('\n') {
                err_text.push('\n');
            }
            err_text.push_str(&note);
        }
        Ok(ExecOutput {
            exit_code,
            stdout: crate::redact::redact(&out.text, &[]),
            stderr: err_text,
            outcome,
            duration: elapsed,
            truncated_bytes: out.cut + err.cut,
        })
    }

    /// The cgroup counters, from a separate exec (used when the wrapper could not report).
    async fn read_counters(&self, exit_code: i64) -> Option<exec::Trailer> {
        let out = self
            .helper(&["/bin/sh", "-c", exec::COUNTERS], None)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        exec::parse_trailer(&format!("{exit_code} {}", text.trim()))
    }

    /// Runs an exec and collects its output, giving up at `limit`. With `watch`, a command
    /// that prints nothing for its idle time or stays at the process limit is stopped: every
    /// process of the agent is killed from another exec, and the output is read to its end.
    async fn run_exec(
        &self,
        config: ExecConfig,
        limit: Duration,
        output_cap: usize,
        stdin: Option<&[u8]>,
        watch: Option<Watch>,
    ) -> Result<ExecRun, SandboxError> {
        let Attached {
            exec_id,
            mut output,
            mut input,
        } = self.start_attached(config, 64 * 1024).await?;
        let mut run = ExecRun {
            stdout: CappedOutput::new(output_cap),
            stderr: CappedOutput::new(output_cap),
            exec_id: String::new(),
            host_timed_out: false,
            stopped: None,
        };
        let deadline = tokio::time::Instant::now() + limit;
        if let Some(bytes) = stdin {
            let write = async {
                input.write_all(bytes).await?;
                input.shutdown().await
            };
            match tokio::time::timeout_at(deadline, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(SandboxError::io("writing to an exec's stdin")(e)),
                Err(_) => {
                    run.host_timed_out = true;
                    return Ok(run);
                }
            }
        }
        // A watched command keeps its standard input open: writing to it stops the command.
        let mut stopper = watch.is_some().then_some(input);
        let far = deadline + Duration::from_secs(86_400);
        let quiet_until =
            |w: Option<Watch>| w.map_or(far, |w| tokio::time::Instant::now() + w.idle);
        let mut idle_at = quiet_until(watch);
        let mut pids = exec::PidsWatch::default();
        // The engine's stats stream (a sample a second), opened only for commands that run a
        // while: most end before they could hit anything.
        let mut stats: Option<StatsStream> = None;
        let mut subscribed = false;
        let subscribe_at = tokio::time::Instant::now() + PIDS_WATCH_AFTER;
        // After a stop, the stream must end soon: the kill ends every writer of it.
        let mut drain_until = far;
        loop {
            let watching = watch.is_some() && run.stopped.is_none();
            tokio::select! {
                biased;
                item = output.next() => match item {
                    None => break,
                    Some(Ok(LogOutput::StdOut { message })) => {
                        run.stdout.push(&message);
                        idle_at = quiet_until(watch);
                    }
                    Some(Ok(LogOutput::StdErr { message })) => {
                        run.stderr.push(&message);
                        idle_at = quiet_until(watch);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(self.gone_or(e, "reading an exec's output")),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    run.host_timed_out = true;
                    break;
                }
                _ = tokio::time::sleep_until(drain_until) => {
                    run.host_timed_out = true;
                    break;
                }
                _ = tokio::time::sleep_until(idle_at), if watching => {
                    run.stopped = Some(Stop::Idle);
                    stop(&mut stopper).await;
                    drain_until = tokio::time::Instant::now() + STOP_DRAIN;
                }
                _ = tokio::time::sleep_until(subscribe_at), if watching && !subscribed => {
                    subscribed = true;
                    let options = StatsOptionsBuilder::new().stream(true).build();
                    stats = Some(Box::pin(self.docker.stats(&self.id, Some(options))));
                }
                sample = next_pids(&mut stats), if watching && stats.is_some() => {
                    let Some(current) = sample else {
                        stats = None; // the engine stopped the stream: no more looks
                        continue;
                    };
                    let limit = watch.map_or(i64::MAX, |w| w.pids_limit);
                    if pids.observe(current >= limit) {
                        run.stopped = Some(Stop::ProcessLimit);
                        stop(&mut stopper).await;
                        drain_until = tokio::time::Instant::now() + STOP_DRAIN;
                    }
                }
            }
        }
        run.exec_id = exec_id;
        Ok(run)
    }

    /// Kills every process of the agent (`kill -1` spares PID 1, which is not the agent's
    /// anyway), from an exec that needs no fork: it starts even at the process limit, since
    /// entering the cgroup is not forking in it.
    async fn kill_all_detached(&self) {
        let config = ExecConfig {
            cmd: Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "kill -KILL -1".to_string(),
            ]),
            user: Some(AGENT_USER.to_string()),
            ..Default::default()
        };
        let started = match self.docker.create_exec(&self.id, config).await {
            Ok(created) => {
                let options = StartExecOptions {
                    detach: true,
                    tty: false,
                    output_capacity: None,
                };
                self.docker
                    .start_exec(&created.id, Some(options))
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            tracing::warn!(container = %self.id, error = %e, "could not stop a command");
        }
    }

    /// The exit code of a finished exec (the engine may need a moment to record it).
    /// Creates `config`'s exec and starts it attached, reading at most `capacity` bytes of
    /// output ahead of the reader.
    async fn start_attached(
        &self,
        config: ExecConfig,
        capacity: usize,
    ) -> Result<Attached, SandboxError> {
        let created = self
            .docker
            .create_exec(&self.id, config)
            .await
            .map_err(|e| self.gone_or(e, "creating an exec"))?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(capacity),
        };
        let started = self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(|e| self.gone_or(e, "starting an exec"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(SandboxError::Invalid("exec started detached".into()));
        };
        Ok(Attached {
            exec_id: created.id,
            output,
            input,
        })
    }

    async fn exit_code(&self, exec_id: &str) -> Option<i64> {
        tar_stream::exit_code(&self.docker, exec_id).await
    }

    fn gone_or(&self, e: bollard::errors::Error, action: &'static str) -> SandboxError {
        if self.expired.load(Ordering::SeqCst) {
            return SandboxError::RunTimeLimit {
                limit: self.run_timeout,
            };
        }
        match &e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                message,
            } => SandboxError::Gone(message.clone()),
            _ => SandboxError::Docker { action, source: e },
        }
    }

    /// A small exec as the agent, outside the command wrapper, with raw output.
    async fn helper(
        &self,
        argv: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<HelperOutput, SandboxError> {
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
            user: Some(AGENT_USER.to_string()),
            working_dir: Some(WORKSPACE.to_string()),
            ..Default::default()
        };
        let cap = usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX);
        let run = self
            .run_exec(config, HELPER_TIMEOUT, cap, stdin, None)
            .await?;
        if run.host_timed_out {
            return Err(SandboxError::Invalid(format!(
                "helper command timed out after {HELPER_TIMEOUT:?}"
            )));
        }
        let stdout = run.stdout;
        let total = stdout.total();
        let captured = stdout.into_bytes();
        Ok(HelperOutput {
            exit_code: self.exit_code(&run.exec_id).await.unwrap_or(-1),
            stdout: captured,
            stdout_total: total,
            stderr: run.stderr.finish().text,
        })
    }

    /// A file's content. `path` is relative to `/workspace` or absolute in the container;
    /// read with the agent's rights.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, SandboxError> {
        self.check_run_limit()?;
        let abs = absolute(path)?;
        let _one_at_a_time = self.counters.lock().await;
        let out = self
            .helper(&["/bin/sh", "-c", "exec cat -- \"$1\"", "read", &abs], None)
            .await?;
        if out.exit_code != 0 {
            return Err(SandboxError::ReadFile {
                path: abs,
                message: out.stderr.trim().to_string(),
            });
        }
        if out.stdout_total > self.max_file_bytes {
            return Err(SandboxError::TooLarge {
                path: abs,
                limit: self.max_file_bytes,
            });
        }
        Ok(out.stdout)
    }

    /// Writes a file, creating its parent directories, as the agent (so it is the agent's).
    pub async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), SandboxError> {
        self.check_run_limit()?;
        let abs = absolute(path)?;
        let _one_at_a_time = self.counters.lock().await;
        let script = "mkdir -p -- \"$(dirname -- \"$1\")\" && exec cat > \"$1\"";
        let out = self
            .helper(&["/bin/sh", "-c", script, "write", &abs], Some(contents))
            .await?;
        if out.exit_code != 0 {
            return Err(SandboxError::WriteFile {
                path: abs,
                message: out.stderr.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Copies the working tree of `/workspace` (without `.git`) into `dest`, an existing empty
    /// directory. Symbolic links are created in `dest` only when they resolve inside it; the
    /// others, and refused entries, are in [`Sandbox::copy_out_report`]'s `held_back`.
    pub async fn copy_out(&self, dest: &Path) -> Result<(), SandboxError> {
        self.copy_out_report(dest).await.map(|_| ())
    }

    /// As [`Sandbox::copy_out`], and says what was copied and what was held back (links that
    /// leave the tree, with their targets, and refused entries, which a consumer must leave as
    /// they were rather than take for deletions).
    pub async fn copy_out_report(&self, dest: &Path) -> Result<archive::Unpacked, SandboxError> {
        self.check_run_limit()?;
        let empty = std::fs::read_dir(dest)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(SandboxError::DestinationNotEmpty(dest.to_path_buf()));
        }
        let _one_at_a_time = self.counters.lock().await;
        let limits = Limits {
            bytes: self.max_copy_out_bytes,
            entries: self.max_copy_out_entries,
        };
        let report = tar_stream::copy_out(&self.docker, &self.id, dest, limits)
            .await
            .map_err(|e| self.expired_or(e))?;
        for refused in report.refused() {
            tracing::warn!(run = %self.run_id, entry = %refused, "copy-out refused an entry");
        }
        Ok(report)
    }

    /// The run's time limit when it is over (the container went with it), else `e`.
    fn expired_or(&self, e: SandboxError) -> SandboxError {
        if self.expired.load(Ordering::SeqCst) {
            SandboxError::RunTimeLimit {
                limit: self.run_timeout,
            }
        } else {
            e
        }
    }

    /// Removes the container and its volume.
    pub async fn destroy(mut self) -> Result<(), SandboxError> {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        container::remove(&self.docker, &self.id).await?;
        self.removed = true;
        Ok(())
    }

    /// Best-effort removal on an error path inside this module.
    pub(super) async fn remove_now(&mut self) {
        if container::remove(&self.docker, &self.id).await.is_ok() {
            self.removed = true;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if self.removed {
            return;
        }
        // Not destroyed: a panic, a cancelled future or an early return. Remove it from a
        // thread of its own, so it happens even when the caller's runtime is shutting down.
        let id = self.id.clone();
        let spawned = std::thread::Builder::new()
            .name("sandbox-cleanup".into())
            .spawn(move || remove_blocking(&id));
        if let Err(e) = spawned {
            tracing::warn!(container = %self.id, error = %e, "could not start sandbox clean-up; the reaper will remove it");
        }
    }
}

fn remove_blocking(id: &str) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "no runtime for sandbox clean-up");
            return;
        }
    };
    let result = runtime.block_on(async {
        let docker = Docker::connect_with_defaults()
            .map_err(SandboxError::Connect)?
            .negotiate_version()
            .await
            .map_err(SandboxError::Connect)?;
        container::remove(&docker, id).await
    });
    match result {
        Ok(()) => tracing::debug!(container = %id, "dropped sandbox removed"),
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "dropped sandbox not removed; the reaper will")
        }
    }
}

/// The engine's stats of one container, a sample about every second.
type StatsStream = std::pin::Pin<
    Box<
        dyn futures::Stream<
                Item = Result<bollard::models::ContainerStatsResponse, bollard::errors::Error>,
            > + Send,
    >,
>;

/// Tells the wrapper's stopper to kill the command and all it started (no new process needed,
/// so it works at the process limit). When the stream does not end after it, the caller's drain
/// limit falls back to killing from another exec.
async fn stop(stopper: &mut Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>) {
    if let Some(input) = stopper.as_mut() {
        let written = async {
            input.write_all(exec::STOP_LINE).await?;
            input.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!(error = %e, "could not write to a command's stopper");
        }
    }
}

/// The container's process count from the next stats sample (an API call: no process in the
/// sandbox, which could not fork one now); `None` when the stream ended or broke.
async fn next_pids(stats: &mut Option<StatsStream>) -> Option<i64> {
    let sample = stats.as_mut()?.next().await?.ok()?;
    let current = sample.pids_stats.and_then(|p| p.current)?;
    Some(i64::try_from(current).unwrap_or(i64::MAX))
}

/// A started exec with its output and input attached.
struct Attached {
    exec_id: String,
    output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

struct ExecRun {
    stdout: CappedOutput,
    stderr: CappedOutput,
    exec_id: String,
    host_timed_out: bool,
    /// Why the host stopped the command, if it did.
    stopped: Option<Stop>,
}

/// What the host watches while a command runs.
#[derive(Debug, Clone, Copy)]
struct Watch {
    idle: Duration,
    pids_limit: i64,
}

/// Why the host stopped a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Idle,
    ProcessLimit,
}

struct HelperOutput {
    exit_code: i64,
    stdout: Vec<u8>,
    stdout_total: u64,
    stderr: String,
}

/// An absolute path in the container: relative ones are under `/workspace`.
fn absolute(path: &str) -> Result<String, SandboxError> {
    if path.is_empty() || path.contains('\0') {
        return Err(SandboxError::Invalid(format!("bad path {path:?}")));
    }
    if path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Ok(format!("{WORKSPACE}/{path}"))
    }
}
