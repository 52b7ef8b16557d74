//! One command in a sandbox: the wrapper that enforces its time limit and kills what it left
//! behind, the host's rule for a command stuck at the process limit, and the reading of its
//! result (exit code, capped output, what stopped it).

use std::time::Duration;

/// Where commands run and where relative paths point.
pub const WORKSPACE: &str = "/workspace";

/// A command to run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Shell text, run with `bash -c` (or `sh -c` when the image has no bash).
    pub command: String,
    /// Working directory: absolute, or relative to `/workspace`; `/workspace` when None.
    pub workdir: Option<String>,
    /// Time limit of this command.
    pub timeout: Duration,
    /// Stopped after printing nothing this long; the sandbox's setting when None.
    pub idle: Option<Duration>,
    /// Cap of stdout and of stderr, in bytes each.
    pub output_cap: usize,
}

impl ExecSpec {
    /// A command with a 10 minute limit and a 30,000 byte cap per stream, in `/workspace`.
    pub fn new(command: impl Into<String>) -> Self {
        ExecSpec {
            command: command.into(),
            workdir: None,
            timeout: Duration::from_secs(600),
            idle: None,
            output_cap: 30_000,
        }
    }

    pub fn workdir(mut self, workdir: impl Into<String>) -> Self {
        self.workdir = Some(workdir.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    pub fn output_cap(mut self, output_cap: usize) -> Self {
        self.output_cap = output_cap;
        self
    }
}

/// What ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited by itself (with any exit code).
    Exited,
    /// It ran past its time limit and was killed.
    TimedOut,
    /// The sandbox ran out of memory while it ran; the kernel killed a process.
    OutOfMemory,
    /// It hit the sandbox's process limit (a fork bomb, say); every process it left was killed.
    ProcessLimit,
    /// It printed nothing for too long and was stopped with everything it started.
    Idle,
}

impl std::fmt::Display for ExecOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecOutcome::Exited => "exited",
            ExecOutcome::TimedOut => "timed out",
            ExecOutcome::OutOfMemory => "out of memory",
            ExecOutcome::ProcessLimit => "process limit reached",
            ExecOutcome::Idle => "no output for too long",
        })
    }
}

/// The host's rule for a command at the process limit: the limit holding once is the limit
/// doing its job, so a command is stopped only when two samples in a row find the container
/// full (a loop in bash's fork retry, a fork bomb). With the engine's sample a second, that is
/// within about three seconds of the limit being reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PidsWatch {
    at_limit_before: bool,
}

impl PidsWatch {
    /// One look; true when the command should be stopped.
    pub fn observe(&mut self, at_limit: bool) -> bool {
        let stop = at_limit && self.at_limit_before;
        self.at_limit_before = at_limit;
        stop
    }
}

/// The line added to a command's stderr so the agent learns why it ended, when the sandbox
/// ended it.
pub fn stop_note(outcome: ExecOutcome, idle: Duration, pids_limit: i64) -> Option<String> {
    match outcome {
        ExecOutcome::ProcessLimit => Some(format!(
            "[process limit reached: the command kept the sandbox at its limit of {pids_limit} \
             processes and was stopped; every process it started was killed. Start fewer \
             processes at once.]"
        )),
        ExecOutcome::Idle => Some(format!(
            "[stopped: no output for {} s (the idle limit); every process it started was \
             killed. Make long commands print progress, or run them in smaller steps.]",
            idle.as_secs()
        )),
        ExecOutcome::Exited | ExecOutcome::TimedOut | ExecOutcome::OutOfMemory => None,
    }
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub outcome: ExecOutcome,
    pub duration: Duration,
    /// Bytes cut from stdout and stderr together by the output cap.
    pub truncated_bytes: u64,
}

impl ExecOutput {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.outcome == ExecOutcome::Exited && self.exit_code == 0
    }
}

/// Shell text (builtins only) that sets `$oom` and `$max` to the cgroup's out-of-memory kill
/// and process-limit counters, cgroup v1 or v2, or `-` when unreadable.
macro_rules! counters_script {
    () => {
        r#"oom=-; max=-
for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
  if [ -r "$f" ]; then while read -r k v; do [ "$k" = oom_kill ] && oom=$v; done < "$f"; fi
done
for f in /sys/fs/cgroup/pids/pids.events /sys/fs/cgroup/pids.events; do
  if [ -r "$f" ]; then while read -r k v; do [ "$k" = max ] && max=$v; done < "$f"; fi
done
"#
    };
}

