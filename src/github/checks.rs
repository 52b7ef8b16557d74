//! The Checks API: the `Backspace` check run on each commit Backspace pushes, so the result
//! shows in the pull request's Checks tab and merge box. It starts `in_progress` with the run
//! page as `details_url`, and ends `completed` with the conclusion of the repository's test
//! command (`success`, `failure`, or `neutral` when it has none) and its tail as the output.
//! Starting is safe to retry: the commit's check runs are looked up first, and one carrying
//! this run's id (`external_id`) is taken instead of creating a second; completing is a PATCH.

use http::Method;
use serde::Deserialize;

use super::repo::RepoClient;
use super::tokens::format_github_time;
use super::GithubError;
use crate::clock::unix_secs;

/// The check run's name on GitHub.
pub const CHECK_NAME: &str = "Backspace";

/// GitHub's limit on a check run output's `summary` and `text`, in characters.
pub const OUTPUT_LIMIT: usize = 65_535;

/// How a check run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckConclusion {
    Success,
    Failure,
    /// Nothing to judge by: the repository has no test command.
    Neutral,
}

impl CheckConclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConclusion::Success => "success",
            CheckConclusion::Failure => "failure",
            CheckConclusion::Neutral => "neutral",
        }
    }
}

/// A check run's `output`: a title, a markdown summary, and more markdown under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
}

impl CheckOutput {
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "title": self.title,
            "summary": cut(&self.summary),
        });
        if let Some(text) = &self.text {
            v["text"] = cut(text).into();
        }
        v
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= OUTPUT_LIMIT {
        return text.to_owned();
    }
    let kept: String = text.chars().take(OUTPUT_LIMIT - 20).collect();
    format!("{kept}\n[… cut]")
}

/// The fields of a check run Backspace reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub details_url: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

#[derive(Deserialize)]
struct CheckRunList {
    check_runs: Vec<CheckRun>,
}

/// What starting a check run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckRun<'a> {
    pub head_sha: &'a str,
    /// The run page.
    pub details_url: Option<&'a str>,
    /// The run's id, to find the check run again.
    pub external_id: &'a str,
    pub output: CheckOutput,
}

impl RepoClient {
    /// The `Backspace` check runs on a commit.
    pub async fn check_runs_for(&self, sha: &str) -> Result<Vec<CheckRun>, GithubError> {
        let mut url = self.url(&["commits", sha, "check-runs"])?;
        url.query_pairs_mut()
            .append_pair("check_name", CHECK_NAME)
            .append_pair("filter", "all")
            .append_pair("per_page", "100");
        let list: CheckRunList = self.get(url).await?;
        Ok(list.check_runs)
    }

    /// Starts the run's check run on its commit, `in_progress`; the one a retry already
    /// started is taken instead.
    pub async fn start_check_run(&self, new: &NewCheckRun<'_>) -> Result<CheckRun, GithubError> {
        let existing = self.check_runs_for(new.head_sha).await?;
        if let Some(run) = existing
            .into_iter()
            .find(|r| r.external_id.as_deref() == Some(new.external_id))
        {
            return Ok(run);
        }
        let mut body = serde_json::json!({
            "name": CHECK_NAME,
            "head_sha": new.head_sha,
            "status": "in_progress",
            "started_at": format_github_time(unix_secs()),
            "external_id": new.external_id,
            "output": new.output.json(),
        });
        if let Some(url) = new.details_url {
            body["details_url"] = url.into();
        }
        let url = self.url(&["check-runs"])?;
        self.call(Method::POST, url, Some(body)).await?.json()
    }

    /// Completes a check run with its conclusion and output.
    pub async fn complete_check_run(
        &self,
        id: u64,
        conclusion: CheckConclusion,
        output: &CheckOutput,
    ) -> Result<CheckRun, GithubError> {
        let body = serde_json::json!({
            "status": "completed",
            "conclusion": conclusion.as_str(),
            "completed_at": format_github_time(unix_secs()),
            "output": output.json(),
        });
        let url = self.url(&["check-runs", &id.to_string()])?;
        self.call(Method::PATCH, url, Some(body)).await?.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_over_githubs_limit_is_cut() {
        let out = CheckOutput {
            title: "t".into(),
            summary: "x".repeat(OUTPUT_LIMIT + 10),
            text: None,
        };
        let v = out.json();
        let summary = v["summary"].as_str().unwrap_or_default();
        assert!(summary.chars().count() <= OUTPUT_LIMIT);
        assert!(summary.ends_with("[… cut]"));
        assert!(v.get("text").is_none());
    }
}
