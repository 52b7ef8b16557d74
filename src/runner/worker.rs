//! The workers: claim queued jobs under a lease (renewed while they run), at most
//! `max_jobs` agent runs at once, and beside them a control lane for cancels, closes, help and
//! usage errors that never waits for a run slot (so a cancel acts whatever the load); stop a job when its cancel is asked for or its lease is lost; on shutdown,
//! stop taking work, give running jobs a grace period, then release their leases. Jobs left by
//! a crashed instance go back to the queue or are given up (`recover`).
//!
//! Every job runs in a task of its own under a `run` span (run id, repository, number, kind),
//! so its log lines and exported spans carry its run id and no other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::job::{JobResult, JobState};
use crate::store::Job;

use super::{acknowledge, denials, pipeline, quick, recover, Services};

/// Why a running job must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// `/backspace cancel`, a closed issue, or a removed installation.
    Cancelled,
    /// This instance is shutting down: the job goes back to the queue.
    Shutdown,
    /// The lease was lost (this instance stalled past it): someone else owns the job now.
    LeaseLost,
}

/// How a job's task ended.
// One per job, moved once into the store: boxing the result would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Finished(JobResult),
    /// Back to the queue (shutdown).
    Release,
    /// Not ours any more (lease lost): touch nothing.
    Abandon,
}

impl JobEnd {
    pub fn failed(reason: impl Into<String>) -> Self {
        JobEnd::Finished(JobResult::failed(reason))
    }

    /// The state the job ends in, when it ends here.
    pub fn state(&self) -> Option<JobState> {
        match self {
            JobEnd::Finished(result) => Some(result.state()),
            JobEnd::Release | JobEnd::Abandon => None,
        }
    }
}

/// How often a running job looks for a cancel request.
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// The running worker pool.
pub struct Workers {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Workers {
    /// Starts the pool: recovers expired jobs, then claims and runs jobs until shut down.
    pub fn start(svc: Services) -> Workers {
        let stop = CancellationToken::new();
        let span = tracing::info_span!("workers", instance = %svc.settings.instance_id);
        let task = tokio::spawn(supervise(svc, stop.clone()).instrument(span));
        Workers { stop, task }
    }

    /// Stops taking work, lets running jobs finish within the grace period, then releases the
    /// leases of those still running, and returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the worker pool ended badly");
        }
    }
}

type Interrupts = Arc<Mutex<HashMap<String, watch::Sender<Option<Interrupt>>>>>;

fn interrupt_all(interrupts: &Interrupts, why: Interrupt) {
    let map = interrupts.lock().unwrap_or_else(|p| p.into_inner());
    for tx in map.values() {
        let _ = tx.send(Some(why));
    }
}

/// Control jobs (cancel, close, help, usage errors) answered at once beside the runs.
const CONTROL_SLOTS: usize = 4;

async fn supervise(svc: Services, stop: CancellationToken) {
    let settings = svc.settings.clone();
    let interrupts: Interrupts = Arc::default();
    // Agent runs, at most `max_jobs`; and the control lane, which never waits for a run slot.
    let mut runs = JoinSet::new();
    let mut control = JoinSet::new();
    let mut last_recovery: Option<Instant> = None;
    let lane = acknowledge::lane(svc.clone(), stop.clone());
    let lane = tokio::spawn(lane.instrument(tracing::info_span!("acknowledge_lane")));
    let replies = denials::lane(svc.clone(), stop.clone());
    let replies = tokio::spawn(replies.instrument(tracing::info_span!("denial_lane")));
    loop {
        reap(&mut runs);
        reap(&mut control);
        if stop.is_cancelled() {
            break;
        }
        if last_recovery.is_none_or(|t| t.elapsed() >= settings.lease / 2) {
            recover::recover(&svc)
                .instrument(tracing::info_span!("recover"))
                .await;
            last_recovery = Some(Instant::now());
        }
        let claimed_control =
            control.len() < CONTROL_SLOTS && claim(&svc, false, &mut control, &interrupts).await;
        let claimed_run =
            runs.len() < settings.max_jobs && claim(&svc, true, &mut runs, &interrupts).await;
        if claimed_control || claimed_run {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll) => {}
            _ = svc.wake.notified() => {}
            _ = stop.cancelled() => {}
            Some(done) = runs.join_next(), if !runs.is_empty() => log_panic(done),
            Some(done) = control.join_next(), if !control.is_empty() => log_panic(done),
        }
    }

    lane.abort();
    replies.abort();
    drain(&svc, &mut control, &interrupts).await;
    drain(&svc, &mut runs, &interrupts).await;
    // Whatever this instance still has on the engine (the warm pool, a sandbox whose removal
    // was cut short by the shutdown) goes now, not at the next start.
    match svc.sandboxes.shutdown().await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "removed this instance's sandboxes"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not remove this instance's sandboxes"),
    }
}

