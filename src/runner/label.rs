//! A run started by a label goes ahead only when the label is the repository's trigger label:
//! `label:` in its `.github/backspace.yml`, or `backspace` when it sets none. Ingress cannot
//! read a repository's settings, so it queues a job for every label a person adds to an
//! issue; this check, the first thing the worker does with such a job, ends the others at once
//! and quietly (no reaction, no comment, no permission check), as `skipped`.

use crate::github::RepoClient;
use crate::job::{JobResult, JobSource, SkipReport};
use crate::store::Job;
use crate::trigger::is_trigger_label;

use super::prepare::read_settings;
use super::worker::JobEnd;

/// `Err` with the job's end when a label job is not for this repository's label.
pub(crate) async fn check(job: &Job, client: &RepoClient) -> Result<(), JobEnd> {
    if job.source != JobSource::Label {
        return Ok(());
    }
    // Jobs queued before labels were checked here were checked at ingress.
    let Some(added) = job.spec.agent().and_then(|a| a.label.as_deref()) else {
        return Ok(());
    };
    // Settings that cannot be read leave the default label; a run on it then reports them.
    let configured = read_settings(client).await.ok().and_then(|s| s.label);
    if is_trigger_label(added, configured.as_deref()) {
        return Ok(());
    }
    let trigger = configured
        .as_deref()
        .unwrap_or(crate::repo_settings::DEFAULT_LABEL);
    let reason =
        format!("the label `{added}` does not start runs here (the trigger label is `{trigger}`)");
    tracing::info!(%reason, "label job skipped");
    Err(JobEnd::Finished(JobResult::Skipped(SkipReport { reason })))
}
