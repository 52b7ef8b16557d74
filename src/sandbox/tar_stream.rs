//! The repository in and the working tree out, through `tar` in an exec with its standard input
//! or output attached: Docker's archive API does not see the tmpfs `/workspace`. Both ends are
//! streamed (the host packs while the sandbox unpacks, and the other way), so memory stays flat
//! for big trees. Both `tar`s run as the agent, so what goes in is the agent's and what comes out
//! is only what the agent could read.

use std::path::Path;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::archive::{self, ChannelReader, ChannelWriter, Limits, OverLimit, Unpacked};
use super::container::AGENT_USER;
use super::error::SandboxError;
use super::exec::WORKSPACE;
use super::output::CappedOutput;

/// Unpacks standard input into `/workspace`, keeping the archive's modes exactly (`-p`; the
/// agent's umask would drop bits) and making every file the agent's. When it fails with less
/// than a MiB left, it says the disk is full ([`FULL`]): `tar` itself may only say that it
/// "wrote only" part of a block.
const COPY_IN: &str = "tar -x -p --no-same-owner -f - -C /workspace && exit 0; rc=$?; \
     set -- $(stat -f -c '%a %S' /workspace); \
     [ $(($1 * $2)) -lt 1048576 ] && echo 'backspace: the workspace is full' >&2; exit $rc";

/// What [`COPY_IN`] says when the repository did not fit.
const FULL: &str = "backspace: the workspace is full";

/// Makes everything readable by its owner (the agent: a file it made unreadable would otherwise
/// be missing from the archive, which looks like a deletion), then packs `/workspace` without
/// the sandbox's own `.git`, entries named `workspace/...`.
const COPY_OUT: &str = "chmod -R u+rX /workspace 2>/dev/null; \
     exec tar -c -f - -C / --anchored --exclude=workspace/.git --ignore-failed-read workspace";

/// How much of `tar`'s complaints is kept for an error message.
const STDERR_CAP: usize = 8 * 1024;

/// Streams the tree under `repo` (working tree and `.git`, links as links) into `/workspace`.
/// `room`: the size of `/workspace`, for the error when the repository does not fit.
pub(super) async fn copy_in(
    docker: &Docker,
    container: &str,
    repo: &Path,
    room: u64,
) -> Result<(), SandboxError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let root = repo.to_path_buf();
    let packing = tokio::task::spawn_blocking(move || {
        let writer = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter::new(tx.clone()));
        let packed = archive::pack_into(&root, writer)
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()));
        if let Err(e) = &packed {
            // Ends the stream without its end-of-archive blocks, so `tar` fails too and no
            // half repository passes for a whole one.
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        packed.map(|_| ())
    });
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), COPY_IN.to_string()];
    let (exec_id, mut output, mut input) = start(docker, container, argv, true).await?;
    let mut stdin_error = None;
    let write = async {
        while let Some(Ok(bytes)) = rx.recv().await {
            if let Err(e) = input.write_all(&bytes).await {
                stdin_error = Some(e);
                return;
            }
        }
        // The end of the stream, or a packing error: either way `tar` must see its input end.
        if let Err(e) = input.shutdown().await {
            stdin_error = Some(e);
        }
    };
    let mut stderr = CappedOutput::new(STDERR_CAP);
    let read = async {
        while let Some(item) = output.next().await {
            match item {
                Ok(LogOutput::StdErr { message }) => stderr.push(&message),
                Ok(_) => {}
                Err(e) => return Err(SandboxError::docker("copying the repository in")(e)),
            }
        }
        Ok(())
    };
    let ((), read) = tokio::join!(write, read);
    drop(rx);
    let packed = match packing.await {
        Ok(result) => result,
        Err(e) => {
            return Err(SandboxError::Invalid(format!(
                "packing the repository: {e}"
            )))
        }
    };
    packed.map_err(SandboxError::io(format!(
        "packing the repository at {}",
        repo.display()
    )))?;
    read?;
    let code = exit_code(docker, &exec_id).await;
    let complaint = stderr.finish().text.trim().to_string();
    match code {
        Some(0) => Ok(()),
        _ if complaint.contains(FULL) || complaint.contains("No space left on device") => {
            Err(SandboxError::RepositoryTooLarge { limit: room })
        }
        Some(126 | 127) => Err(SandboxError::Invalid(format!(
            "the sandbox image has no usable tar: {complaint}"
        ))),
        _ => Err(SandboxError::CopyIn {
            message: if complaint.is_empty() {
                stdin_error
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| format!("tar ended with {code:?}"))
            } else {
                complaint
            },
        }),
    }
}

