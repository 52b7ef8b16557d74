//! Pure: a run's events → the text of its one progress comment. The comment is a view of the
//! event stream, like the SSE stream and the run page: fold the events with [`Progress::apply`],
//! then [`Progress::render`] while the run goes (the phases, the turn, how to stop it) and
//! [`Progress::render_closed`] at its end: the verdict first (a [`Closing`], which the runner's
//! report phase decides), the phase list folded away under it, the totals last. Text written by
//! others (the prompt, the agent's words, errors) goes through `safe_text::neutralize`. The
//! GitHub client adds the hidden marker that finds the comment again after a restart
//! (`github::with_marker`).

use crate::run_event::{RunEvent, RunStatus, Usage};
use crate::safe_text::neutralize;

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
    /// How the repository's test command went: the command the `checks` stage ran.
    pub checks: Option<CheckOutcome>,
    /// Connections the egress proxy refused, with the settings change that would allow them.
    pub blocked: crate::egress::Blocked,
    pub finished: Option<Finished>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub status: RunStatus,
    pub duration_ms: u64,
    pub usage: Usage,
    pub cost_usd: f64,
}

/// The test command's result, as the checks line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub command: String,
    pub passed: bool,
    /// `exit 1`.
    pub status: String,
}

/// What the comment shows besides the events: the time so far, the link to the live log, and
/// the command word for "comment `/backspace cancel`".
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub elapsed_ms: u64,
    pub log_url: Option<String>,
    pub command_word: String,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            elapsed_ms: 0,
            log_url: None,
            command_word: "backspace".into(),
        }
    }
}

