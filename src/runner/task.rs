//! The agent's task for a run on GitHub: the request, the issue and its recent comments, and on
//! a pull request its description, the summaries of earlier runs on it, and the place of the
//! review comment that asked. What GitHub cannot give (a deleted issue, a failed listing) is
//! left out rather than failing the run.

use crate::agent::{AgentTask, IssueComment, IssueContext};
use crate::github::{IssueNumber, PullRequest, RepoClient, ReviewComment};
use crate::job::{JobState, ReviewCommentRef};
use crate::repo_settings::RepoSettings;
use crate::store::Job;

use super::Services;

/// Comments of the issue given to the agent, the newest ones.
const ISSUE_COMMENTS: usize = 10;

pub(crate) async fn task_for(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    pr: Option<&PullRequest>,
    settings: &RepoSettings,
    review: &[ReviewComment],
) -> AgentTask {
    let issue = match job.number {
        Some(n) => issue_context(svc, job, client, IssueNumber(n)).await,
        None => None,
    };
    let mut request = job.prompt.clone();
    if let Some(pr) = pr {
        request.push_str(&follow_up(pr));
        request.push_str(&earlier_runs(svc, job).await);
        let review = job.spec.agent().and_then(|a| a.review_comment.as_ref());
        if let Some(rc) = review {
            request.push_str(&review_place(rc));
        }
    }
    if !review.is_empty() {
        request.push_str(&review_context(review));
    }
    AgentTask {
        repo: client.repo().full_name(),
        issue,
        request,
        repo_instructions: settings.instructions.clone(),
        test_command: settings.test.clone(),
        ..AgentTask::default()
    }
}

/// The comments of the review an iteration was asked for in (none for other jobs, or when
/// GitHub cannot list them: the review's body is the request either way).
pub(crate) async fn review_comments(job: &Job, client: &RepoClient) -> Vec<ReviewComment> {
    let review = job.spec.agent().and_then(|a| a.review.as_ref());
    let (Some(review), Some(n)) = (review, job.number) else {
        return Vec::new();
    };
    match client.review_comments(IssueNumber(n), review.id).await {
        Ok(comments) => comments,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the review's comments");
            Vec::new()
        }
    }
}

/// Pure: what the agent is told of the review's comments: each one's file, line and text.
fn review_context(comments: &[ReviewComment]) -> String {
    let mut out = String::from("\n\nThe request was made in a review with these comments:");
    for c in comments {
        let line = c
            .line
            .or(c.original_line)
            .map(|l| l.to_string())
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!("\n- `{}` line {line}: {}", c.path, c.body.trim()));
    }
    out
}

/// The issue and its newest comments, without the bot's own and the one that asked.
async fn issue_context(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    n: IssueNumber,
) -> Option<IssueContext> {
    let issue = client.get_issue(n).await.ok()?;
    let bot = svc.github.bot_login().await.ok();
    let all: Vec<IssueComment> = client
        .list_issue_comments(n)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.author() != bot.as_deref() && Some(c.id) != job.comment_id)
        .map(|c| IssueComment {
            author: c.author().unwrap_or("ghost").to_owned(),
            body: c.body().to_owned(),
        })
        .collect();
    let comments = all[all.len().saturating_sub(ISSUE_COMMENTS)..].to_vec();
    Some(IssueContext {
        number: n.0,
        title: issue.title,
        body: issue.body.unwrap_or_default(),
        comments,
    })
}

/// Pure: what an iteration tells the agent about the pull request it is on.
fn follow_up(pr: &PullRequest) -> String {
    format!(
        "\n\nThis is a follow-up on pull request #{} (branch `{}`), which is checked out. \
         Its description:\n{}",
        pr.number,
        pr.head.branch,
        pr.body.as_deref().unwrap_or("(none)")
    )
}

/// The summaries of the earlier successful runs on this pull request.
async fn earlier_runs(svc: &Services, job: &Job) -> String {
    let Some(n) = job.number else {
        return String::new();
    };
    let jobs = svc
        .store
        .jobs_for(&job.repository, n)
        .await
        .unwrap_or_default();
    let earlier: Vec<String> = jobs
        .iter()
        .filter(|j| j.id != job.id && j.state == JobState::Succeeded)
        .filter_map(|j| {
            let summary = j.result.as_ref()?.report()?.summary.as_deref()?;
            Some(format!("- {}: {summary}", j.prompt))
        })
        .collect();
    if earlier.is_empty() {
        return String::new();
    }
    format!(
        "\n\nEarlier Backspace runs on this pull request:\n{}",
        earlier.join("\n")
    )
}

/// Pure: where the review comment that asked sits.
fn review_place(rc: &ReviewCommentRef) -> String {
    let line = rc.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into());
    format!(
        "\n\nThe request was made in a review comment on `{}` line {line}:\n```diff\n{}\n```",
        rc.path.as_deref().unwrap_or("?"),
        rc.diff_hunk.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_place_names_the_file_line_and_hunk() {
        let rc = ReviewCommentRef {
            id: 1,
            path: Some("src/a.rs".into()),
            line: Some(12),
            diff_hunk: Some("@@ -1 +1 @@\n-a\n+b".into()),
            ..Default::default()
        };
        assert_eq!(
            review_place(&rc),
            "\n\nThe request was made in a review comment on `src/a.rs` line 12:\n```diff\n@@ -1 +1 @@\n-a\n+b\n```"
        );
        assert!(review_place(&ReviewCommentRef::default()).contains("`?` line ?"));
    }

    #[test]
    fn a_reviews_comments_are_listed_with_their_file_and_line() {
        let comments = vec![
            ReviewComment {
                id: 1,
                path: "src/a.rs".into(),
                line: Some(3),
                original_line: None,
                body: "handle None here\n".into(),
                diff_hunk: None,
            },
            ReviewComment {
                id: 2,
                path: "README.md".into(),
                line: None,
                original_line: Some(9),
                body: "typo".into(),
                diff_hunk: None,
            },
        ];
        assert_eq!(
            review_context(&comments),
            "\n\nThe request was made in a review with these comments:\n- `src/a.rs` line 3: handle None here\n- `README.md` line 9: typo"
        );
    }
}
