//! Pull request reviews: the comments of a submitted review (the context of an iteration asked
//! for in its body), and asking the requester to review the pull request a run opened
//! (`requested_reviewers`; asking again for the same reviewer changes nothing, so it is safe
//! to retry).

use http::Method;
use serde::Deserialize;

use super::models::IssueNumber;
use super::repo::RepoClient;
use super::GithubError;

/// The most comments of one review read (GitHub's page size).
const PER_PAGE: usize = 100;

/// A comment of a review, as the agent is shown it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    pub body: String,
    #[serde(default)]
    pub diff_hunk: Option<String>,
}

impl RepoClient {
    /// The comments of review `review_id` on pull request `pull`, oldest first.
    pub async fn review_comments(
        &self,
        pull: IssueNumber,
        review_id: u64,
    ) -> Result<Vec<ReviewComment>, GithubError> {
        let n = pull.0.to_string();
        let id = review_id.to_string();
        let mut url = self.url(&["pulls", &n, "reviews", &id, "comments"])?;
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string());
        self.get(url).await
    }

    /// Asks `reviewers` (logins) to review pull request `pull`.
    pub async fn request_reviewers(
        &self,
        pull: IssueNumber,
        reviewers: &[&str],
    ) -> Result<(), GithubError> {
        let url = self.url(&["pulls", &pull.0.to_string(), "requested_reviewers"])?;
        let body = serde_json::json!({ "reviewers": reviewers });
        self.call(Method::POST, url, Some(body)).await.map(drop)
    }
}