/// A run's last words, decided by the report phase: the verdict line (the outcome and its
/// links) and what goes under it (the summary, files, tests, what to do next).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closing {
    pub headline: String,
    pub body: String,
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
            RunEvent::Tool {
                name,
                input,
                exit_code,
                ..
            } => {
                self.last_action = Some(describe_tool(name, input));
                if PHASES[self.phase].0 == "checks" && self.checks.is_none() {
                    let command = input["command"].as_str().unwrap_or_default().to_owned();
                    let code = exit_code.unwrap_or(-1);
                    self.checks = Some(CheckOutcome {
                        command,
                        passed: code == 0,
                        status: format!("exit {code}"),
                    });
                }
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
            RunEvent::EgressBlocked { .. } => self.blocked.apply(event),
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

    /// The run ended with its phase under way done: a pull request, or an answer.
    fn succeeded(&self) -> bool {
        self.finished
            .as_ref()
            .is_some_and(|f| matches!(f.status, RunStatus::Succeeded | RunStatus::Answered))
    }

    /// The comment while the run goes: what it is doing, and how to stop it.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::from("### ⏳ Backspace is working on this");
        if let Some(url) = &live.log_url {
            out.push_str(&format!(" · [live log]({url})"));
        }
        out.push_str("\n\n");
        self.push_log(&mut out, "");
        out.push_str(&self.blocked.markdown());
        if self.finished.is_none() {
            if let Some(m) = &self.last_message {
                out.push_str(&format!("_{}_\n\n", neutralize(&m.replace('\n', " "))));
            }
        }
        out.push_str(&self.totals(live.elapsed_ms));
        if self.finished.is_none() {
            out.push_str(&format!(
                "\nTo stop it, comment `/{} cancel`.\n",
                live.command_word
            ));
        }
        out
    }

    /// The comment at the run's end: the verdict and what goes with it first, then the phase
    /// list folded away, then the totals.
    pub fn render_closed(&self, closing: &Closing, live: &Live) -> String {
        let mut out = format!("### {}\n\n", closing.headline.trim());
        let body = closing.body.trim();
        if !body.is_empty() {
            out.push_str(body);
            out.push_str("\n\n");
        }
        // Outside the fold: what the maintainer may want to change.
        out.push_str(&self.blocked.markdown());
        out.push_str("<details><summary>How the run went</summary>\n\n");
        self.push_log(&mut out, body);
        out.push_str("</details>\n\n");
        out.push_str(&self.totals(live.elapsed_ms));
        out
    }

    /// The prompt, the phase list, notices and errors (but those `shown` already holds).
    fn push_log(&self, out: &mut String, shown: &str) {
        if let Some(p) = &self.prompt {
            for line in excerpt(p).lines() {
                out.push_str(&format!("> {}\n", neutralize(line)));
            }
            out.push('\n');
        }
        for (i, (stage, label)) in PHASES.iter().enumerate() {
            out.push_str(&self.phase_line(i, stage, label));
            out.push('\n');
        }
        out.push('\n');
        // At the end the verdict names the pull request and the files.
        if self.finished.is_none() {
            if let Some(url) = &self.pr_url {
                out.push_str(&format!("**Pull request:** {url}\n\n"));
            }
            if !self.files_changed.is_empty() {
                out.push_str(&files_line(&self.files_changed));
                out.push_str("\n\n");
            }
        }
        for n in &self.notices {
            out.push_str(&format!("ℹ️ {}\n\n", neutralize(n)));
        }
        for e in &self.errors {
            let e = neutralize(e);
            if !shown.contains(&e) {
                out.push_str(&format!("**Error:** {e}\n\n"));
            }
        }
    }

    fn phase_line(&self, i: usize, stage: &str, label: &str) -> String {
        let failed_checks = stage == "checks" && self.checks.as_ref().is_some_and(|c| !c.passed);
        let done = !failed_checks
            && (i < self.phase
                || (i == self.phase && self.succeeded())
                || (stage == "pr" && self.pr_url.is_some()));
        let mut line = format!("- [{}] {label}", if done { "x" } else { " " });
        if stage == "checks" {
            if let Some(c) = &self.checks {
                let (mark, verdict) = if c.passed {
                    ("✅", "passed")
                } else {
                    ("❌", "failed")
                };
                let command = c.command.replace('`', "'");
                line.push_str(&format!(" · {mark} `{command}` {verdict} ({})", c.status));
                return line;
            }
            if done {
                line.push_str(" · no test command");
                return line;
            }
        }
        let ended = self.finished.as_ref().map(|f| f.status);
        match ended {
            // Where a failed or cancelled run stopped.
            Some(RunStatus::Failed) if i == self.phase => line.push_str(" ❌"),
            Some(RunStatus::Cancelled) if i == self.phase => line.push_str(" ⏹️"),
            _ => {}
        }
        if i == self.phase && ended.is_none() {
            if stage == "agent" {
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
        line
    }

    /// `⏱ 1m 35s · 2.9k tokens · $0.01`: the run's totals once it ended (always, so a failed or
    /// cancelled run says what it cost too), else the time so far and what the agent used.
    fn totals(&self, elapsed_ms: u64) -> String {
        let (clock, usage, cost, always) = match &self.finished {
            Some(f) => (duration(f.duration_ms), f.usage, f.cost_usd, true),
            None => (
                format!("{} so far", duration(elapsed_ms)),
                self.usage,
                self.cost_usd.unwrap_or(0.0),
                false,
            ),
        };
        let mut footer = vec![format!("⏱ {clock}")];
        let tokens = usage.total_input() + usage.output_tokens;
        if always || tokens > 0 {
            footer.push(format!("{} tokens", count(tokens)));
            footer.push(format!("${cost:.2}"));
        }
        footer.join(" · ") + "\n"
    }
}

/// `**Files changed (2):** `a.rs`, `b.rs``, the first 20.
pub fn files_line(files: &[String]) -> String {
    let shown: Vec<String> = files
        .iter()
        .take(20)
        .map(|f| format!("`{}`", f.replace('`', "'")))
        .collect();
    let mut line = format!("**Files changed ({}):** {}", files.len(), shown.join(", "));
    if files.len() > 20 {
        line.push_str(&format!(" and {} more", files.len() - 20));
    }
    line
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
    fn the_comment_shows_the_phase_turn_last_action_and_how_to_stop() {
        let mut p = Progress::new("r1");
        p.apply(&RunEvent::Start {
            run_id: "r1".into(),
            repo: None,
            prompt: Some("add validation, cc @octo/team".into()),
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
            command_word: "bs".into(),
        };
        let body = p.render(&live);
        assert!(
            body.starts_with(
                "### ⏳ Backspace is working on this · [live log](https://bs.example/runs/r1?sig=x)"
            ),
            "{body}"
        );
        assert!(
            body.contains("> add validation, cc @&#8203;octo/team"),
            "{body}"
        );
        assert!(body.contains("- [x] Queued\n- [x] Sandbox ready\n- [ ] Agent at work · turn 3 · `bash` `cargo test --all`"), "{body}");
        assert!(
            body.contains("⏱ 1m 12s so far · 12.3k tokens · $0.04\n"),
            "{body}"
        );
        assert!(
            body.ends_with("To stop it, comment `/bs cancel`.\n"),
            "{body}"
        );
    }

    #[test]
    fn the_closed_comment_puts_the_verdict_first_and_folds_the_phases() {
        let mut p = Progress::new("r2");
        p.apply(&progress("checks", "running `npm test`"));
        p.apply(&RunEvent::Tool {
            name: "bash".into(),
            input: json!({"command": "npm test"}),
            output: "ok".into(),
            exit_code: Some(0),
            duration_ms: Some(5),
        });
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
        let closing = Closing {
            headline: "✅ Opened [#9](https://github.com/o/r/pull/9)".into(),
            body: "Did it.".into(),
        };
        let body = p.render_closed(&closing, &Live::default());
        assert!(
            body.starts_with(
                "### ✅ Opened [#9](https://github.com/o/r/pull/9)\n\nDid it.\n\n<details>"
            ),
            "{body}"
        );
        assert!(
            body.contains(
                "- [x] Checks · ✅ `npm test` passed (exit 0)\n- [x] Pushed\n- [x] Pull request"
            ),
            "{body}"
        );
        assert!(
            !body.contains("**Files changed"),
            "the verdict names them: {body}"
        );
        assert!(
            body.ends_with("</details>\n\n⏱ 1m 35s · 10.0k tokens · $0.12\n"),
            "{body}"
        );
        assert!(!body.contains("cancel"), "{body}");
    }

    #[test]
    fn blocked_connections_show_while_the_run_goes_and_outside_the_fold_at_its_end() {
        let mut p = Progress::new("r7");
        p.apply(&progress("agent", "turn 2"));
        let blocked = RunEvent::EgressBlocked {
            host: "cdn.example.com".into(),
            port: 443,
            count: 2,
            command: Some("npm ci".into()),
            reason: "refused".into(),
            suggested_allow: Some(vec!["cdn.example.com".into()]),
            operator_change: None,
        };
        p.apply(&blocked);
        let live = p.render(&Live::default());
        let section = "**🚫 Network blocked:** the sandbox's egress proxy refused these \
                       connections.\n\n- `cdn.example.com:443` 2 times, by `npm ci`\n";
        assert!(live.contains(section), "{live}");
        let closing = Closing {
            headline: "✅ Done".into(),
            body: "Did it.".into(),
        };
        let closed = p.render_closed(&closing, &Live::default());
        let at = closed.find(section).expect("the section");
        assert!(at < closed.find("<details>").expect("the fold"), "{closed}");
        assert!(closed.contains("    - cdn.example.com\n```"), "{closed}");
    }

    #[test]
    fn a_failed_test_is_a_cross_not_a_tick() {
        let mut p = Progress::new("r5");
        p.apply(&progress("checks", "running `npm test`"));
        p.apply(&RunEvent::Tool {
            name: "bash".into(),
            input: json!({"command": "npm test"}),
            output: "1 failing".into(),
            exit_code: Some(1),
            duration_ms: Some(5),
        });
        p.apply(&progress("push", "pushed"));
        let body = p.render(&Live::default());
        assert!(
            body.contains("- [ ] Checks · ❌ `npm test` failed (exit 1)\n"),
            "{body}"
        );
    }

    #[test]
    fn a_failure_shows_what_failed_and_what_it_cost() {
        let mut p = Progress::new("r3");
        p.apply(&progress("agent", "turn 1"));
        p.apply(&RunEvent::Error {
            message: "the model API answered 529 overloaded <b>five</b> times".into(),
        });
        p.apply(&RunEvent::Complete {
            run_id: "r3".into(),
            status: RunStatus::Failed,
            duration_ms: 3000,
            usage: Usage {
                input_tokens: 2_000,
                ..Usage::default()
            },
            cost_usd: 0.01,
        });
        let body = p.render_closed(&Closing::default(), &Live::default());
        assert!(
            body.contains(
                "**Error:** the model API answered 529 overloaded &lt;b>five&lt;/b> times"
            ),
            "{body}"
        );
        assert!(body.contains("- [ ] Agent at work ❌\n"), "{body}");
        assert!(body.ends_with("⏱ 3s · 2.0k tokens · $0.01\n"), "{body}");
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
