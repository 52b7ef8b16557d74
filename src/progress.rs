//! Pure: a run's events → the text of its one progress comment. The comment is a view of the
//! event stream, like the SSE stream and the run page: fold the events with [`Progress::apply`],
//! then [`Progress::render`]. The GitHub client adds the hidden marker that finds the comment
//! again after a restart (`github::with_marker`).

use crate::run_event::{RunEvent, RunStatus, Usage};

/// The phases a run goes through, in order, with the `stage` names `progress` events use.
pub const PHASES: [(&str, &str); 6] = [
    ("queued", "Queued"),
    ("sandbox", "Sandbox ready"),
    ("agent", "Agent at work"),
    ("checks", "Checks"),
    ("push", "Pushed"),
    ("pr", "Pull request"),
];

/// What the comment shows, folded from the events so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub run_id: String,
    pub prompt: Option<String>,
    /// Index into [`PHASES`] of the phase under way.
    pub phase: usize,
    pub turn: Option<u32>,
    pub last_action: Option<String>,
    pub last_message: Option<String>,
    pub pr_url: Option<String>,
    pub files_changed: Vec<String>,
    pub errors: Vec<String>,
    /// Things the reader should know about the run itself (it was restarted, say): `progress`
    /// events of stage `restart`.
    pub notices: Vec<String>,
    /// Tokens and cost so far, from the agent's progress.
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub finished: Option<Finished>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub status: RunStatus,
    pub duration_ms: u64,
    pub usage: Usage,
    pub cost_usd: f64,
}

/// What the comment shows besides the events: the time so far (a clock) and the link to the
/// live log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub elapsed_ms: u64,
    pub log_url: Option<String>,
}

/// The longest excerpt of an agent message or action shown in the comment.
const EXCERPT: usize = 200;

impl Progress {
    pub fn new(run_id: &str) -> Self {
        Progress {
            run_id: run_id.to_owned(),
            ..Default::default()
        }
    }

