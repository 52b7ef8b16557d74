//! Pure: the pull request's body and the run's final words, from what the run produced.

use crate::progress::{count, duration};
use crate::redact::redact;
use crate::run_event::Usage;

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
    pub test: Option<&'a TestResult>,
    /// The issue the PR closes.
    pub closes: Option<u64>,
    pub requester: &'a str,
    pub duration_ms: u64,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub run_id: &'a str,
    /// Why the run stopped early, when it did (the PR is then a draft).
    pub stopped_early: Option<String>,
    pub transcript: &'a [String],
    /// Secret values to keep out of the body.
    pub secrets: &'a [&'a str],
}

const MAX_BODY_CHARS: usize = 60_000;

pub fn pr_body(f: &PrFacts<'_>) -> String {
    let mut out = String::new();
    if let Some(why) = &f.stopped_early {
        out.push_str(&format!(
            "> [!WARNING]\n> The agent stopped early ({why}). This draft holds the work so far: \
             review it, or comment `/backspace <what to do next>` to continue.\n\n"
        ));
    }
    out.push_str(f.summary.trim());
    out.push_str("\n\n");
    out.push_str(&files_section(f.files));
    if !f.refused.is_empty() {
        out.push_str(&refused_section(f.refused));
    }
    if let Some(t) = f.test {
        out.push_str(&test_section(t));
    }
    if let Some(n) = f.closes {
        out.push_str(&format!("Closes #{n}\n\n"));
    }
    out.push_str(&format!(
        "---\nRequested by @{} · {}\n",
        f.requester,
        totals(f.duration_ms, &f.usage, f.cost_usd)
    ));
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
    if body.chars().count() > MAX_BODY_CHARS {
        let cut: String = body.chars().take(MAX_BODY_CHARS).collect();
        format!("{cut}\n\n[… cut to fit GitHub's limit]")
    } else {
        body
    }
}

pub fn files_section(files: &[String]) -> String {
    let mut out = format!("**Files changed ({}):**\n", files.len());
    for f in files.iter().take(50) {
        out.push_str(&format!("- `{f}`\n"));
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
        out.push_str(&format!("- `{}`: {}\n", r.path, r.reason));
    }
    out.push('\n');
    out
}

fn test_section(t: &TestResult) -> String {
    let verdict = if t.passed { "✅ passed" } else { "❌ failed" };
    format!(
        "**Tests:** `{}` {verdict} ({})\n\n<details><summary>Test output</summary>\n\n```text\n{}\n```\n</details>\n\n",
        t.command,
        t.summary,
        t.output.replace("```", "'''")
    )
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

    #[test]
    fn a_pr_body_has_the_summary_files_tests_closing_line_and_totals() {
        let files = vec![
            "src/signup.ts".to_string(),
            "test/signup.test.ts".to_string(),
        ];
        let test = TestResult {
            command: "npm test".into(),
            passed: true,
            summary: "exit 0".into(),
            output: "12 passing".into(),
        };
        let transcript = vec![
            "bash: npm test → exit 0".to_string(),
            "token ghs_abcdefghijklmnopqrstuvwxyz".to_string(),
        ];
        let body = pr_body(&PrFacts {
            summary: "Validates the email and password fields.",
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
            stopped_early: None,
            transcript: &transcript,
            secrets: &[],
        });
        assert!(body.starts_with("Validates the email and password fields.\n\n**Files changed (2):**\n- `src/signup.ts`"), "{body}");
        assert!(
            body.contains("**Changes Backspace refused to commit:**\n- `.github/workflows/ci.yml`")
        );
        assert!(body.contains("**Tests:** `npm test` ✅ passed (exit 0)"));
        assert!(body.contains("Closes #7\n"));
        assert!(body.contains("Requested by @alice · ⏱ 1m 35s · 10.0k tokens · $0.12"));
        assert!(!body.contains("ghs_abcdef"), "{body}");
        assert!(!body.contains("[!WARNING]"));
    }

    #[test]
    fn a_draft_says_why_it_stopped_and_how_to_go_on() {
        let body = pr_body(&PrFacts {
            summary: "Partial.",
            stopped_early: Some("the turn limit (50) was reached".into()),
            run_id: "r",
            requester: "bob",
            ..Default::default()
        });
        assert!(
            body.starts_with(
                "> [!WARNING]\n> The agent stopped early (the turn limit (50) was reached)."
            ),
            "{body}"
        );
        assert!(body.contains("`/backspace <what to do next>`"));
        assert!(body.contains("cost unknown"));
    }
}
