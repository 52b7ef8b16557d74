//! Finding and removing containers left behind: those of an instance that is gone (a crash, a
//! `kill -9`), and any older than the run limit. Runs at start-up and periodically.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;

use super::container::{self, LABEL_CREATED, LABEL_INSTANCE, LABEL_RUN};
use super::error::SandboxError;

/// Why a container is removed, or None to keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Its instance ran on this host and that process is gone.
    OwnerGone,
    /// Older than the run limit (plus a grace), whoever owns it.
    TooOld,
}

/// Whether the process that owns `instance` is known to be gone. Instances of other hosts
/// cannot be checked from here: they are left to the age limit.
pub fn owner_is_gone(instance: &str, this_host: &str, proc_root: &Path) -> bool {
    let mut parts = instance.splitn(3, ':');
    let (Some(host), Some(pid), Some(_nonce)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != this_host {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    !proc_root.join(pid.to_string()).exists()
}

/// The verdict on one container from its labels.
pub fn judge(
    labels: &HashMap<String, String>,
    own_instance: &str,
    this_host: &str,
    now: u64,
    max_age: Duration,
    proc_root: &Path,
) -> Verdict {
    let created = labels
        .get(LABEL_CREATED)
        .and_then(|c| c.parse::<u64>().ok());
    if let Some(created) = created {
        if now.saturating_sub(created) > max_age.as_secs() {
            return Verdict::TooOld;
        }
    }
    match labels.get(LABEL_INSTANCE) {
        Some(instance) if instance == own_instance => Verdict::Keep,
        Some(instance) if owner_is_gone(instance, this_host, proc_root) => Verdict::OwnerGone,
        _ => Verdict::Keep,
    }
}

pub fn this_host(instance_id: &str) -> &str {
    instance_id.split(':').next().unwrap_or("")
}

/// One pass: removes every Backspace container that is an orphan. Returns how many.
pub async fn reap(
    docker: &Docker,
    own_instance: &str,
    max_age: Duration,
) -> Result<usize, SandboxError> {
    let filters = HashMap::from([("label".to_string(), vec![LABEL_RUN.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(SandboxError::docker("listing sandboxes"))?;
    let host = this_host(own_instance);
    let now = crate::clock::unix_secs();
    let mut removed = 0;
    for summary in containers {
        let (Some(id), Some(labels)) = (summary.id, summary.labels) else {
            continue;
        };
        let verdict = judge(
            &labels,
            own_instance,
            host,
            now,
            max_age,
            Path::new("/proc"),
        );
        if verdict == Verdict::Keep {
            continue;
        }
        tracing::info!(container = %id, run = ?labels.get(LABEL_RUN), ?verdict, "reaping sandbox");
        match container::remove(docker, &id).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(container = %id, error = %e, "could not reap sandbox"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(instance: &str, created: u64) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_RUN.to_string(), "r".to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_CREATED.to_string(), created.to_string()),
        ])
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn own_fresh_containers_are_kept() {
        let l = labels("h:1:aa", 1000);
        assert_eq!(
            judge(&l, "h:1:aa", "h", 1010, HOUR, Path::new("/proc")),
            Verdict::Keep
        );
    }

    #[test]
    fn a_dead_local_owner_means_orphan() {
        let procs = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(procs.path().join("42")).expect("mkdir");
        let alive = labels("h:42:bb", 1000);
        let dead = labels("h:43:cc", 1000);
        assert_eq!(
            judge(&alive, "h:1:aa", "h", 1010, HOUR, procs.path()),
            Verdict::Keep
        );
        assert_eq!(
            judge(&dead, "h:1:aa", "h", 1010, HOUR, procs.path()),
            Verdict::OwnerGone
        );
    }

    #[test]
    fn another_hosts_containers_wait_for_the_age_limit() {
        let procs = tempfile::tempdir().expect("tempdir");
        let other = labels("elsewhere:43:cc", 1000);
        assert_eq!(
            judge(&other, "h:1:aa", "h", 1010, HOUR, procs.path()),
            Verdict::Keep
        );
        assert_eq!(
            judge(&other, "h:1:aa", "h", 1000 + 3601, HOUR, procs.path()),
            Verdict::TooOld
        );
    }

    #[test]
    fn too_old_wins_even_for_our_own() {
        let l = labels("h:1:aa", 0);
        assert_eq!(
            judge(&l, "h:1:aa", "h", 7200, HOUR, Path::new("/proc")),
            Verdict::TooOld
        );
    }

    #[test]
    fn malformed_instances_are_left_to_the_age_limit() {
        assert!(!owner_is_gone("nonsense", "h", Path::new("/nonexistent")));
        assert!(!owner_is_gone(
            "h:notapid:x",
            "h",
            Path::new("/nonexistent")
        ));
    }
}
