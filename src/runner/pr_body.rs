//! Pure: the pull request's body and the pieces the run's final words share with it, from what
//! the run produced. The agent's words go through `safe_text::neutralize` (no mentions, no raw
//! HTML), and the body is kept under GitHub's limit with a note pointing to the live log.

use crate::progress::{count, duration};
use crate::redact::redact;
use crate::run_event::Usage;
use crate::safe_text::{fit, neutralize, truncated_note, GITHUB_BODY_LIMIT};

use super::apply::Refusal;

/// How the repository's test command went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub command: String,
    pub passed: bool,
    pub summary: String,
    /// The end of its output, already cut.
    pub output: String,
}

/// What goes into a PR body.
#[derive(Debug, Clone, Default)]
pub struct PrFacts<'a> {
    pub summary: &'a str,
    pub files: &'a [String],
    pub refused: &'a [Refusal],
    /// Connections the sandbox's egress proxy refused.
    pub blocked: Option<&'a crate::egress::Blocked>,
    pub test: Option<&'a TestResult>,
    /// The issue the PR closes.
    pub closes: Option<u64>,
    pub requester: &'a str,
    pub duration_ms: u64,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub run_id: &'a str,
    /// Why the pull request is a draft, when it is one ([`draft_reason`]).
    pub draft: Option<String>,
    /// The repository's instruction files the agent was given (`AGENTS.md`, …).
    pub instructions: &'a [String],
    pub log_url: Option<&'a str>,
    /// The command word, for "comment `/backspace …`".
    pub command_word: &'a str,
    pub transcript: &'a [String],
    /// Secret values to keep out of the body.
    pub secrets: &'a [&'a str],
}

/// Why a new pull request opens as a draft: the repository's tests fail, or the agent stopped
/// before it finished. `None`: ready for review.
pub fn draft_reason(stopped_early: Option<&str>, test: Option<&TestResult>) -> Option<String> {
    let failing = test.filter(|t| !t.passed).map(|t| {
        let command = t.command.replace('`', "'");
        format!("the test command `{command}` failed ({})", t.summary)
    });
    let stopped = stopped_early.map(|why| format!("the agent stopped early ({why})"));
    match (failing, stopped) {
        (Some(f), Some(s)) => Some(format!("{f}, and {s}")),
        (f, s) => f.or(s),
    }
}

pub fn pr_body(f: &PrFacts<'_>) -> String {
    let word = if f.command_word.is_empty() {
        "backspace"
    } else {
        f.command_word
    };
    let mut out = String::new();
    if let Some(why) = &f.draft {
        out.push_str(&format!(
            "> [!WARNING]\n> This is a draft: {why}. Review what is here, or comment \
             `/{word} <what to do next>` to continue.\n\n"
        ));
    }
    out.push_str(&neutralize(f.summary.trim()));
    out.push_str("\n\n");
    out.push_str(&files_section(f.files));
    if !f.refused.is_empty() {
        out.push_str(&refused_section(f.refused));
    }
    if let Some(blocked) = f.blocked {
        out.push_str(&blocked.markdown());
    }
    if let Some(t) = f.test {
        out.push_str(&test_section(t));
    }
    if !f.instructions.is_empty() {
        out.push_str(&instructions_line(f.instructions));
        out.push_str("\n\n");
    }
    if let Some(n) = f.closes {
        out.push_str(&format!("Closes #{n}\n\n"));
    }
    let mut footer = format!("---\nRequested by @{}", f.requester);
    if let Some(url) = f.log_url {
        footer.push_str(&format!(" · [live log]({url})"));
    }
    footer.push_str(&format!(
        " · {}\n",
        totals(f.duration_ms, &f.usage, f.cost_usd)
    ));
    out.push_str(&footer);
    if !f.transcript.is_empty() {
        out.push_str("\n<details><summary>What the agent did (last steps)</summary>\n\n```text\n");
        for line in f.transcript {
            out.push_str(&line.replace("```", "'''"));
            out.push('\n');
        }
        out.push_str("```\n</details>\n");
    }
    out.push_str(&format!("\n<!-- backspace:pr:{} -->\n", f.run_id));
    let body = redact(&out, f.secrets);
    fit(&body, GITHUB_BODY_LIMIT, &truncated_note(f.log_url))
}

/// `**Instructions followed:** `AGENTS.md`, `CLAUDE.md``.
pub fn instructions_line(files: &[String]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| format!("`{}`", f.replace('`', "'")))
        .collect();
    format!("**Instructions followed:** {}", names.join(", "))
}

pub fn files_section(files: &[String]) -> String {
    let mut out = format!("**Files changed ({}):**\n", files.len());
    for f in files.iter().take(50) {
        out.push_str(&format!("- `{}`\n", f.replace('`', "'")));
    }
    if files.len() > 50 {
        out.push_str(&format!("- … and {} more\n", files.len() - 50));
    }
    out.push('\n');
    out
}

pub fn refused_section(refused: &[Refusal]) -> String {
    let mut out = String::from("**Changes Backspace refused to commit:**\n");
    for r in refused {
        out.push_str(&format!("- `{}`: {}\n", r.path.replace('`', "'"), r.reason));
    }
    out.push('\n');
    out
}

