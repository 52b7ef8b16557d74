//! The hardened container definition: no network, no capabilities, no new privileges, a
//! read-only root with a writable `/workspace` volume and tmpfs `/tmp`, memory (without swap),
//! CPU and process limits, the non-root user, an environment of our own, and the labels the
//! reaper goes by. Also its removal, which every path ends in.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountTypeEnum};
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
/// zombies against the process limit), survives `kill -1` from the agent (PID 1 is spared), and
/// exits on TERM.
pub const IDLE_COMMAND: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

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

/// The definition of one sandbox container. With `network`, it joins the settings' setup
/// network (to be cut before the agent starts); otherwise it has none at all.
pub fn definition(settings: &SandboxSettings, run_id: &str, network: bool) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_INSTANCE.to_string(), settings.instance_id.clone()),
        (
            LABEL_CREATED.to_string(),
            crate::clock::unix_secs().to_string(),
        ),
    ]);
    // `exec` overrides Docker's default `noexec`: builds and test runners run binaries
    // from /tmp. /tmp is also HOME, so the only writable places are /workspace and /tmp
    // (and Docker's own /dev/shm and /dev/mqueue, noexec and memory-limited).
    let tmpfs = HashMap::from([(
        "/tmp".to_string(),
        format!("rw,exec,nosuid,nodev,size={},mode=1777", settings.tmp_bytes),
    )]);
    let host_config = HostConfig {
        network_mode: Some(if network {
            settings.setup_network.clone()
        } else {
            "none".to_string()
        }),
        cap_drop: Some(vec!["ALL".to_string()]),
        // The default seccomp profile applies as long as nothing says `seccomp=unconfined`.
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        readonly_rootfs: Some(true),
        privileged: Some(false),
        tmpfs: Some(tmpfs),
        // An anonymous volume: writable, reachable by the archive API (a tmpfs is not), and
        // removed with the container (`v=true`).
        mounts: Some(vec![Mount {
            target: Some(WORKSPACE.to_string()),
            typ: Some(MountTypeEnum::VOLUME),
            ..Default::default()
        }]),
        memory: Some(settings.memory_bytes),
        memory_swap: Some(settings.memory_bytes),
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
        user: Some("1000:1000".to_string()),
        working_dir: Some(WORKSPACE.to_string()),
        env: Some(SANDBOX_ENV.iter().map(|s| s.to_string()).collect()),
        cmd: Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            IDLE_COMMAND.to_string(),
        ]),
        entrypoint: Some(vec![]),
        labels: Some(labels),
        network_disabled: Some(!network),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Removes a container and its anonymous volume, killing it first. Gone already is fine.
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
        let def = definition(&settings, "run-1", false);
        let host = def.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, host.memory_swap);
        assert!(host.binds.is_none(), "never a bind mount");
        assert!(host
            .mounts
            .iter()
            .flatten()
            .all(|m| m.typ != Some(MountTypeEnum::BIND)));
        assert!(host
            .security_opt
            .iter()
            .flatten()
            .any(|o| o == "no-new-privileges:true"));
        assert_eq!(def.user.as_deref(), Some("1000:1000"));
        let labels = def.labels.expect("labels");
        assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("run-1"));
        assert_eq!(labels.get(LABEL_INSTANCE), Some(&settings.instance_id));
    }

    #[test]
    fn the_environment_holds_nothing_from_the_host() {
        let def = definition(&SandboxSettings::default(), "r", false);
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
