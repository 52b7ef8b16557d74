//! The hardened container definition: no network (ever), no capabilities, no new privileges, a
//! read-only root with a writable tmpfs `/workspace` and `/tmp`, memory (without swap), CPU,
//! process and disk limits, the non-root user, an environment of our own, and the labels the
//! reaper goes by. Also its removal, which every path ends in.
//!
//! The disk cap. `/workspace` and `/tmp` are tmpfs mounts with a size, together
//! `BACKSPACE_SANDBOX_DISK` (`/tmp` gets at most a quarter): a write past it fails inside the
//! sandbox with "No space left on device", and nothing the sandbox writes reaches the host's
//! disk. This works on any engine, local or remote: this one's fuse-overlayfs has no
//! `--storage-opt size`, a sized volume needs a driver the engine may not have, and a loop file
//! needs host-side privileges. Docker's archive API does not see tmpfs mounts, so the repository
//! goes in and the working tree comes out through `tar` in an exec (`tar_stream`).
//!
//! Memory and disk. tmpfs pages are charged to the container's memory cgroup and cannot be
//! swapped (there is no swap), so a full disk under a memory limit of its own size would turn
//! the last writes into an out-of-memory kill instead of ENOSPC. The container's limit is
//! therefore the processes' memory *plus* the disk: a full disk still leaves the processes their
//! `memory_bytes`, and the write past the cap fails with ENOSPC, never with the OOM killer. The
//! price: a sandbox whose disk is empty may use that much more memory, and the host must have
//! memory (not disk) for `BACKSPACE_MAX_JOBS × (memory + disk)`.
//!
//! PID 1 runs as its own user (65534, not the agent's 1000), so no `kill -1` from the agent can
//! reach it or its `sleep`: it never has to fork again while a command holds the process limit
//! (a fork that fails there would end the shell, the container, and the memory-backed
//! workspace with it).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;

use super::error::{is_not_found, SandboxError};
use super::exec::WORKSPACE;
use super::settings::SandboxSettings;

pub const LABEL_RUN: &str = "backspace.run";
pub const LABEL_INSTANCE: &str = "backspace.instance";
/// Unix seconds at creation, for the reaper's age check.
pub const LABEL_CREATED: &str = "backspace.created";

/// The only environment a sandbox ever has.
pub const SANDBOX_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/tmp",
    "LANG=C.UTF-8",
    "USER=agent",
    "CI=true",
];

/// PID 1: a POSIX shell that sleeps and reaps orphans (so killed processes never pile up as
/// zombies against the process limit), survives `kill -1` from the agent (PID 1 is spared, and
/// its `sleep` belongs to another user), and exits on TERM.
pub const IDLE_COMMAND: &str = "trap 'exit 0' TERM; while :; do sleep 86400 & wait $!; done";

/// The user PID 1 runs as: not the agent, so the agent cannot signal it.
pub const IDLE_USER: &str = "65534:65534";

/// The user every command, file operation and copy runs as.
pub const AGENT_USER: &str = "1000:1000";

/// A container name from a run id: Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn container_name(run_id: &str) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{}{}", name_prefix(run_id), &nonce[..8])
}

/// The start of the names of `run_id`'s containers. A warm container from the pool is renamed
/// to it when a run takes it (labels cannot change after creation).
pub fn name_prefix(run_id: &str) -> String {
    let clean: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(40)
        .collect();
    format!("backspace-{clean}-")
}

/// The `backspace.run` label of warm containers nobody has taken yet.
pub const POOL_RUN: &str = "warm-pool";

/// The definition of one sandbox container. It has no network at all: what a repository may
/// open goes through the egress proxy over an exec's stdio (`crate::egress`).
pub fn definition(settings: &SandboxSettings, run_id: &str) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_INSTANCE.to_string(), settings.instance_id.clone()),
        (
            LABEL_CREATED.to_string(),
            crate::clock::unix_secs().to_string(),
        ),
    ]);
    // `exec` overrides Docker's default `noexec`: builds and test runners run binaries
    // from /workspace and /tmp. /tmp is also HOME, so the only writable places are /workspace
    // and /tmp (and Docker's own /dev/shm and /dev/mqueue, noexec and memory-limited).
    let tmpfs = HashMap::from([
        (
            WORKSPACE.to_string(),
            format!(
                "rw,exec,nosuid,nodev,size={},mode=0755,uid=1000,gid=1000",
                settings.workspace_share()
            ),
        ),
        (
            "/tmp".to_string(),
            format!(
                "rw,exec,nosuid,nodev,size={},mode=1777",
                settings.tmp_share()
            ),
        ),
    ]);
    let host_config = HostConfig {
        network_mode: Some("none".to_string()),
        cap_drop: Some(vec!["ALL".to_string()]),
        // The default seccomp profile applies as long as nothing says `seccomp=unconfined`.
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        readonly_rootfs: Some(true),
        privileged: Some(false),
        tmpfs: Some(tmpfs),
        memory: Some(settings.container_memory()),
        memory_swap: Some(settings.container_memory()),
        nano_cpus: Some((settings.cpus * 1e9) as i64),
        pids_limit: Some(settings.pids_limit),
        ipc_mode: Some("private".to_string()),
        init: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".to_string()),
            config: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(settings.image.clone()),
        user: Some(IDLE_USER.to_string()),
        working_dir: Some(WORKSPACE.to_string()),
        env: Some(SANDBOX_ENV.iter().map(|s| s.to_string()).collect()),
        cmd: Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            IDLE_COMMAND.to_string(),
        ]),
        entrypoint: Some(vec![]),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Removes a container (and any anonymous volume), killing it first. Gone already is fine.
pub async fn remove(docker: &Docker, id: &str) -> Result<(), SandboxError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // "removal already in progress"
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(SandboxError::Docker {
            action: "removing a sandbox",
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_locked_down() {
        let settings = SandboxSettings::default();
        let def = definition(&settings, "run-1");
        let host = def.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, host.memory_swap);
        assert_eq!(host.memory, Some(settings.container_memory()));
        assert!(host.binds.is_none(), "never a bind mount");
        assert!(host.mounts.is_none(), "tmpfs only, no volume or bind mount");
        let tmpfs = host.tmpfs.expect("tmpfs");
        let workspace = &tmpfs[WORKSPACE];
        assert!(
            workspace.contains(&format!("size={}", settings.workspace_share())),
            "{workspace}"
        );
        assert!(workspace.contains("uid=1000"), "{workspace}");
        assert!(tmpfs["/tmp"].contains(&format!("size={}", settings.tmp_share())));
        assert!(host
            .security_opt
            .iter()
            .flatten()
            .any(|o| o == "no-new-privileges:true"));
        assert_eq!(
            def.user.as_deref(),
            Some(IDLE_USER),
            "PID 1 is not the agent"
        );
        let labels = def.labels.expect("labels");
        assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("run-1"));
        assert_eq!(labels.get(LABEL_INSTANCE), Some(&settings.instance_id));
    }

    #[test]
    fn the_environment_holds_nothing_from_the_host() {
        let def = definition(&SandboxSettings::default(), "r");
        let env = def.env.expect("env");
        assert!(env.iter().all(|e| SANDBOX_ENV.contains(&e.as_str())));
        assert_eq!(env.len(), SANDBOX_ENV.len());
    }

    #[test]
    fn names_keep_only_allowed_characters() {
        let name = container_name("run/../x y#1");
        assert!(name.starts_with("backspace-run..xy1-"), "{name}");
    }
}
