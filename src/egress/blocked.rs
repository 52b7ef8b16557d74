//! Pure: blocked connections, counted and said. [`Tally`] counts the proxy's refusals by host
//! and port and decides when one becomes an `egress_blocked` run event (the first at once, then
//! at most one a second per host and port, and the last count at the end); [`event`] makes it,
//! with the `.github/backspace.yml` change that would allow it; [`Blocked`] folds the events
//! back and [`Blocked::markdown`] is what the progress comment and the pull request show.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::allowlist::{Allowlist, Entry};
use super::proxy::{Reason, Refusal};
use crate::run_event::RunEvent;
use crate::safe_text::neutralize;

/// At most one event a second per host and port; the count catches up.
const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Count {
    count: u64,
    reported: u64,
    at: Option<Instant>,
    last: Refusal,
    command: Option<String>,
}

/// Refusals counted by host and port.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(String, u16), Count>,
}

impl Tally {
    /// Counts a refusal; returns its count when it is to be reported now.
    pub fn record(&mut self, r: Refusal, command: Option<String>, now: Instant) -> Option<u64> {
        let key = (r.host.to_ascii_lowercase(), r.port);
        let c = self.counts.entry(key).or_insert(Count {
            count: 0,
            reported: 0,
            at: None,
            last: r.clone(),
            command: None,
        });
        c.count += 1;
        c.last = r;
        if command.is_some() {
            c.command = command;
        }
        let due = c.at.is_none_or(|at| now.duration_since(at) >= EVERY);
        if !due {
            return None;
        }
        c.at = Some(now);
        c.reported = c.count;
        Some(c.count)
    }

    /// What was counted since it was last reported: refusal, count and command.
    pub fn unreported(&mut self) -> Vec<(Refusal, u64, Option<String>)> {
        self.counts
            .values_mut()
            .filter(|c| c.count > c.reported)
            .map(|c| {
                c.reported = c.count;
                (c.last.clone(), c.count, c.command.clone())
            })
            .collect()
    }
}

/// The run event for a refusal: the repository's list with this host added (when the host is
/// what is missing), and what the operator must change first when their list does not allow it.
pub fn event(
    r: &Refusal,
    count: u64,
    command: Option<String>,
    repo: &Allowlist,
    operator: &Allowlist,
) -> RunEvent {
    let wanted = Entry::suggested(&r.host, r.port);
    let (suggested_allow, operator_change) = match r.reason {
        Reason::NotAllowed if wanted.parse::<Entry>().is_err() => (None, None),
        Reason::NotAllowed => {
            let mut list: Vec<String> = repo.entries().iter().map(Entry::to_string).collect();
            list.push(wanted.clone());
            let covered = wanted.parse().is_ok_and(|e: Entry| operator.covers(&e));
            let note = (!covered)
                .then(|| format!("the operator must first add {wanted} to BACKSPACE_EGRESS_ALLOW"));
            (Some(list), note)
        }
        Reason::Address(_) => (
            None,
            Some(
                "only the operator can open it, by listing that address in BACKSPACE_EGRESS_ALLOW"
                    .to_string(),
            ),
        ),
        Reason::Limit => (
            None,
            Some("the run reached its cap on network connections or bytes".to_string()),
        ),
    };
    RunEvent::EgressBlocked {
        host: r.host.clone(),
        port: r.port,
        count,
        command,
        reason: super::proxy::refusal_text(&r.host, r.port, r.reason)
            .trim()
            .to_string(),
        suggested_allow,
        operator_change,
    }
}

/// The `network` settings that allow `entries`, as `.github/backspace.yml` writes them.
pub fn settings_yaml(entries: &[String]) -> String {
    let mut out = String::from("network:\n  allow:\n");
    for e in entries {
        let quoted = if e.starts_with('*') || e.starts_with('[') {
            format!("\"{e}\"")
        } else {
            e.clone()
        };
        out.push_str(&format!("    - {quoted}\n"));
    }
    out
}

/// One blocked host and port, as the reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub host: String,
    pub port: u16,
    pub count: u64,
    pub command: Option<String>,
    pub suggested_allow: Option<Vec<String>>,
    pub operator_change: Option<String>,
}

/// The blocked connections of a run, folded from its events (the latest count wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocked {
    items: Vec<Item>,
}