/// Prints the counters, for when the wrapper could not report them.
pub const COUNTERS: &str = concat!(counters_script!(), r#"echo "$oom $max""#);

/// The shell script every command runs under (POSIX sh, positional arguments only, so the
/// command text is never re-parsed). It kills whatever an earlier, abandoned command left,
/// starts the stopper, runs the command under `timeout -s KILL` (which kills the whole process
/// group) with its standard input from /dev/null, then kills every process the agent still has
/// (`kill -1` spares only the caller and PID 1), then reports the exit code and the cgroup's
/// counters on stderr behind a per-command marker. Only shell builtins run after the command,
/// so it works even when the process limit was hit.
///
/// The stopper is the host's way to stop a command without starting a process, which is
/// impossible while the command holds the process limit: forked before the command, it waits
/// on the exec's standard input (kept as fd 3, since a background job's own stdin is
/// /dev/null) and, when the host writes [`STOP_LINE`], kills everything with the builtin
/// `kill -1`. When the command ends first, the wrapper's own `kill -1` ends the stopper.
pub const WRAPPER: &str = concat!(
    r#"m="$1"; t="$2"; c="$3"
kill -KILL -1 2>/dev/null
if [ -x /bin/bash ]; then s=/bin/bash; else s=/bin/sh; fi
exec 3<&0 </dev/null
{ read -r _ <&3 && kill -KILL -1; } &
exec 3<&-
timeout -s KILL "$t" "$s" -c "$c"
rc=$?
kill -KILL -1 2>/dev/null
"#,
    counters_script!(),
    r#"printf '\n%s %s %s %s\n' "$m" "$rc" "$oom" "$max" >&2
exit $rc"#
);

/// What the host writes to a command's standard input to stop it (see [`WRAPPER`]).
pub const STOP_LINE: &[u8] = b"stop\n";

/// The argv of an exec running `command` under [`WRAPPER`].
pub fn wrapped_command(marker: &str, timeout: Duration, command: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        WRAPPER.into(),
        "backspace-exec".into(),
        marker.into(),
        format!("{:.3}", timeout.as_secs_f64().max(0.001)),
        command.into(),
    ]
}

/// The working directory of a command, inside the container.
pub fn resolve_workdir(workdir: Option<&str>) -> Result<String, String> {
    let dir = match workdir {
        None | Some("") | Some(".") => return Ok(WORKSPACE.to_string()),
        Some(dir) if dir.starts_with('/') => dir.to_string(),
        Some(dir) => format!("{WORKSPACE}/{dir}"),
    };
    if dir.contains('\0') {
        return Err("working directory contains a NUL byte".into());
    }
    Ok(dir)
}

/// The wrapper's report: exit code and the cgroup counters after the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    pub exit_code: i64,
    pub oom_kills: Option<u64>,
    pub pids_max_hits: Option<u64>,
}

pub fn parse_trailer(text: &str) -> Option<Trailer> {
    let mut parts = text.split_whitespace();
    let exit_code = parts.next()?.parse().ok()?;
    let oom_kills = parts.next()?.parse().ok();
    let pids_max_hits = parts.next()?.parse().ok();
    Some(Trailer {
        exit_code,
        oom_kills,
        pids_max_hits,
    })
}

/// Counters last seen in a sandbox, to tell what happened during one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub oom_kills: u64,
    pub pids_max_hits: u64,
}

