//! One agent run on GitHub, as a sequence of phases, each a function with typed input and
//! output:
//!
//! 1. **gate** (`gate`): may the requester start runs here? A refusal ends the job at once.
//! 2. **announce** (`announce`): 👀, the progress comment, the event sink, the first events.
//! 3. **prepare** (`prepare`): the repository's settings, the branch plan, the host's clone,
//!    the agent's task.
//! 4. **work** (`work`): the sandbox: setup commands, the agent, the test command, the tree
//!    copied back out.
//! 5. **deliver** (`deliver`): apply the tree, then an answer, or commit, push and open the
//!    pull request.
//! 6. **report** (`report`): the one place that turns any outcome into the closing events, the
//!    comment's last words, the reaction and the job's result.
//!
//! Phases 3 to 5 can be interrupted (cancel, shutdown, a lost lease); whatever ends them, the
//! run goes through `report`, so every way out ends in a visible result.

use std::time::Instant;

use tokio::sync::watch;

use crate::github::RepoClient;
use crate::store::Job;

use super::deliver::{self, Delivered};
use super::failure::Failure;
use super::report::{self, EndingContext, RunEnd, Spent};
use super::reporter::Reporter;
use super::work::{self, Work};
use super::worker::{Interrupt, JobEnd};
use super::{announce, gate, label, prepare, Services};

/// Runs an agent job (a run or an iteration) to its end.
pub(crate) async fn agent_job(
    svc: &Services,
    job: &Job,
    mut interrupt: watch::Receiver<Option<Interrupt>>,
) -> JobEnd {
    let started = Instant::now();
    let client = match svc.client_for(job).await {
        Ok(c) => c,
        Err(e) => return JobEnd::failed(e),
    };
    if let Err(skipped) = label::check(job, &client).await {
        return skipped;
    }
    if let Err(refused) = gate::check(svc, job, &client).await {
        return refused;
    }
    let reporter = announce::announce(svc, job, &client).await;
    let end = tokio::select! {
        r = phases(svc, job, &client, &reporter) => match r {
            Ok(delivered) => RunEnd::Delivered(delivered),
            Err(failure) => RunEnd::Failed(failure),
        },
        i = wait_interrupt(&mut interrupt) => RunEnd::Interrupted(i),
    };
    let log_url = svc.run_link.as_ref().and_then(|f| f(&job.id));
    let cx = EndingContext {
        job,
        duration_ms: started.elapsed().as_millis() as u64,
        command_word: &svc.settings.command_word,
        log_url: log_url.as_deref(),
        spent: reporter.spent(),
    };
    let ending = report::ending(&cx, end);
    report::report(job, &client, reporter, ending).await
}

/// prepare → work → deliver.
async fn phases(
    svc: &Services,
    job: &Job,
    client: &RepoClient,
    reporter: &Reporter,
) -> Result<Delivered, Failure> {
    let prepared = prepare::prepare(svc, job, client).await?;
    let agent = svc.agent(prepared.settings.max_turns);
    let events = reporter.sender();
    let worked = work::work(
        &svc.sandboxes,
        &agent,
        Work {
            run_id: &job.id,
            checkout: &prepared.workdir.checkout,
            task: &prepared.task,
            settings: &prepared.settings,
            events: &events,
        },
    )
    .await
    .map_err(Failure::from)?;
    // A failure from here on comes after the agent worked: it reports what the agent used.
    let spent = Spent::of(&worked.outcome);
    deliver::deliver(svc, job, client, prepared, worked, reporter)
        .await
        .map_err(|f| f.with_spent(spent))
}

/// The first interrupt the worker sends.
async fn wait_interrupt(rx: &mut watch::Receiver<Option<Interrupt>>) -> Interrupt {
    loop {
        if let Some(i) = *rx.borrow_and_update() {
            return i;
        }
        if rx.changed().await.is_err() {
            // The worker went away without a word: treat it as a shutdown.
            return Interrupt::Shutdown;
        }
    }
}