impl Blocked {
    pub fn apply(&mut self, event: &RunEvent) {
        let RunEvent::EgressBlocked {
            host,
            port,
            count,
            command,
            suggested_allow,
            operator_change,
            ..
        } = event
        else {
            return;
        };
        let item = Item {
            host: host.clone(),
            port: *port,
            count: *count,
            command: command.clone(),
            suggested_allow: suggested_allow.clone(),
            operator_change: operator_change.clone(),
        };
        match self
            .items
            .iter_mut()
            .find(|i| i.host == item.host && i.port == item.port)
        {
            Some(old) => {
                let command = item.command.clone().or(old.command.take());
                *old = Item { command, ..item };
            }
            None => self.items.push(item),
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a RunEvent>) -> Blocked {
        let mut b = Blocked::default();
        for e in events {
            b.apply(e);
        }
        b
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The section the comment and the pull request show: each host, how often, by what, and
    /// the settings change that would allow them all.
    pub fn markdown(&self) -> String {
        if self.items.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "**🚫 Network blocked:** the sandbox's egress proxy refused these connections.\n\n",
        );
        let mut allow: Vec<String> = vec![];
        let mut notes: Vec<String> = vec![];
        for i in &self.items {
            let times = if i.count == 1 {
                "once".to_string()
            } else {
                format!("{} times", i.count)
            };
            let by = match &i.command {
                Some(c) => format!(", by `{}`", one_line(c)),
                None => String::new(),
            };
            out.push_str(&format!(
                "- `{}:{}` {times}{by}\n",
                one_line(&i.host),
                i.port
            ));
            for e in i.suggested_allow.iter().flatten() {
                if !allow.contains(e) {
                    allow.push(e.clone());
                }
            }
            if let Some(n) = &i.operator_change {
                notes.push(format!(
                    "`{}:{}`: {}",
                    one_line(&i.host),
                    i.port,
                    neutralize(n)
                ));
            }
        }
        out.push('\n');
        if !allow.is_empty() {
            out.push_str(&format!(
                "To allow {}, `{}` would say:\n\n```yaml\n{}```\n\n",
                if self.items.len() == 1 { "it" } else { "them" },
                crate::repo_settings::PATH,
                settings_yaml(&allow)
            ));
        }
        for n in notes {
            out.push_str(&format!("{n}.\n"));
        }
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out
    }
}

/// A command on one line inside inline code, cut short.
fn one_line(command: &str) -> String {
    let flat: String = command
        .replace(['\n', '\r'], " ")
        .replace('`', "'")
        .chars()
        .take(120)
        .collect();
    if flat.len() < command.len() {
        format!("{flat}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::address::Special;

    fn refused(host: &str, port: u16, reason: Reason) -> Refusal {
        Refusal {
            host: host.into(),
            port,
            reason,
        }
    }

    #[test]
    fn the_first_refusal_is_reported_at_once_and_repeats_at_most_each_second() {
        let mut t = Tally::default();
        let t0 = Instant::now();
        let r = refused("evil.test", 443, Reason::NotAllowed);
        assert_eq!(t.record(r.clone(), Some("curl".into()), t0), Some(1));
        assert_eq!(t.record(r.clone(), None, t0), None);
        assert_eq!(t.record(r.clone(), None, t0), None);
        assert_eq!(t.record(r.clone(), None, t0 + EVERY), Some(4));
        assert_eq!(t.record(r.clone(), None, t0 + EVERY), None);
        let left = t.unreported();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].1, left[0].2.as_deref()), (5, Some("curl")));
        assert!(t.unreported().is_empty());
    }

    #[test]
    fn a_host_the_operator_allows_gets_the_repositorys_list_with_it_added() {
        let repo = Allowlist::parse("packages.example.com").expect("repo");
        let operator = Allowlist::parse("*.example.com, 127.0.0.1").expect("operator");
        let e = event(
            &refused("cdn.example.com", 443, Reason::NotAllowed),
            2,
            Some("npm ci".into()),
            &repo,
            &operator,
        );
        let RunEvent::EgressBlocked {
            suggested_allow,
            operator_change,
            reason,
            ..
        } = e
        else {
            panic!("not a block: {e:?}");
        };
        assert_eq!(
            suggested_allow,
            Some(vec![
                "packages.example.com".into(),
                "cdn.example.com".into()
            ])
        );
        assert_eq!(operator_change, None);
        assert!(
            reason.contains("not in this repository's network.allow"),
            "{reason}"
        );
        let e = event(
            &refused("evil.test", 8443, Reason::NotAllowed),
            1,
            None,
            &repo,
            &operator,
        );
        let RunEvent::EgressBlocked {
            operator_change, ..
        } = e
        else {
            panic!("not a block");
        };
        assert_eq!(
            operator_change.as_deref(),
            Some("the operator must first add evil.test:8443 to BACKSPACE_EGRESS_ALLOW")
        );
    }

    #[test]
    fn the_report_names_each_host_and_the_settings_that_allow_them() {
        let repo = Allowlist::parse("packages.example.com").expect("repo");
        let operator = Allowlist::parse("*.example.com").expect("operator");
        let events = [
            event(
                &refused("cdn.example.com", 443, Reason::NotAllowed),
                1,
                Some("npm ci `--x`".into()),
                &repo,
                &operator,
            ),
            event(
                &refused("cdn.example.com", 443, Reason::NotAllowed),
                3,
                None,
                &repo,
                &operator,
            ),
            event(
                &refused(
                    "metadata.example.com",
                    80,
                    Reason::Address(Special::Metadata),
                ),
                1,
                Some("curl http://metadata.example.com/".into()),
                &repo,
                &operator,
            ),
        ];
        let b = Blocked::from_events(&events);
        insta::assert_snapshot!(b.markdown(), @r#"
        **🚫 Network blocked:** the sandbox's egress proxy refused these connections.

        - `cdn.example.com:443` 3 times, by `npm ci '--x'`
        - `metadata.example.com:80` once, by `curl http://metadata.example.com/`

        To allow them, `.github/backspace.yml` would say:

        ```yaml
        network:
          allow:
            - packages.example.com
            - cdn.example.com
        ```

        `metadata.example.com:80`: only the operator can open it, by listing that address in BACKSPACE_EGRESS_ALLOW.

        "#);
        assert_eq!(Blocked::default().markdown(), "");
    }

    #[test]
    fn wildcards_and_addresses_are_quoted_in_the_yaml() {
        let yaml = settings_yaml(&["*.cdn.example.com".into(), "[::1]:80".into(), "a.b".into()]);
        assert_eq!(
            yaml,
            "network:\n  allow:\n    - \"*.cdn.example.com\"\n    - \"[::1]:80\"\n    - a.b\n"
        );
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
        assert_eq!(parsed["network"]["allow"][0], "*.cdn.example.com");
    }
}