/// Streams `/workspace` (without the sandbox's `.git`) out and unpacks it into `dest` as it
/// arrives, under `limits`.
pub(super) async fn copy_out(
    docker: &Docker,
    container: &str,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, SandboxError> {
    let argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        COPY_OUT.to_string(),
    ];
    let (exec_id, mut output, _stdin) = start(docker, container, argv, false).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let dest_dir = dest.to_path_buf();
    let unpacking = tokio::task::spawn_blocking(move || {
        archive::unpack_tree(ChannelReader::new(rx), &dest_dir, 1, limits)
    });
    let mut stderr = CappedOutput::new(STDERR_CAP);
    let mut stream_error = None;
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => {
                if tx.send(Ok(message)).await.is_err() {
                    break; // the unpacker stopped; its error says why
                }
            }
            Ok(LogOutput::StdErr { message }) => stderr.push(&message),
            Ok(_) => {}
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::other("the copy-out stream broke")))
                    .await;
                stream_error = Some(SandboxError::docker("copying the working tree out")(e));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpacking
        .await
        .map_err(|e| SandboxError::Invalid(format!("unpacking the working tree: {e}")))?;
    if let Some(e) = stream_error {
        return Err(e);
    }
    let report = unpacked.map_err(|e| match OverLimit::of(&e) {
        Some(OverLimit::Bytes(limit)) => SandboxError::TooLarge {
            path: WORKSPACE.to_string(),
            limit,
        },
        Some(OverLimit::Entries(limit)) => SandboxError::TooManyEntries { limit },
        None => SandboxError::io(format!("unpacking into {}", dest.display()))(e),
    })?;
    let complaint = stderr.finish().text.trim().to_string();
    // 1 is "a file changed as it was read": nothing runs at copy-out, so it is harmless.
    match exit_code(docker, &exec_id).await {
        Some(0 | 1) => {
            if !complaint.is_empty() {
                tracing::debug!(%complaint, "tar warned while copying the working tree out");
            }
            Ok(report)
        }
        code => Err(SandboxError::CopyOut {
            message: format!("tar ended with {code:?}: {complaint}"),
        }),
    }
}

type Output = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;
type Input = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Creates and starts an exec as the agent in `/workspace`, attached.
async fn start(
    docker: &Docker,
    container: &str,
    argv: Vec<String>,
    stdin: bool,
) -> Result<(String, Output, Input), SandboxError> {
    let config = ExecConfig {
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(argv),
        user: Some(AGENT_USER.to_string()),
        working_dir: Some(WORKSPACE.to_string()),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, config)
        .await
        .map_err(SandboxError::docker("creating a copy exec"))?;
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: Some(256 * 1024),
    };
    match docker
        .start_exec(&created.id, Some(options))
        .await
        .map_err(SandboxError::docker("starting a copy exec"))?
    {
        StartExecResults::Attached { output, input } => Ok((created.id, output, input)),
        StartExecResults::Detached => Err(SandboxError::Invalid("exec started detached".into())),
    }
}

/// The exit code of a finished exec (the engine may need a moment to record it).
pub(super) async fn exit_code(docker: &Docker, exec_id: &str) -> Option<i64> {
    for _ in 0..50 {
        match docker.inspect_exec(exec_id).await {
            Ok(info) if info.running != Some(true) => return info.exit_code,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return None,
        }
    }
    None
}
