//! One progress comment per run, created once and then edited as the run goes. Edits are
//! coalesced: `update` only replaces the newest wanted body, and one task per comment writes it,
//! so a burst of events costs one or two edits, never a queue of stale ones. The task writes in
//! order and always re-reads the newest body before each attempt (a retried write sends the
//! newest body, not the one that failed), so the newest state lands last and an older one never
//! overwrites it. A hidden marker in the body finds the comment again after a restart.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::models::{Comment, IssueNumber};
use super::repo::RepoClient;
use super::GithubError;
use crate::retry::{with_retries, Attempt};

/// The marker of a run's progress comment: `<!-- backspace:run:<run_id> -->`.
pub fn progress_marker(run_id: &str) -> String {
    // Only characters that cannot end the HTML comment or break the marker.
    let clean: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("<!-- backspace:run:{clean} -->")
}

/// The body with the run's marker at its end (once).
pub fn with_marker(body: &str, run_id: &str) -> String {
    let marker = progress_marker(run_id);
    if body.contains(&marker) {
        body.to_string()
    } else {
        format!("{}\n\n{marker}", body.trim_end())
    }
}

/// The run id in a body's marker, if it has one.
pub fn run_id_from_marker(body: &str) -> Option<&str> {
    let start = body.find("<!-- backspace:run:")? + "<!-- backspace:run:".len();
    let rest = &body[start..];
    let end = rest.find(" -->")?;
    let id = &rest[..end];
    (!id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then_some(id)
}

#[derive(Debug, Clone)]
pub struct ProgressConfig {
    /// The least time between two edits of the comment (throttling on top of pacing).
    pub min_edit_interval: Duration,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        ProgressConfig {
            min_edit_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
struct Wanted {
    version: u64,
    body: String,
}

#[derive(Debug, Clone)]
struct Landed {
    /// The newest version the task tried, and how that went.
    version: u64,
    error: Option<String>,
}

/// The progress comment of one run.
#[derive(Debug)]
pub struct ProgressComment {
    comment: Comment,
    wanted: watch::Sender<Wanted>,
    landed: watch::Receiver<Landed>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressComment {
    /// Finds the run's comment on the issue (after a restart) or creates it, with `body`.
    pub async fn start(
        client: RepoClient,
        issue: IssueNumber,
        run_id: &str,
        body: &str,
        config: ProgressConfig,
    ) -> Result<Self, GithubError> {
        let marker = progress_marker(run_id);
        let body = with_marker(body, run_id);
        let comment = match client.find_bot_comment_with_marker(issue, &marker).await? {
            Some(existing) => existing,
            None => client.create_comment(issue, &body).await?,
        };
        let already = comment.body() == body;
        let (wanted_tx, wanted_rx) = watch::channel(Wanted {
            version: if already { 0 } else { 1 },
            body,
        });
        let (landed_tx, landed_rx) = watch::channel(Landed {
            version: 0,
            error: None,
        });
        let writer = write_loop(
            client,
            comment.id,
            run_id.to_string(),
            config,
            wanted_rx,
            landed_tx,
        );
        // The run's own span: the writer's lines belong to the run whose comment it edits.
        let task = tokio::spawn(writer.in_current_span());
        Ok(ProgressComment {
            comment,
            wanted: wanted_tx,
            landed: landed_rx,
            task,
        })
    }

    pub fn comment_id(&self) -> u64 {
        self.comment.id
    }

    pub fn html_url(&self) -> &str {
        &self.comment.html_url
    }

    /// Asks for `body` to be shown; returns at once. Replaces any body not yet written.
    pub fn update(&self, body: impl Into<String>) -> u64 {
        let body = body.into();
        let mut version = 0;
        self.wanted.send_modify(|w| {
            w.version += 1;
            w.body = body;
            version = w.version;
        });
        version
    }

    /// Waits until the newest body asked for has landed, or its write failed.
    pub async fn flush(&self) -> Result<(), GithubError> {
        let target = self.wanted.borrow().version;
        let mut landed = self.landed.clone();
        let result = landed
            .wait_for(|l| l.version >= target)
            .await
            .map(|l| l.clone());
        match result {
            Ok(Landed { error: None, .. }) => Ok(()),
            Ok(Landed {
                error: Some(reason),
                ..
            }) => Err(GithubError::Transport {
                method: "PATCH".into(),
                path: format!("progress comment {}", self.comment.id),
                reason,
            }),
            Err(_) => Err(GithubError::Transport {
                method: "PATCH".into(),
                path: format!("progress comment {}", self.comment.id),
                reason: "the progress writer stopped".into(),
            }),
        }
    }

    /// Writes the final body and waits for it to land.
    pub async fn finish(self, body: impl Into<String>) -> Result<(), GithubError> {
        self.update(body);
        let result = self.flush().await;
        self.task.abort();
        result
    }
}

async fn write_loop(
    client: RepoClient,
    comment_id: u64,
    run_id: String,
    config: ProgressConfig,
    mut wanted: watch::Receiver<Wanted>,
    landed: watch::Sender<Landed>,
) {
    let mut tried = 0u64;
    let mut last_write: Option<Instant> = None;
    loop {
        if wanted.borrow().version <= tried {
            if wanted.changed().await.is_err() && wanted.borrow().version <= tried {
                return;
            }
            continue;
        }
        if let Some(last) = last_write {
            tokio::time::sleep_until(last + config.min_edit_interval).await;
        }
        // Each version is a write with its own retry budget, so a burst of faults during
        // intermediate states never uses up the final state's retries; a retry always sends the
        // newest body, and a newer version ends this write's retries (`Superseded`).
        let version = wanted.borrow_and_update().version;
        let tries = with_retries(client.retry_policy(), "progress edit", |_| {
            let newest = wanted.borrow_and_update().clone();
            last_write = Some(Instant::now());
            let client = &client;
            let body = with_marker(&newest.body, &run_id);
            async move {
                if newest.version != version {
                    return Attempt::Done(Written::Superseded);
                }
                match client.attempt_update_comment(comment_id, &body).await {
                    Attempt::Done(_) => Attempt::Done(Written::Landed),
                    Attempt::Failed(e) => Attempt::Failed(e),
                    Attempt::Retry { error, hint } => Attempt::Retry { error, hint },
                }
            }
        })
        .await;
        let error = match tries.result {
            Ok(Written::Superseded) => continue,
            Ok(Written::Landed) => None,
            Err(gave_up) => {
                let error = gave_up.into_error().to_string();
                tracing::warn!(comment_id, attempts = tries.attempts, error = %error, "progress edit failed");
                Some(error)
            }
        };
        tried = version;
        landed.send_replace(Landed { version, error });
    }
}

/// How one version's write ended.
enum Written {
    Landed,
    /// A newer version was asked for before this one landed: that one is written instead.
    Superseded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_is_appended_once() {
        let body = with_marker("Working…", "run-42_a");
        assert!(body.ends_with("<!-- backspace:run:run-42_a -->"));
        assert_eq!(with_marker(&body, "run-42_a"), body);
        assert_eq!(run_id_from_marker(&body), Some("run-42_a"));
        assert_eq!(run_id_from_marker("no marker"), None);
    }

    #[test]
    fn a_run_id_cannot_close_the_html_comment() {
        let m = progress_marker("x --> <script>");
        assert_eq!(m, "<!-- backspace:run:x--script -->");
        assert_eq!(m.matches("-->").count(), 1);
        assert_eq!(run_id_from_marker(&m), Some("x--script"));
    }
}
