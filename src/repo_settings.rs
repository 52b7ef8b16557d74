//! Pure: a repository's own settings, `.github/backspace.yml` on its default branch. Unknown
//! keys are errors (a typo is reported, not ignored), and every error says where and what, so the
//! comment that answers an invalid file tells the maintainer how to fix it.
//!
//! ```yaml
//! setup: npm ci            # or a list; runs before the agent
//! test: npm test           # the agent is told to make it pass; its result goes in the PR
//! instructions: |          # appended to the system prompt
//!   Use TypeScript strict mode.
//! max_turns: 40
//! label: ai                # the label that starts a run (default: backspace)
//! image: node:22-bookworm  # the sandbox image
//! network:                 # through the egress proxy, within BACKSPACE_EGRESS_ALLOW
//!   allow: [registry.npmjs.org, "*.cdn.example.com"]
//!   setup_only: false      # true: only the setup commands get it
//! ```

use serde::Deserialize;

/// Where the settings live.
pub const PATH: &str = ".github/backspace.yml";

/// The label that starts a run when the repository's settings name none.
pub const DEFAULT_LABEL: &str = "backspace";

/// Larger files are refused unread.
pub const MAX_BYTES: usize = 64 * 1024;

pub const MAX_TURNS_LIMIT: u32 = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    #[serde(default, deserialize_with = "one_or_many")]
    pub setup: Vec<String>,
    pub test: Option<String>,
    pub instructions: Option<String>,
    pub max_turns: Option<u32>,
    pub label: Option<String>,
    pub image: Option<String>,
    pub network: Option<NetworkSettings>,
}

/// `network`: the hosts the sandbox may open through the egress proxy (none without it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    #[serde(default)]
    pub allow: Vec<String>,
    /// Only the setup commands get the network; the agent and the test command do not.
    #[serde(default)]
    pub setup_only: bool,
}

impl RepoSettings {
    /// The hosts the repository asks for (empty: no network). Checked by [`RepoSettings::parse`].
    pub fn network_allow(&self) -> crate::egress::Allowlist {
        let items = self.network.as_ref().map_or(&[][..], |n| &n.allow[..]);
        crate::egress::Allowlist::from_items(items).unwrap_or_default()
    }

    /// Whether the agent's phase keeps the network the setup commands had.
    pub fn agent_network(&self) -> bool {
        self.network.as_ref().is_some_and(|n| !n.setup_only)
    }

