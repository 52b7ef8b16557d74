//! What a sandbox is allowed: image, limits (memory, CPU, processes, disk), time limits and
//! output caps, and the identity of this Backspace instance (which the reaper uses to tell its
//! own containers from orphans).

use std::time::Duration;

/// The image used when `BACKSPACE_SANDBOX_IMAGE` is not set: the one built from
/// `sandbox/Dockerfile`.
pub const DEFAULT_IMAGE: &str = "backspace-sandbox:latest";

/// Limits and defaults for every sandbox of one [`super::Sandboxes`].
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Image to run; it must provide a user with uid 1000 and `/workspace`.
    pub image: String,
    /// Memory for the agent's processes, in bytes. The container's memory limit is this plus
    /// `disk_bytes` (the file systems are memory-backed; see the module doc of `container`), and
    /// swap is set equal, so the container gets no swap.
    pub memory_bytes: i64,
    /// CPU limit, in CPUs (may be fractional).
    pub cpus: f64,
    /// Maximum number of processes and threads in the container.
    pub pids_limit: i64,
    /// What the sandbox may write, `/workspace` and `/tmp` together (`BACKSPACE_SANDBOX_DISK`).
    pub disk_bytes: u64,
    /// The most of `disk_bytes` that goes to `/tmp` (also HOME); at most a quarter of it.
    pub tmp_bytes: u64,
    /// Default time limit of one command.
    pub command_timeout: Duration,
    /// A command that prints nothing this long is stopped (`BACKSPACE_COMMAND_IDLE_SECS`).
    pub command_idle: Duration,
    /// Time limit of the whole run: past it the container is removed.
    pub run_timeout: Duration,
    /// Default cap of stdout and of stderr of one command, in bytes each.
    pub output_cap: usize,
    /// Largest file `read_file` returns.
    pub max_file_bytes: u64,
    /// Largest working tree `copy_out` accepts, in bytes of file content.
    pub max_copy_out_bytes: u64,
    /// Most entries (files, directories, links) `copy_out` accepts.
    pub max_copy_out_entries: u64,
    /// The operator's `BACKSPACE_EGRESS_ALLOW`: what a repository's `network.allow` may name.
    pub egress_allow: crate::egress::Allowlist,
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
            disk_bytes: env_setting(DISK_ENV, parse_size).unwrap_or(DEFAULT_DISK_BYTES),
            tmp_bytes: 512 * 1024 * 1024,
            command_timeout: Duration::from_secs(10 * 60),
            command_idle: env_setting(IDLE_ENV, parse_secs).unwrap_or(DEFAULT_COMMAND_IDLE),
            run_timeout: Duration::from_secs(60 * 60),
            output_cap: 30_000,
            max_file_bytes: 32 * 1024 * 1024,
            max_copy_out_bytes: 1024 * 1024 * 1024,
            max_copy_out_entries: 100_000,
            egress_allow: env_setting(EGRESS_ENV, |v| {
                crate::egress::Allowlist::parse(v).map_err(|e| e.to_string())
            })
            .unwrap_or_default(),
            instance_id: new_instance_id(),
            warm_pool: 0,
        }
    }
}

/// `BACKSPACE_SANDBOX_DISK`'s default: 2 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// `BACKSPACE_COMMAND_IDLE_SECS`'s default: 5 minutes.
pub const DEFAULT_COMMAND_IDLE: Duration = Duration::from_secs(300);
const DISK_ENV: &str = "BACKSPACE_SANDBOX_DISK";
const IDLE_ENV: &str = "BACKSPACE_COMMAND_IDLE_SECS";
const EGRESS_ENV: &str = "BACKSPACE_EGRESS_ALLOW";

/// The smallest disk a sandbox can be given: a repository needs somewhere to go.
const MIN_DISK_BYTES: u64 = 16 * 1024 * 1024;

impl SandboxSettings {
    /// The size of the tmpfs at `/tmp`: `tmp_bytes`, but never more than a quarter of the disk.
    pub fn tmp_share(&self) -> u64 {
        self.tmp_bytes.min(self.disk_bytes / 4)
    }

    /// The size of the tmpfs at `/workspace`: the disk less `/tmp`'s share.
    pub fn workspace_share(&self) -> u64 {
        self.disk_bytes - self.tmp_share()
    }

    /// The container's memory limit: the processes' memory plus the disk, which lives in memory.
    pub fn container_memory(&self) -> i64 {
        self.memory_bytes
            .saturating_add(i64::try_from(self.disk_bytes).unwrap_or(i64::MAX))
    }
}

/// A setting from the environment: unset or empty is `None`; a value that does not parse is
/// reported and ignored (the command line's own flags refuse it instead).
fn env_setting<T>(name: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
    let raw = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    match parse(&raw) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(setting = name, error = %e, "ignoring an invalid setting");
            None
        }
    }
}

/// A size such as `2GiB`, `512M`, `1.5G` or plain bytes; the units are binary (K = 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (say 2GiB, 512M or a number of bytes)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use K, M, G or T)"
            ))
        }
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    let bytes = bytes as u64;
    if bytes < MIN_DISK_BYTES {
        return Err(format!(
            "{text:?} is less than the smallest sandbox disk, 16MiB"
        ));
    }
    Ok(bytes)
}

/// A whole number of seconds, at least 1.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a positive number of seconds")),
        Ok(n) => Ok(Duration::from_secs(n)),
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
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size(" 33554432 "), Ok(32 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("1M").is_err(), "below the smallest disk");
    }

    #[test]
    fn idle_seconds_must_be_positive() {
        assert_eq!(parse_secs("300"), Ok(Duration::from_secs(300)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
    }

    #[test]
    fn the_disk_is_split_between_workspace_and_tmp_and_added_to_memory() {
        let s = SandboxSettings {
            disk_bytes: 2 << 30,
            tmp_bytes: 512 << 20,
            memory_bytes: 2 << 30,
            ..SandboxSettings::default()
        };
        assert_eq!(s.tmp_share(), 512 << 20);
        assert_eq!(s.workspace_share() + s.tmp_share(), 2 << 30);
        assert_eq!(s.container_memory(), 4 << 30);
        let small = SandboxSettings {
            disk_bytes: 256 << 20,
            ..s
        };
        assert_eq!(small.tmp_share(), 64 << 20, "a quarter at most");
        assert_eq!(small.workspace_share(), 192 << 20);
    }

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
