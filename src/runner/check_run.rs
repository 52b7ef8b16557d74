//! The `Backspace` check run around a commit a run pushed: started `in_progress` as soon as the
//! commit is on GitHub (with the run page as its details), completed once the pull request is
//! open with the conclusion of the repository's test command. A check run is a courtesy, never
//! a reason to fail a run: an installation that has not granted `checks: write` yet still gets
//! its pull request, and a refusal is only logged. [`verdict`] is pure.

use crate::github::{CheckConclusion, CheckOutput, CheckRun, NewCheckRun, RepoClient};

use super::pr_body::TestResult;

/// Starts the check run on `sha`; `None` when GitHub refused it.
pub(crate) async fn start(
    client: &RepoClient,
    sha: &str,
    log_url: Option<&str>,
    run_id: &str,
) -> Option<CheckRun> {
    let new = NewCheckRun {
        head_sha: sha,
        details_url: log_url,
        external_id: run_id,
        output: CheckOutput {
            title: "Backspace is opening the pull request".into(),
            summary: "The agent's work is committed; the test result follows.".into(),
            text: None,
        },
    };
    match client.start_check_run(&new).await {
        Ok(run) => Some(run),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the check run; the run goes on");
            None
        }
    }
}

/// Completes the check run with the test command's result.
pub(crate) async fn finish(
    client: &RepoClient,
    check: &CheckRun,
    test: Option<&TestResult>,
    log_url: Option<&str>,
) {
    let (conclusion, output) = verdict(test, log_url);
    if let Err(e) = client
        .complete_check_run(check.id, conclusion, &output)
        .await
    {
        tracing::warn!(error = %e, "could not complete the check run");
    }
}

/// Pure: the conclusion and output of the check run from the test command's result.
pub fn verdict(test: Option<&TestResult>, log_url: Option<&str>) -> (CheckConclusion, CheckOutput) {
    let log = log_url
        .map(|u| format!("\n\nThe whole run: [live log]({u})."))
        .unwrap_or_default();
    let Some(t) = test else {
        let output = CheckOutput {
            title: "No test command".into(),
            summary: format!(
                "The repository sets no `test` in `.github/backspace.yml`, so Backspace ran no \
                 checks on this commit.{log}"
            ),
            text: None,
        };
        return (CheckConclusion::Neutral, output);
    };
    let command = t.command.replace('`', "'");
    let (conclusion, verdict) = if t.passed {
        (CheckConclusion::Success, "passed")
    } else {
        (CheckConclusion::Failure, "failed")
    };
    let output = CheckOutput {
        title: format!("{command} {verdict} ({})", t.summary),
        summary: format!(
            "The repository's test command `{command}` {verdict} ({}) on this commit, in \
             Backspace's sandbox.{log}",
            t.summary
        ),
        text: Some(format!(
            "The end of its output:\n\n```text\n{}\n```",
            t.output.trim_end().replace("```", "'''")
        )),
    };
    (conclusion, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(passed: bool) -> TestResult {
        TestResult {
            command: "npm test".into(),
            passed,
            summary: if passed { "exit 0" } else { "exit 1" }.into(),
            output: "1 failing\n".into(),
        }
    }

    #[test]
    fn the_conclusion_follows_the_test_command() {
        let (c, out) = verdict(Some(&test(true)), Some("https://bs.example/runs/1"));
        assert_eq!(c, CheckConclusion::Success);
        assert_eq!(out.title, "npm test passed (exit 0)");
        assert!(out
            .summary
            .contains("[live log](https://bs.example/runs/1)"));
        let (c, out) = verdict(Some(&test(false)), None);
        assert_eq!(c, CheckConclusion::Failure);
        assert_eq!(
            out.text.as_deref(),
            Some("The end of its output:\n\n```text\n1 failing\n```")
        );
        let (c, out) = verdict(None, None);
        assert_eq!(
            (c, out.title.as_str()),
            (CheckConclusion::Neutral, "No test command")
        );
    }
}
