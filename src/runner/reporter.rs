//! The run's event sink: every event is redacted of secrets, stored (in order, for the SSE
//! stream and the run page) and folded into the progress comment, which is edited through the
//! GitHub client's coalescing writer, so the newest state always lands last however fast events
//! come.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::github::ProgressComment;
use crate::progress::{Live, Progress};
use crate::run_event::{EventSender, RunEvent};
use crate::store::Store;

/// How often the comment's clock moves when no event comes.
const TICK: Duration = Duration::from_secs(15);

pub struct Reporter {
    tx: EventSender,
    finish: oneshot::Sender<Option<String>>,
    task: tokio::task::JoinHandle<Progress>,
}

impl Reporter {
    /// Starts the sink for `run_id`. `comment`: the run's progress comment, when it has one
    /// (runs from the API and the CLI have none).
    pub fn start(
        store: Store,
        run_id: &str,
        comment: Option<ProgressComment>,
        log_url: Option<String>,
    ) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        let (finish, finish_rx) = oneshot::channel();
        let task = tokio::spawn(pump(
            store,
            run_id.to_owned(),
            comment,
            log_url,
            rx,
            finish_rx,
        ));
        Reporter { tx, finish, task }
    }

    /// The sender the agent and the phases emit into.
    pub fn sender(&self) -> EventSender {
        self.tx.clone()
    }

    pub fn emit(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }

    /// Drains what was emitted, writes the comment's last state (with `extra` markdown under
    /// it) and waits for it to land. Returns what the comment showed.
    pub async fn finish(self, extra: Option<String>) -> Progress {
        let _ = self.finish.send(extra);
        drop(self.tx);
        match self.task.await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the run's reporter stopped");
                Progress::default()
            }
        }
    }
}

async fn pump(
    store: Store,
    run_id: String,
    comment: Option<ProgressComment>,
    log_url: Option<String>,
    mut rx: mpsc::UnboundedReceiver<RunEvent>,
    mut finish: oneshot::Receiver<Option<String>>,
) -> Progress {
    let started = Instant::now();
    let mut progress = Progress::new(&run_id);
    let live = |started: Instant| Live {
        elapsed_ms: started.elapsed().as_millis() as u64,
        log_url: log_url.clone(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.tick().await;
    let extra = loop {
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => record(&store, &run_id, &mut progress, &ev).await,
                None => break (&mut finish).await.ok().flatten(),
            },
            extra = &mut finish => {
                // Whatever was sent before `finish` is still in the channel: drain it.
                while let Ok(ev) = rx.try_recv() {
                    record(&store, &run_id, &mut progress, &ev).await;
                }
                break extra.ok().flatten();
            }
            _ = tick.tick() => {}
        }
        if let Some(c) = &comment {
            c.update(progress.render(&live(started)));
        }
    };
    if let Some(c) = comment {
        let mut body = progress.render(&live(started));
        if let Some(extra) = extra {
            body.push('\n');
            body.push_str(&extra);
        }
        if let Err(e) = c.finish(body).await {
            tracing::warn!(error = %e, "could not write the final progress comment");
        }
    }
    progress
}

async fn record(store: &Store, run_id: &str, progress: &mut Progress, ev: &RunEvent) {
    // Redacted once, here: the store, the stream, the comment and the log all read this copy.
    let ev = &crate::redact::redact_event(ev);
    if let Err(e) = store.append_event(run_id, ev).await {
        tracing::warn!(error = %e, kind = ev.kind(), "could not store a run event");
    }
    if let RunEvent::Error { message } = ev {
        tracing::warn!(%message, "run error");
    }
    progress.apply(ev);
}
