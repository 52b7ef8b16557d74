//! The permission gate: only admin, maintain and write start runs; triage, read, none, an API
//! error and a timeout do not (fail closed). GitHub's `permission` field only says
//! admin/write/read/none (maintain folds into write, triage into read), while `role_name`
//! carries the finer role, so the role is read first. Also the marker that keeps replies to
//! denied users to one per issue.

use std::fmt;

/// A user's role on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    fn parse(s: &str) -> Option<Permission> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Permission::Admin),
            "maintain" => Some(Permission::Maintain),
            "write" | "push" => Some(Permission::Write),
            "triage" => Some(Permission::Triage),
            "read" | "pull" => Some(Permission::Read),
            "none" => Some(Permission::None),
            _ => None,
        }
    }

    /// From the answer of `GET .../collaborators/{user}/permission`: `role_name` when it is
    /// one of GitHub's roles, else `permission` (custom roles have their own names but a base
    /// `permission`); anything unknown is `None`.
    pub fn from_api(permission: &str, role_name: Option<&str>) -> Permission {
        role_name
            .and_then(Permission::parse)
            .or_else(|| Permission::parse(permission))
            .unwrap_or(Permission::None)
    }

    pub fn can_start_runs(self) -> bool {
        matches!(
            self,
            Permission::Admin | Permission::Maintain | Permission::Write
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Triage => "triage",
            Permission::Write => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        })
    }
}

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    Allowed(Permission),
    /// The user's role does not allow runs.
    Denied(Permission),
    /// The permission could not be read (error or timeout): no run.
    Unknown(String),
}

impl GateDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, GateDecision::Allowed(_))
    }
}

/// The gate's settings.
#[derive(Debug, Clone)]
pub struct PermissionGate {
    /// The whole check, retries included, must answer within this.
    pub timeout: std::time::Duration,
}

impl Default for PermissionGate {
    fn default() -> Self {
        PermissionGate {
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The hidden marker in Backspace's reply to a user without permission; its presence in one of
/// the bot's comments on an issue means that issue was already answered.
pub const DENIED_REPLY_MARKER: &str = "<!-- backspace:denied -->";

pub fn denied_reply_marker() -> &'static str {
    DENIED_REPLY_MARKER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_name_carries_maintain_and_triage() {
        assert_eq!(
            Permission::from_api("write", Some("maintain")),
            Permission::Maintain
        );
        assert_eq!(
            Permission::from_api("read", Some("triage")),
            Permission::Triage
        );
        assert_eq!(
            Permission::from_api("admin", Some("admin")),
            Permission::Admin
        );
    }

    #[test]
    fn custom_roles_fall_back_to_the_base_permission() {
        assert_eq!(
            Permission::from_api("write", Some("security-engineer")),
            Permission::Write
        );
        assert_eq!(Permission::from_api("weird", None), Permission::None);
    }

    #[test]
    fn only_write_and_above_start_runs() {
        use Permission::*;
        for (p, ok) in [
            (Admin, true),
            (Maintain, true),
            (Write, true),
            (Triage, false),
            (Read, false),
            (None, false),
        ] {
            assert_eq!(p.can_start_runs(), ok, "{p}");
        }
    }
}
