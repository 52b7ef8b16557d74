//! Pure: the hosts a sandbox may open. The operator's `BACKSPACE_EGRESS_ALLOW` bounds what a
//! repository may ask for in `network.allow`; the repository's list is what its runs get.
//!
//! An entry is `host`, `*.suffix` (any name below `suffix`, not `suffix` itself), or an IP
//! address (`127.0.0.1`, `[::1]`), each with an optional `:port`. Without a port any port is
//! allowed. Names are compared without case and without a trailing dot.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// One name, lower case.
    Name(String),
    /// Names ending in `.suffix`; holds the suffix without its leading dot.
    Below(String),
    Ip(IpAddr),
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    host: Host,
    port: Option<u16>,
}

/// Why an entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not a host, *.suffix or IP address with an optional :port ({why})")]
pub struct EntryError {
    pub entry: String,
    why: &'static str,
}

impl Entry {
    /// Whether this entry lets `host:port` through. `host` is a name or an IP literal (IPv6
    /// without brackets).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let name = normalise(host);
        match &self.host {
            Host::Ip(ip) => parse_ip(&name) == Some(*ip),
            Host::Name(n) => *n == name,
            Host::Below(suffix) => {
                parse_ip(&name).is_none()
                    && name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// Whether everything `other` allows, this entry allows too.
    pub fn covers(&self, other: &Entry) -> bool {
        if self.port.is_some() && self.port != other.port {
            return false;
        }
        match (&self.host, &other.host) {
            (Host::Ip(a), Host::Ip(b)) => a == b,
            (Host::Name(a), Host::Name(b)) => a == b,
            (Host::Below(_), Host::Name(b)) => self.allows(b, other.port.unwrap_or(0)),
            (Host::Below(a), Host::Below(b)) => {
                a == b
                    || (b.ends_with(a.as_str()) && b.len() > a.len() && {
                        b.as_bytes()[b.len() - a.len() - 1] == b'.'
                    })
            }
            _ => false,
        }
    }

    /// The address this entry names, when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    /// The entry a repository would add to allow `host:port`: the host alone for the usual
    /// web ports, `host:port` otherwise.
    pub fn suggested(host: &str, port: u16) -> String {
        let name = normalise(host);
        let shown = if name.contains(':') {
            format!("[{name}]")
        } else {
            name
        };
        if matches!(port, 80 | 443) {
            shown
        } else {
            format!("{shown}:{port}")
        }
    }
}

impl FromStr for Entry {
    type Err = EntryError;

    fn from_str(text: &str) -> Result<Entry, EntryError> {
        let err = |why| EntryError {
            entry: text.to_string(),
            why,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        if t.contains("://") || t.contains('/') {
            return Err(err("a host, not a URL"));
        }
        let (host, port) = split_port(t).map_err(err)?;
        let host = normalise(host);
        if let Some(ip) = parse_ip(&host) {
            return Ok(Entry {
                host: Host::Ip(ip),
                port,
            });
        }
        let (below, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host),
        };
        if !is_host_name(&name) {
            return Err(err(
                "letters, digits, '-' and '.' only; '*' only as a leading '*.'",
            ));
        }
        if below && !name.contains('.') {
            return Err(err(
                "a wildcard needs a domain with a dot, such as *.example.com",
            ));
        }
        let host = if below {
            Host::Below(name)
        } else {
            Host::Name(name)
        };
        Ok(Entry { host, port })
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(n) => write!(f, "{n}")?,
            Host::Below(s) => write!(f, "*.{s}")?,
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// A list of entries: empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// `BACKSPACE_EGRESS_ALLOW`: entries separated by commas or white space.
    pub fn parse(text: &str) -> Result<Allowlist, EntryError> {
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Entry::from_str)
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { entries })
    }

    /// A repository's `network.allow`, one entry per item.
    pub fn from_items<S: AsRef<str>>(items: &[S]) -> Result<Allowlist, EntryError> {
        let entries = items
            .iter()
            .map(|s| Entry::from_str(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether some entry lets `host:port` through.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.entries.iter().any(|e| e.allows(host, port))
    }

    /// Whether some entry covers all that `entry` allows.
    pub fn covers(&self, entry: &Entry) -> bool {
        self.entries.iter().any(|e| e.covers(entry))
    }

    /// The entries of `asked` this list does not cover (empty: `asked` lies within it).
    pub fn not_covered<'a>(&self, asked: &'a Allowlist) -> Vec<&'a Entry> {
        asked.entries.iter().filter(|e| !self.covers(e)).collect()
    }

    /// Whether `ip` is listed by address (which lets a private or loopback address through).
    pub fn lists_address(&self, ip: IpAddr) -> bool {
        self.entries.iter().any(|e| e.ip() == Some(ip))
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.entries.iter().map(Entry::to_string).collect();
        write!(f, "{}", shown.join(", "))
    }
}

/// Lower case, without brackets around an IPv6 address or a trailing dot.
fn normalise(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address.
fn split_port(t: &str) -> Result<(&str, Option<u16>), &'static str> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port must be 1 to 65535"),
        Ok(n) => Ok(Some(n)),
    };
    if let Some(rest) = t.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("an unclosed '['")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((ip, port(p)?)),
            None if after.is_empty() => Ok((ip, None)),
            None => Err("text after ']'"),
        };
    }
    if t.matches(':').count() > 1 {
        return Ok((t, None)); // a bare IPv6 address
    }
    match t.split_once(':') {
        Some((h, p)) => Ok((h, port(p)?)),
        None => Ok((t, None)),
    }
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Allowlist {
        Allowlist::parse(text).expect("a list")
    }

    #[test]
    fn names_wildcards_addresses_and_ports_parse_and_print_back() {
        let l = list("Packages.Example.com., *.cdn.example.com:443 127.0.0.1,[::1]:8080");
        assert_eq!(
            l.to_string(),
            "packages.example.com, *.cdn.example.com:443, 127.0.0.1, [::1]:8080"
        );
        assert_eq!(list("::1").to_string(), "[::1]");
        assert!(list(" , ").is_empty());
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (text, why) in [
            ("https://example.com", "not a URL"),
            ("example.com/simple", "not a URL"),
            ("exa mple.com,a_b.com", "letters, digits"),
            ("*example.com", "letters, digits"),
            ("a.*.example.com", "letters, digits"),
            ("*.com", "needs a domain with a dot"),
            ("example.com:0", "1 to 65535"),
            ("example.com:http", "1 to 65535"),
            ("[::1", "unclosed"),
        ] {
            let e = Allowlist::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn a_name_matches_itself_and_a_wildcard_only_names_below_it() {
        let l = list("pypi.org, *.example.com, 127.0.0.1, api.test:8443");
        assert!(l.allows("pypi.org", 443));
        assert!(l.allows("PyPI.org.", 80));
        assert!(!l.allows("evil-pypi.org", 443));
        assert!(!l.allows("pypi.org.evil.com", 443));
        assert!(l.allows("a.example.com", 443));
        assert!(l.allows("a.b.example.com", 22));
        assert!(
            !l.allows("example.com", 443),
            "the wildcard is for names below"
        );
        assert!(!l.allows("badexample.com", 443));
        assert!(l.allows("127.0.0.1", 5000));
        assert!(!l.allows("127.0.0.2", 5000));
        assert!(l.allows("api.test", 8443));
        assert!(!l.allows("api.test", 443), "the port is part of the entry");
    }

    #[test]
    fn a_repository_entry_lies_within_the_operators_list_or_is_named() {
        let operator = list("*.example.com, pypi.org:443, 127.0.0.1");
        let asked = Allowlist::from_items(&[
            "a.example.com",
            "*.cdn.example.com",
            "*.example.com:443",
            "pypi.org:443",
            "127.0.0.1:8080",
        ])
        .expect("a list");
        assert!(operator.not_covered(&asked).is_empty());
        let asked =
            Allowlist::from_items(&["example.com", "pypi.org", "127.0.0.2", "*.com.example.com"])
                .expect("a list");
        let named: Vec<String> = operator
            .not_covered(&asked)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(named, ["example.com", "pypi.org", "127.0.0.2"]);
        assert!(Allowlist::default()
            .not_covered(&Allowlist::from_items(&["a.b"]).expect("list"))
            .len()
            .eq(&1));
    }

    #[test]
    fn the_suggested_entry_keeps_unusual_ports() {
        assert_eq!(
            Entry::suggested("Evil.Example.com", 443),
            "evil.example.com"
        );
        assert_eq!(
            Entry::suggested("evil.example.com", 8443),
            "evil.example.com:8443"
        );
        assert_eq!(Entry::suggested("::1", 80), "[::1]");
        let entry: Entry = Entry::suggested("10.0.0.1", 5432).parse().expect("entry");
        assert!(entry.allows("10.0.0.1", 5432));
    }

    #[test]
    fn addresses_are_listed_only_by_address() {
        let l = list("localhost, 127.0.0.1:80");
        assert!(l.lists_address("127.0.0.1".parse().expect("ip")));
        assert!(!l.lists_address("::1".parse().expect("ip")));
    }
}