    pub fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::Start { prompt, .. } => {
                if prompt.is_some() {
                    self.prompt.clone_from(prompt);
                }
            }
            RunEvent::Progress {
                stage,
                message,
                usage,
                cost_usd,
                ..
            } => {
                if let Some(u) = usage {
                    self.usage = *u;
                }
                if cost_usd.is_some() {
                    self.cost_usd = *cost_usd;
                }
                if stage == "restart" {
                    self.notices.push(excerpt(message));
                }
                if let Some(i) = PHASES.iter().position(|(s, _)| s == stage) {
                    self.phase = self.phase.max(i);
                }
                if stage == "agent" {
                    if let Some(turn) = parse_turn(message) {
                        self.turn = Some(turn);
                    }
                }
                self.last_message = Some(excerpt(message));
            }
            RunEvent::Tool { name, input, .. } => {
                self.last_action = Some(describe_tool(name, input));
            }
            RunEvent::AiMessage { text } => {
                if !text.trim().is_empty() {
                    self.last_message = Some(excerpt(text));
                }
            }
            RunEvent::PrCreated {
                pr_url,
                files_changed,
            } => {
                self.pr_url = Some(pr_url.clone());
                self.files_changed.clone_from(files_changed);
                self.phase = PHASES.len() - 1;
            }
            RunEvent::Error { message } => self.errors.push(excerpt(message)),
            RunEvent::Complete {
                status,
                duration_ms,
                usage,
                cost_usd,
                ..
            } => {
                self.finished = Some(Finished {
                    status: *status,
                    duration_ms: *duration_ms,
                    usage: *usage,
                    cost_usd: *cost_usd,
                });
            }
        }
    }

    fn succeeded(&self) -> bool {
        self.finished
            .as_ref()
            .is_some_and(|f| f.status == RunStatus::Succeeded)
    }

    /// The comment body.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::new();
        let title = match self.finished.as_ref().map(|f| f.status) {
            None => "⏳ Backspace is working on this",
            Some(RunStatus::Succeeded) => "✅ Backspace opened a pull request",
            Some(RunStatus::Answered) => "💬 Backspace answered",
            Some(RunStatus::Failed) => "❌ Backspace could not finish",
            Some(RunStatus::Cancelled) => "⏹️ Backspace run cancelled",
        };
        out.push_str(&format!("### {title}\n\n"));
        if let Some(p) = &self.prompt {
            for line in excerpt(p).lines() {
                out.push_str(&format!("> {line}\n"));
            }
            out.push('\n');
        }
        for (i, (stage, label)) in PHASES.iter().enumerate() {
            let done = i < self.phase
                || (i == self.phase && self.succeeded())
                || (*stage == "pr" && self.pr_url.is_some());
            let mut line = format!("- [{}] {label}", if done { "x" } else { " " });
            if i == self.phase && self.finished.is_none() {
                if *stage == "agent" {
                    if let Some(t) = self.turn {
                        line.push_str(&format!(" · turn {t}"));
                    }
                    if let Some(a) = &self.last_action {
                        line.push_str(&format!(" · {a}"));
                    }
                } else {
                    line.push_str(" ⏳");
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
        if let Some(url) = &self.pr_url {
            out.push_str(&format!("**Pull request:** {url}\n\n"));
        }
        if !self.files_changed.is_empty() {
            out.push_str(&format!(
                "**Files changed ({}):** ",
                self.files_changed.len()
            ));
            let shown: Vec<String> = self
                .files_changed
                .iter()
                .take(20)
                .map(|f| format!("`{f}`"))
                .collect();
            out.push_str(&shown.join(", "));
            if self.files_changed.len() > 20 {
                out.push_str(&format!(" and {} more", self.files_changed.len() - 20));
            }
            out.push_str("\n\n");
        }
        for n in &self.notices {
            out.push_str(&format!("ℹ️ {n}\n\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("**Error:** {e}\n\n"));
        }
        if self.finished.is_none() {
            if let Some(m) = &self.last_message {
                out.push_str(&format!("_{}_\n\n", m.replace('\n', " ")));
            }
        }
        let (ms, usage, cost) = match &self.finished {
            Some(f) => (f.duration_ms, f.usage, f.cost_usd),
            None => (live.elapsed_ms, self.usage, self.cost_usd.unwrap_or(0.0)),
        };
        let mut footer = vec![format!("⏱ {}", duration(ms))];
        let tokens = usage.total_input() + usage.output_tokens;
        if tokens > 0 {
            footer.push(format!("{} tokens", count(tokens)));
            footer.push(format!("${cost:.2}"));
        }
        if let Some(url) = &live.log_url {
            footer.push(format!("[live log]({url})"));
        }
        out.push_str(&footer.join(" · "));
        out.push('\n');
        out
    }
}

/// `turn 3: …` → 3.
fn parse_turn(message: &str) -> Option<u32> {
    let rest = message.strip_prefix("turn ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn describe_tool(name: &str, input: &serde_json::Value) -> String {
    let detail = match name {
        "bash" => input["command"]
            .as_str()
            .map(|c| c.lines().next().unwrap_or_default().to_owned()),
        "str_replace_based_edit_tool" => {
            match (input["command"].as_str(), input["path"].as_str()) {
                (Some(cmd), Some(path)) => Some(format!("{cmd} {path}")),
                _ => None,
            }
        }
        _ => None,
    };
    match detail {
        Some(d) => format!("`{name}` `{}`", excerpt(&d).replace('`', "'")),
        None => format!("`{name}`"),
    }
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= EXCERPT {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(EXCERPT).collect();
        format!("{cut}…")
    }
}

/// 1m 12s, 45s, 1h 3m.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// 950, 12.3k, 1.2M.
pub fn count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn progress(stage: &str, message: &str) -> RunEvent {
        RunEvent::progress(stage, message)
    }

    #[test]
    fn the_comment_shows_the_phase_turn_and_last_action() {
        let mut p = Progress::new("r1");
        p.apply(&RunEvent::Start {
            run_id: "r1".into(),
            repo: None,
            prompt: Some("add validation".into()),
        });
        p.apply(&progress("sandbox", "sandbox ready"));
        p.apply(&RunEvent::Progress {
            stage: "agent".into(),
            message: "turn 3: bash".into(),
            percentage: None,
            usage: Some(Usage {
                input_tokens: 12_000,
                output_tokens: 300,
                ..Default::default()
            }),
            cost_usd: Some(0.041),
        });
        p.apply(&RunEvent::Tool {
            name: "bash".into(),
            input: json!({"command": "cargo test --all\necho done"}),
            output: String::new(),
            exit_code: Some(0),
            duration_ms: Some(5),
        });
        let live = Live {
            elapsed_ms: 72_000,
            log_url: Some("https://bs.example/runs/r1?sig=x".into()),
        };
        let body = p.render(&live);
        assert!(
            body.starts_with("### ⏳ Backspace is working on this"),
            "{body}"
        );
        assert!(body.contains("> add validation"));
        assert!(body.contains("- [x] Queued\n- [x] Sandbox ready\n- [ ] Agent at work · turn 3 · `bash` `cargo test --all`"), "{body}");
        assert!(
            body.contains(
                "⏱ 1m 12s · 12.3k tokens · $0.04 · [live log](https://bs.example/runs/r1?sig=x)"
            ),
            "{body}"
        );
    }

    #[test]
    fn the_final_comment_has_the_link_files_and_totals() {
        let mut p = Progress::new("r2");
        p.apply(&progress("push", "pushed backspace/1-x"));
        p.apply(&RunEvent::PrCreated {
            pr_url: "https://github.com/o/r/pull/9".into(),
            files_changed: vec!["src/a.rs".into(), "README.md".into()],
        });
        p.apply(&RunEvent::Complete {
            run_id: "r2".into(),
            status: RunStatus::Succeeded,
            duration_ms: 95_000,
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 500,
                cache_read_input_tokens: 8500,
                cache_creation_input_tokens: 0,
            },
            cost_usd: 0.12,
        });
        let body = p.render(&Live::default());
        assert!(body.contains("### ✅ Backspace opened a pull request"));
        assert!(body.contains("- [x] Pushed\n- [x] Pull request"), "{body}");
        assert!(body.contains("**Pull request:** https://github.com/o/r/pull/9"));
        assert!(body.contains("**Files changed (2):** `src/a.rs`, `README.md`"));
        assert!(body.contains("⏱ 1m 35s · 10.0k tokens · $0.12"), "{body}");
    }

    #[test]
    fn a_failure_says_what_failed() {
        let mut p = Progress::new("r3");
        p.apply(&progress("agent", "turn 1"));
        p.apply(&RunEvent::Error {
            message: "the model API answered 529 overloaded five times; try again later".into(),
        });
        p.apply(&RunEvent::Complete {
            run_id: "r3".into(),
            status: RunStatus::Failed,
            duration_ms: 3000,
            usage: Usage::default(),
            cost_usd: 0.0,
        });
        let body = p.render(&Live::default());
        assert!(body.contains("❌ Backspace could not finish"));
        assert!(body.contains("**Error:** the model API answered 529"));
        assert!(body.contains("- [ ] Agent at work\n"), "{body}");
    }

    #[test]
    fn a_restart_stays_visible_to_the_end() {
        let mut p = Progress::new("r4");
        p.apply(&progress(
            "restart",
            "started again after an interruption (attempt 2 of 2)",
        ));
        p.apply(&progress("agent", "turn 1: bash"));
        let body = p.render(&Live::default());
        assert!(
            body.contains("ℹ️ started again after an interruption (attempt 2 of 2)"),
            "{body}"
        );
        assert!(body.contains("- [x] Queued"), "{body}");
    }

    #[test]
    fn durations_and_counts_read_well() {
        assert_eq!(duration(999), "0s");
        assert_eq!(duration(61_000), "1m 1s");
        assert_eq!(duration(3_780_000), "1h 3m");
        assert_eq!(count(950), "950");
        assert_eq!(count(1_234_567), "1.2M");
    }
}