fn reap(tasks: &mut JoinSet<()>) {
    while let Some(done) = tasks.try_join_next() {
        log_panic(done);
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a job task panicked");
    }
}

/// Claims the oldest queued job of its lane (agent runs, or control jobs) and starts it in
/// `tasks`. `false`: nothing to claim (or the store failed).
async fn claim(
    svc: &Services,
    agent: bool,
    tasks: &mut JoinSet<()>,
    interrupts: &Interrupts,
) -> bool {
    let settings = &svc.settings;
    match svc
        .store
        .claim_next_in(&settings.instance_id, settings.lease, Some(agent))
        .await
    {
        Ok(Some(job)) => {
            let (tx, rx) = watch::channel(None);
            interrupts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(job.id.clone(), tx);
            let span = run_span(&job);
            let task = job_task(svc.clone(), job, rx, interrupts.clone());
            tasks.spawn(task.instrument(span));
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim a job");
            false
        }
    }
}

/// Shutdown: lets running jobs finish within the grace period, then interrupts them so that
/// they release their leases.
async fn drain(svc: &Services, tasks: &mut JoinSet<()>, interrupts: &Interrupts) {
    let settings = &svc.settings;
    if tasks.is_empty() {
        return;
    }
    let (running, grace) = (tasks.len(), settings.grace);
    tracing::info!(
        running,
        ?grace,
        "shutting down: letting running jobs finish"
    );
    let grace = tokio::time::sleep(settings.grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            _ = &mut grace => break,
        }
    }
    tracing::info!(
        running = tasks.len(),
        "grace period over: releasing the leases of running jobs"
    );
    interrupt_all(interrupts, Interrupt::Shutdown);
    let release = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    });
    if release.await.is_err() {
        tracing::warn!("jobs did not stop within 30 s of the release; their leases will expire");
        tasks.abort_all();
    }
}

/// The span a job's task runs in: every line it logs names its run.
fn run_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "run",
        run_id = %job.id,
        repo = %job.repository,
        number = ?job.number,
        kind = %job.kind()
    )
}

async fn job_task(
    svc: Services,
    job: Job,
    interrupt: watch::Receiver<Option<Interrupt>>,
    interrupts: Interrupts,
) {
    let owner = svc.settings.instance_id.clone();
    let tx = interrupts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&job.id)
        .cloned();
    let keeper = tx.map(|tx| {
        let keep = keep_lease(svc.clone(), job.id.clone(), tx);
        tokio::spawn(keep.in_current_span())
    });
    tracing::info!(attempt = job.attempts, "job started");
    let end = if job.kind().runs_agent() {
        pipeline::agent_job(&svc, &job, interrupt).await
    } else {
        quick::quick_job(&svc, &job).await
    };
    if let Some(k) = keeper {
        k.abort();
    }
    interrupts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job.id);
    let stored = match &end {
        JobEnd::Finished(result) => {
            let state = result.state();
            tracing::info!(state = %state, "job finished");
            svc.store.finish(&job.id, &owner, state, result).await
        }
        JobEnd::Release => {
            tracing::info!("job released for another worker");
            svc.store.release(&job.id, &owner).await
        }
        JobEnd::Abandon => Ok(true),
    };
    match stored {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the job's lease was gone when it ended"),
        Err(e) => {
            tracing::error!(error = %e, "could not record the end of a job; its lease will expire")
        }
    }
}

/// Renews the lease and watches for cancellation while a job runs.
async fn keep_lease(svc: Services, id: String, tx: watch::Sender<Option<Interrupt>>) {
    let settings = &svc.settings;
    let renew_every = settings.lease / 3;
    let mut last_renewal = Instant::now();
    loop {
        tokio::time::sleep(CANCEL_CHECK.min(renew_every)).await;
        if last_renewal.elapsed() >= renew_every {
            match svc
                .store
                .renew_lease(&id, &settings.instance_id, settings.lease)
                .await
            {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    let _ = tx.send(Some(Interrupt::LeaseLost));
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "could not renew a lease; trying again"),
            }
        }
        match svc.store.cancel_requested(&id).await {
            Ok(true) => {
                let _ = tx.send(Some(Interrupt::Cancelled));
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not check for a cancel"),
        }
    }
}