    /// Entries of `network.allow` the operator's list does not cover, as a settings error.
    pub fn check_network(&self, operator: &crate::egress::Allowlist) -> Result<(), SettingsError> {
        let asked = self.network_allow();
        let missing: Vec<String> = operator
            .not_covered(&asked)
            .iter()
            .map(|e| e.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let bound = if operator.is_empty() {
            "this server allows no network (BACKSPACE_EGRESS_ALLOW is empty)".to_string()
        } else {
            format!("this server allows only {operator} (BACKSPACE_EGRESS_ALLOW)")
        };
        Err(SettingsError::Invalid(format!(
            "network.allow asks for {}, but {bound}",
            missing.join(", ")
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{PATH} is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("{PATH} is not valid: {0}")]
    Invalid(String),
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => vec![],
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

impl RepoSettings {
    /// Parses and checks the file's text. An empty file is the defaults.
    pub fn parse(text: &str) -> Result<RepoSettings, SettingsError> {
        if text.len() > MAX_BYTES {
            return Err(SettingsError::TooLarge);
        }
        if text.trim().is_empty() {
            return Ok(RepoSettings::default());
        }
        let s: RepoSettings =
            serde_yaml_ng::from_str(text).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        if let Some(n) = self.max_turns {
            if n == 0 || n > MAX_TURNS_LIMIT {
                return invalid(format!(
                    "max_turns must be between 1 and {MAX_TURNS_LIMIT} (got {n})"
                ));
            }
        }
        if self.setup.iter().any(|c| c.trim().is_empty()) {
            return invalid("setup commands must not be empty".into());
        }
        if self.test.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return invalid("test must be a command, not empty".into());
        }
        if let Some(label) = &self.label {
            if label.trim().is_empty() || label.len() > 50 {
                return invalid("label must be 1 to 50 characters".into());
            }
        }
        if let Some(image) = &self.image {
            let ok = !image.is_empty()
                && image.len() <= 255
                && image
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
            if !ok {
                return invalid(format!("image {image:?} is not a Docker image reference"));
            }
        }
        if let Some(network) = &self.network {
            if let Err(e) = crate::egress::Allowlist::from_items(&network.allow) {
                return invalid(format!("network.allow: {e}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let s = RepoSettings::parse(
            "setup:\n  - npm ci\n  - npm run build\ntest: npm test\ninstructions: |\n  Use strict mode.\nmax_turns: 40\nlabel: ai\nimage: node:22-bookworm\n",
        )
        .unwrap();
        assert_eq!(s.setup, vec!["npm ci", "npm run build"]);
        assert_eq!(s.test.as_deref(), Some("npm test"));
        assert_eq!(s.instructions.as_deref(), Some("Use strict mode.\n"));
        assert_eq!((s.max_turns, s.label.as_deref()), (Some(40), Some("ai")));
    }

    #[test]
    fn one_setup_command_may_be_a_string_and_empty_is_default() {
        assert_eq!(
            RepoSettings::parse("setup: make deps").unwrap().setup,
            vec!["make deps"]
        );
        assert_eq!(RepoSettings::parse("").unwrap(), RepoSettings::default());
        assert_eq!(
            RepoSettings::parse("# nothing\n").unwrap(),
            RepoSettings::default()
        );
    }

    #[test]
    fn the_network_key_names_hosts_and_whether_the_agent_keeps_them() {
        let s = RepoSettings::parse(
            "network:\n  allow: [packages.example.com, \"*.cdn.example.com\"]\n  setup_only: true\n",
        )
        .unwrap();
        assert_eq!(
            s.network_allow().to_string(),
            "packages.example.com, *.cdn.example.com"
        );
        assert!(!s.agent_network());
        let s = RepoSettings::parse("network:\n  allow: [pypi.org]\n").unwrap();
        assert!(s.agent_network());
        assert!(RepoSettings::default().network_allow().is_empty());
    }

    #[test]
    fn hosts_the_operator_does_not_allow_are_invalid_settings() {
        let s = RepoSettings::parse("network:\n  allow: [pypi.org, evil.test:8080]\n").unwrap();
        let operator = crate::egress::Allowlist::parse("pypi.org, *.example.com").unwrap();
        assert_eq!(
            s.check_network(&operator).unwrap_err().to_string(),
            ".github/backspace.yml is not valid: network.allow asks for evil.test:8080, \
             but this server allows only pypi.org, *.example.com (BACKSPACE_EGRESS_ALLOW)"
        );
        let none = s.check_network(&crate::egress::Allowlist::default());
        assert!(none
            .unwrap_err()
            .to_string()
            .contains("BACKSPACE_EGRESS_ALLOW is empty"),);
        assert_eq!(RepoSettings::default().check_network(&operator), Ok(()));
    }

    #[test]
    fn mistakes_are_reported_with_what_and_where() {
        let cases = [
            ("tset: npm test", "unknown field `tset`"),
            ("max_turns: lots", "max_turns"),
            ("max_turns: 0", "between 1 and 200"),
            ("max_turns: 5000", "between 1 and 200"),
            ("test: ''", "test must be a command"),
            ("setup: [npm ci, '']", "setup commands must not be empty"),
            ("image: 'x; rm -rf /'", "not a Docker image reference"),
            ("label: ''", "label must be"),
            ("- a\n- b", "invalid type"),
            ("test: [unclosed", "line 1"),
            (
                "network:\n  allow: [https://pypi.org]",
                "network.allow: \"https://pypi.org\" is not a host",
            ),
            ("network:\n  alow: [pypi.org]", "unknown field `alow`"),
            ("network:\n  allow: pypi.org", "invalid type"),
        ];
        for (text, want) in cases {
            let err = RepoSettings::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(
                err.starts_with(".github/backspace.yml is not valid"),
                "{err}"
            );
        }
        assert_eq!(
            RepoSettings::parse(&"#".repeat(MAX_BYTES + 1)),
            Err(SettingsError::TooLarge)
        );
    }
}
