//! Installation tokens and their cache. A token is asked for one repository and the permissions a
//! run needs, cached per (installation, repository), and replaced at least
//! [`TOKEN_REFRESH_MARGIN`] before GitHub's `expires_at`, so a token handed to a `git push` still
//! has minutes to live. Its text is opaque: no length or prefix is assumed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;

use super::models::{InstallationId, RepoName};

/// How long before `expires_at` a cached token is replaced.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// An installation token and when it expires (seconds since the epoch). `Debug` redacts it.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: SecretString,
    pub expires_at_unix: u64,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<redacted>")
            .field("expires_at_unix", &self.expires_at_unix)
            .finish()
    }
}

impl InstallationToken {
    /// Still good to hand out at `now`: more than the refresh margin left.
    pub fn is_fresh(&self, now_unix: u64) -> bool {
        self.expires_at_unix > now_unix.saturating_add(TOKEN_REFRESH_MARGIN.as_secs())
    }
}

type Key = (InstallationId, String);
/// One slot per (installation, repository); the async mutex makes concurrent callers wait for
/// one token request instead of each sending their own.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<InstallationToken>>>;

/// The token cache, shared by every client of the app.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<Key, Slot>>,
}

fn key(installation: InstallationId, repo: &RepoName) -> Key {
    // GitHub names are case-insensitive.
    (installation, repo.full_name().to_ascii_lowercase())
}

impl TokenCache {
    pub(crate) fn slot(&self, installation: InstallationId, repo: &RepoName) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key(installation, repo)).or_default().clone()
    }

    /// Drops every token of an installation (a 401/404 for it, or it was deleted or suspended).
    pub(crate) fn forget_installation(&self, installation: InstallationId) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (k, slot) in slots.iter() {
            if k.0 == installation {
                // A slot being refreshed right now is left to its holder, which stores a
                // new token anyway; clearing the others is what matters.
                if let Ok(mut guard) = slot.try_lock() {
                    *guard = None;
                }
            }
        }
        slots.retain(|k, _| k.0 != installation);
    }
}

/// Parses GitHub's timestamps (`2016-07-11T22:14:10Z`, also with fractional seconds or a
/// numeric offset) into seconds since the epoch.
pub fn parse_github_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0i64)
    } else {
        let idx = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(idx);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let oh: i64 = oh.parse().ok()?;
        let om: i64 = om.parse().ok()?;
        (t, sign * (oh * 3600 + om * 60))
    };
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    u64::try_from(secs).ok()
}

/// Formats seconds since the epoch the way GitHub does (`2016-07-11T22:14:10Z`).
pub fn format_github_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_times_parse_to_epoch_seconds() {
        assert_eq!(parse_github_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_github_time("2016-07-11T22:14:10Z"),
            Some(1_468_275_250)
        );
        assert_eq!(
            parse_github_time("2016-07-11T22:14:10.123Z"),
            Some(1_468_275_250)
        );
        assert_eq!(
            parse_github_time("2016-07-12T00:14:10+02:00"),
            Some(1_468_275_250)
        );
        assert_eq!(parse_github_time("yesterday"), None);
        assert_eq!(parse_github_time("2016-13-11T22:14:10Z"), None);
    }

    #[test]
    fn formatting_round_trips() {
        for t in [0, 1_468_275_250, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_github_time(&format_github_time(t)), Some(t));
        }
    }

    #[test]
    fn a_token_is_refreshed_five_minutes_before_it_expires() {
        let t = InstallationToken {
            token: SecretString::from("ghs_s3cr3t".to_string()),
            expires_at_unix: 10_000,
        };
        assert!(t.is_fresh(10_000 - 301));
        assert!(!t.is_fresh(10_000 - 300));
        assert!(!t.is_fresh(10_001));
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn forgetting_an_installation_leaves_the_others() {
        let cache = TokenCache::default();
        let repo = RepoName::new("o", "r");
        let tok = || InstallationToken {
            token: SecretString::from("t".to_string()),
            expires_at_unix: u64::MAX,
        };
        *cache
            .slot(InstallationId(1), &repo)
            .try_lock()
            .expect("free") = Some(tok());
        *cache
            .slot(InstallationId(2), &repo)
            .try_lock()
            .expect("free") = Some(tok());
        cache.forget_installation(InstallationId(1));
        assert!(cache
            .slot(InstallationId(1), &repo)
            .try_lock()
            .expect("free")
            .is_none());
        assert!(cache
            .slot(InstallationId(2), &repo)
            .try_lock()
            .expect("free")
            .is_some());
    }
}
