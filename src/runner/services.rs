//! What the workers need, built once at start-up and shared by every run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use url::Url;

use crate::agent::{Agent, AgentConfig, ModelProvider};
use crate::github::{GithubApp, InstallationId, ProgressConfig, RepoClient, RepoName};
use crate::sandbox::Sandboxes;
use crate::store::{Job, Store};

use super::apply;

/// The workers' settings.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Who holds leases (`host:pid:nonce`, also on the sandboxes this instance creates).
    pub instance_id: String,
    /// Runs at once on this instance.
    pub max_jobs: usize,
    /// How long a claim lasts without renewal; a crashed worker's job is retried after it.
    pub lease: Duration,
    /// How often the queue is looked at when nothing wakes the workers.
    pub poll: Duration,
    /// Attempts of one job (a crash or restart costs one), then it fails with a comment.
    pub max_attempts: u32,
    /// On shutdown, how long running jobs may go on before their leases are released.
    pub grace: Duration,
    pub command_word: String,
    /// Base of the links in comments.
    pub public_url: Url,
    pub apply_policy: apply::Policy,
    pub progress: ProgressConfig,
}

impl RunnerSettings {
    pub fn new(instance_id: String, max_jobs: usize, public_url: Url) -> Self {
        RunnerSettings {
            instance_id,
            max_jobs: max_jobs.max(1),
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            max_attempts: 2,
            grace: Duration::from_secs(90),
            command_word: "backspace".into(),
            public_url,
            apply_policy: apply::Policy::default(),
            progress: ProgressConfig::default(),
        }
    }
}

/// Gives the signed live-log link of a run id.
pub type LinkSigner = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything a run uses; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub github: GithubApp,
    pub sandboxes: Sandboxes,
    pub model: Arc<dyn ModelProvider>,
    pub agent: AgentConfig,
    pub settings: Arc<RunnerSettings>,
    /// Poked when a job is queued, so a worker picks it up at once.
    pub wake: Arc<Notify>,
    /// The live-log link for a run id, when the run page is served.
    pub run_link: Option<LinkSigner>,
}

impl Services {
    /// The GitHub client for a job's repository: its installation from the webhook, or (for
    /// API runs) asked of GitHub. The error says what is wrong, for the job's result.
    pub async fn client_for(&self, job: &Job) -> Result<RepoClient, String> {
        let repo: RepoName = job.repository.parse().map_err(|e| format!("{e}"))?;
        let installation = match job.installation_id {
            Some(id) => InstallationId(id),
            None => self
                .github
                .installation_for_repo(&repo)
                .await
                .map_err(|e| format!("the app is not installed on {repo}: {e}"))?,
        };
        Ok(self.github.repo(installation, repo))
    }

    /// The agent for a run, with the repository's turn limit (`max_turns`, at most 200 by
    /// validation) when it set one.
    pub fn agent(&self, max_turns: Option<u32>) -> Agent {
        let mut config = self.agent.clone();
        if let Some(t) = max_turns {
            config.budgets.max_turns = t;
        }
        Agent::new(self.model.clone(), config)
    }
}