/// `**Tests:** ❌ `npm test` failed (exit 1)` and the end of its output, folded.
pub fn test_section(t: &TestResult) -> String {
    let output = t.output.trim_end();
    if output.trim().is_empty() {
        return format!("{} with no output\n\n", test_line(t));
    }
    format!(
        "{}\n\n<details><summary>The end of its output</summary>\n\n```text\n{}\n```\n</details>\n\n",
        test_line(t),
        output.replace("```", "'''")
    )
}

/// `**Tests:** ✅ `npm test` passed (exit 0)`.
pub fn test_line(t: &TestResult) -> String {
    let (mark, verdict) = if t.passed {
        ("✅", "passed")
    } else {
        ("❌", "failed")
    };
    let command = t.command.replace('`', "'");
    format!("**Tests:** {mark} `{command}` {verdict} ({})", t.summary)
}

/// `⏱ 1m 35s · 10.0k tokens · $0.12`.
pub fn totals(duration_ms: u64, usage: &Usage, cost_usd: Option<f64>) -> String {
    let tokens = usage.total_input() + usage.output_tokens;
    let cost = match cost_usd {
        Some(c) => format!("${c:.2}"),
        None => "cost unknown".into(),
    };
    format!(
        "⏱ {} · {} tokens · {cost}",
        duration(duration_ms),
        count(tokens)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> TestResult {
        TestResult {
            command: "npm test".into(),
            passed: true,
            summary: "exit 0".into(),
            output: "12 passing".into(),
        }
    }

    #[test]
    fn a_pr_body_has_the_summary_files_tests_instructions_closing_line_and_totals() {
        let files = vec![
            "src/signup.ts".to_string(),
            "test/signup.test.ts".to_string(),
        ];
        let test = passing();
        let transcript = vec![
            "bash: npm test → exit 0".to_string(),
            "token ghs_abcdefghijklmnopqrstuvwxyz".to_string(),
        ];
        let instructions = vec!["AGENTS.md".to_string(), "CLAUDE.md".to_string()];
        let body = pr_body(&PrFacts {
            summary: "Validates the email and password fields. cc @octo/security",
            files: &files,
            refused: &[Refusal {
                path: ".github/workflows/ci.yml".into(),
                reason: "changes under .github/workflows/ are not allowed".into(),
            }],
            test: Some(&test),
            closes: Some(7),
            requester: "alice",
            duration_ms: 95_000,
            usage: Usage {
                input_tokens: 9_000,
                output_tokens: 1_000,
                ..Default::default()
            },
            cost_usd: Some(0.12),
            run_id: "r1",
            instructions: &instructions,
            log_url: Some("https://bs.example/runs/r1"),
            command_word: "backspace",
            transcript: &transcript,
            ..Default::default()
        });
        assert!(body.starts_with("Validates the email and password fields. cc @&#8203;octo/security\n\n**Files changed (2):**\n- `src/signup.ts`"), "{body}");
        assert!(
            body.contains("**Changes Backspace refused to commit:**\n- `.github/workflows/ci.yml`")
        );
        assert!(body.contains("**Tests:** ✅ `npm test` passed (exit 0)"));
        assert!(body.contains("**Instructions followed:** `AGENTS.md`, `CLAUDE.md`\n"));
        assert!(body.contains("Closes #7\n"));
        assert!(body.contains("Requested by @alice · [live log](https://bs.example/runs/r1) · ⏱ 1m 35s · 10.0k tokens · $0.12"), "{body}");
        assert!(!body.contains("ghs_abcdef"), "{body}");
        assert!(!body.contains("[!WARNING]"));
    }

    #[test]
    fn a_draft_says_why_it_is_one_and_how_to_go_on() {
        let failing = TestResult {
            passed: false,
            summary: "exit 1".into(),
            ..passing()
        };
        assert_eq!(draft_reason(None, Some(&passing())), None);
        let why = draft_reason(Some("the turn limit (50) was reached"), Some(&failing));
        assert_eq!(
            why.as_deref(),
            Some("the test command `npm test` failed (exit 1), and the agent stopped early (the turn limit (50) was reached)")
        );
        let body = pr_body(&PrFacts {
            summary: "Partial.",
            draft: draft_reason(None, Some(&failing)),
            test: Some(&failing),
            run_id: "r",
            requester: "bob",
            command_word: "bs",
            ..Default::default()
        });
        assert!(
            body.starts_with(
                "> [!WARNING]\n> This is a draft: the test command `npm test` failed (exit 1)."
            ),
            "{body}"
        );
        assert!(body.contains("`/bs <what to do next>`"));
        assert!(body.contains("**Tests:** ❌ `npm test` failed (exit 1)"));
        assert!(body.contains("cost unknown"));
    }

    #[test]
    fn a_huge_summary_is_cut_under_githubs_limit_with_a_note() {
        let summary = "word ".repeat(20_000);
        let body = pr_body(&PrFacts {
            summary: &summary,
            run_id: "r",
            requester: "bob",
            log_url: Some("https://bs.example/runs/r"),
            ..Default::default()
        });
        assert!(body.chars().count() <= GITHUB_BODY_LIMIT);
        assert!(body.contains("[live log](https://bs.example/runs/r)"));
        assert!(body.contains("Truncated"));
    }
}