/// What ended a command, from its exit code, time taken and the counters before and after.
/// Most specific first: memory, then processes, then time.
pub fn classify(
    exit_code: i64,
    elapsed: Duration,
    timeout: Duration,
    before: Counters,
    trailer: Option<Trailer>,
) -> ExecOutcome {
    if let Some(t) = trailer {
        if t.oom_kills.is_some_and(|n| n > before.oom_kills) {
            return ExecOutcome::OutOfMemory;
        }
        if t.pids_max_hits.is_some_and(|n| n > before.pids_max_hits) {
            return ExecOutcome::ProcessLimit;
        }
    }
    // `timeout -s KILL` dies with its group: 137, not 124.
    if (exit_code == 137 || exit_code == 124 || trailer.is_none()) && elapsed >= timeout {
        return ExecOutcome::TimedOut;
    }
    ExecOutcome::Exited
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_command_is_stopped_when_it_stays_at_the_process_limit() {
        let mut watch = PidsWatch::default();
        assert!(!watch.observe(false));
        assert!(!watch.observe(true), "hitting the limit once is allowed");
        assert!(!watch.observe(false));
        assert!(!watch.observe(true));
        assert!(watch.observe(true), "still at the limit a poll later");
    }

    #[test]
    fn the_agent_is_told_why_the_sandbox_stopped_a_command() {
        let pids = stop_note(ExecOutcome::ProcessLimit, 300 * S, 512).expect("note");
        assert!(pids.starts_with("[process limit reached"), "{pids}");
        assert!(pids.contains("512"));
        let idle = stop_note(ExecOutcome::Idle, 300 * S, 512).expect("note");
        assert!(idle.contains("no output for 300 s"), "{idle}");
        assert_eq!(stop_note(ExecOutcome::Exited, S, 1), None);
        assert_eq!(ExecOutcome::Idle.to_string(), "no output for too long");
    }

    #[test]
    fn wrapper_passes_the_command_as_an_argument_not_as_text() {
        let argv = wrapped_command("M", Duration::from_millis(1500), "echo '$x' \"; rm -rf /\"");
        assert_eq!(argv[0], "/bin/sh");
        assert_eq!(argv[5], "1.500");
        assert_eq!(argv[6], "echo '$x' \"; rm -rf /\"");
    }

    #[test]
    fn workdir_is_relative_to_the_workspace() {
        assert_eq!(resolve_workdir(None).as_deref(), Ok("/workspace"));
        assert_eq!(
            resolve_workdir(Some("src")).as_deref(),
            Ok("/workspace/src")
        );
        assert_eq!(resolve_workdir(Some("/tmp")).as_deref(), Ok("/tmp"));
    }

    #[test]
    fn trailer_parses_counters_and_tolerates_missing_cgroup_files() {
        assert_eq!(
            parse_trailer("3 0 7"),
            Some(Trailer {
                exit_code: 3,
                oom_kills: Some(0),
                pids_max_hits: Some(7)
            })
        );
        assert_eq!(
            parse_trailer("0 - -"),
            Some(Trailer {
                exit_code: 0,
                oom_kills: None,
                pids_max_hits: None
            })
        );
        assert_eq!(parse_trailer("garbage"), None);
    }

    #[test]
    fn a_new_oom_kill_is_out_of_memory() {
        let t = Trailer {
            exit_code: 137,
            oom_kills: Some(1),
            pids_max_hits: Some(0),
        };
        assert_eq!(
            classify(137, S, 10 * S, Counters::default(), Some(t)),
            ExecOutcome::OutOfMemory
        );
    }

    #[test]
    fn an_old_oom_kill_does_not_count_again() {
        let before = Counters {
            oom_kills: 1,
            pids_max_hits: 0,
        };
        let t = Trailer {
            exit_code: 1,
            oom_kills: Some(1),
            pids_max_hits: Some(0),
        };
        assert_eq!(classify(1, S, 10 * S, before, Some(t)), ExecOutcome::Exited);
    }

    #[test]
    fn hitting_the_process_limit_is_reported_even_with_exit_zero() {
        let t = Trailer {
            exit_code: 0,
            oom_kills: Some(0),
            pids_max_hits: Some(3),
        };
        assert_eq!(
            classify(0, S, 10 * S, Counters::default(), Some(t)),
            ExecOutcome::ProcessLimit
        );
    }

    #[test]
    fn killed_at_the_limit_is_timed_out_but_killed_early_is_not() {
        let t = Trailer {
            exit_code: 137,
            oom_kills: Some(0),
            pids_max_hits: Some(0),
        };
        assert_eq!(
            classify(137, 2 * S, 2 * S, Counters::default(), Some(t)),
            ExecOutcome::TimedOut
        );
        assert_eq!(
            classify(137, S, 2 * S, Counters::default(), Some(t)),
            ExecOutcome::Exited
        );
    }
}
