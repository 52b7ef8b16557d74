//! What a sandbox is allowed: image, limits, time limits and output caps, and the identity of
//! this Backspace instance (which the reaper uses to tell its own containers from orphans).

use std::time::Duration;

/// The image used when `BACKSPACE_SANDBOX_IMAGE` is not set: the one built from
/// `sandbox/Dockerfile`.
pub const DEFAULT_IMAGE: &str = "backspace-sandbox:latest";

/// Limits and defaults for every sandbox of one [`super::Sandboxes`].
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Image to run; it must provide a user with uid 1000 and `/workspace`.
    pub image: String,
    /// Memory limit in bytes; swap is set equal, so the container gets no swap.
    pub memory_bytes: i64,
    /// CPU limit, in CPUs (may be fractional).
    pub cpus: f64,
    /// Maximum number of processes and threads in the container.
    pub pids_limit: i64,
    /// Size of the tmpfs at `/tmp`, which is also HOME (counts against the memory limit).
    pub tmp_bytes: u64,
    /// Default time limit of one command.
    pub command_timeout: Duration,
    /// Time limit of the whole run: past it the container is removed.
    pub run_timeout: Duration,
    /// Default cap of stdout and of stderr of one command, in bytes each.
    pub output_cap: usize,
    /// Largest file `read_file` returns.
    pub max_file_bytes: u64,
    /// Largest working tree `copy_out` accepts, in bytes of file content.
    pub max_copy_out_bytes: u64,
    /// Network the container joins when a repository's setup commands ask for network.
    pub setup_network: String,
    /// Identity of this Backspace process, written on every container it creates.
    /// Format `host:pid:nonce`, so the reaper can tell when its owner is gone.
    pub instance_id: String,
    /// Containers kept started and waiting, for a fast first command (0 turns the pool off).
    pub warm_pool: usize,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            image: std::env::var("BACKSPACE_SANDBOX_IMAGE")
                .ok()
                .filter(|image| !image.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            memory_bytes: 2 * 1024 * 1024 * 1024,
            cpus: 2.0,
            pids_limit: 512,
            tmp_bytes: 512 * 1024 * 1024,
            command_timeout: Duration::from_secs(10 * 60),
            run_timeout: Duration::from_secs(60 * 60),
            output_cap: 30_000,
            max_file_bytes: 32 * 1024 * 1024,
            max_copy_out_bytes: 1024 * 1024 * 1024,
            setup_network: "bridge".to_string(),
            instance_id: new_instance_id(),
            warm_pool: 0,
        }
    }
}

/// A fresh instance id for this process: `host:pid:nonce`.
pub fn new_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_names_host_pid_and_nonce() {
        let id = new_instance_id();
        let parts: Vec<&str> = id.split(':').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(parts[2].len(), 8);
        assert_ne!(id, new_instance_id());
    }
}
