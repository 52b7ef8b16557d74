//! The run's event sink: every event is redacted of secrets, then stored (in order, for the SSE
//! stream and the run page) and folded into the progress comment, which is edited through the
//! GitHub client's coalescing writer, so the newest state always lands last however fast events
//! come. The comment is
//! edited when what it shows changes, never for the clock alone: a long run's comment moves
//! with its phases, turns and actions, and its time is the time at the last change. Every body
//! is kept under GitHub's size limit, with a note pointing to the live log when it was cut.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::github::ProgressComment;
use crate::progress::{Closing, Live, Progress};
use crate::run_event::{EventSender, RunEvent};
use crate::safe_text::{fit, truncated_note, GITHUB_BODY_LIMIT};
use crate::store::Store;

use super::report::Spent;

/// Room left under GitHub's limit for the hidden marker the comment carries.
const MARKER_ROOM: usize = 200;

pub struct Reporter {
    tx: EventSender,
    finish: oneshot::Sender<Option<Closing>>,
    spent: watch::Receiver<Spent>,
    task: tokio::task::JoinHandle<Progress>,
}

/// What the sink needs besides the events.
pub struct ReporterConfig {
    /// The run's progress comment, when it has one (runs from the API and the CLI have none).
    pub comment: Option<ProgressComment>,
    pub log_url: Option<String>,
    /// The command word, for "comment `/backspace cancel`".
    pub command_word: String,
}

impl Reporter {
    /// Starts the sink for `run_id`.
    pub fn start(store: Store, run_id: &str, config: ReporterConfig) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        let (finish, finish_rx) = oneshot::channel();
        let (spent_tx, spent) = watch::channel(Spent::default());
        let sink = Sink {
            store,
            run_id: run_id.to_owned(),
            spent: spent_tx,
        };
        // The run's own span: the sink's lines belong to the run.
        let task = tokio::spawn(pump(sink, config, rx, finish_rx).in_current_span());
        Reporter {
            tx,
            finish,
            spent,
            task,
        }
    }

    /// The sender the agent and the phases emit into.
    pub fn sender(&self) -> EventSender {
        self.tx.clone()
    }

    pub fn emit(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }

    /// What the agent has used so far, from its progress events (what a cancelled run or one
    /// that failed after the agent had worked reports).
    pub fn spent(&self) -> Spent {
        *self.spent.borrow()
    }

    /// Drains what was emitted, writes the comment's last state (the closing, when the run
    /// ended) and waits for it to land. Returns what the comment showed.
    pub async fn finish(self, closing: Option<Closing>) -> Progress {
        let _ = self.finish.send(closing);
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

/// Where the events go besides the comment.
struct Sink {
    store: Store,
    run_id: String,
    spent: watch::Sender<Spent>,
}

async fn pump(
    sink: Sink,
    config: ReporterConfig,
    mut rx: mpsc::UnboundedReceiver<RunEvent>,
    mut finish: oneshot::Receiver<Option<Closing>>,
) -> Progress {
    let started = Instant::now();
    let mut progress = Progress::new(&sink.run_id);
    let live = |elapsed_ms: u64| Live {
        elapsed_ms,
        log_url: config.log_url.clone(),
        command_word: config.command_word.clone(),
    };
    let note = truncated_note(config.log_url.as_deref());
    let limit = GITHUB_BODY_LIMIT - MARKER_ROOM;
    // What the comment showed last, with the clock stopped: an edit only when this changes.
    let mut shown: Option<String> = None;
    let closing = loop {
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => record(&sink, &mut progress, &ev).await,
                None => break (&mut finish).await.ok().flatten(),
            },
            closing = &mut finish => {
                // Whatever was sent before `finish` is still in the channel: drain it.
                while let Ok(ev) = rx.try_recv() {
                    record(&sink, &mut progress, &ev).await;
                }
                break closing.ok().flatten();
            }
        }
        if let Some(c) = &config.comment {
            let still = progress.render(&live(0));
            if shown.as_ref() != Some(&still) {
                let elapsed = started.elapsed().as_millis() as u64;
                c.update(fit(&progress.render(&live(elapsed)), limit, &note));
                shown = Some(still);
            }
        }
    };
    if let Some(c) = config.comment {
        let elapsed = live(started.elapsed().as_millis() as u64);
        let body = match &closing {
            Some(closing) => progress.render_closed(closing, &elapsed),
            None => progress.render(&elapsed),
        };
        if let Err(e) = c.finish(fit(&body, limit, &note)).await {
            tracing::warn!(error = %e, "could not write the final progress comment");
        }
    }
    progress
}

async fn record(sink: &Sink, progress: &mut Progress, ev: &RunEvent) {
    // Redacted once, here: the store, the stream, the comment and the log all read this copy.
    let ev = &crate::redact::redact_event(ev);
    if let Err(e) = sink.store.append_event(&sink.run_id, ev).await {
        tracing::warn!(error = %e, kind = ev.kind(), "could not store a run event");
    }
    if let RunEvent::Error { message } = ev {
        tracing::warn!(%message, "run error");
    }
    if let (RunEvent::Complete { .. }, Some(m)) = (ev, crate::metrics::global()) {
        count_run(m, progress, ev);
    }
    progress.apply(ev);
    let spent = Spent {
        usage: progress.usage,
        cost_usd: progress.cost_usd,
    };
    sink.spent.send_if_modified(|s| {
        let changed = *s != spent;
        *s = spent;
        changed
    });
}

/// The metrics of a finished run, whatever its end. A failed or cancelled run's `complete`
/// carries no usage, but the model was paid for what the agent's progress reported so far.
fn count_run(m: &crate::metrics::Metrics, so_far: &Progress, ev: &RunEvent) {
    if let RunEvent::Complete {
        status,
        duration_ms,
        usage,
        cost_usd,
        ..
    } = ev
    {
        let (usage, cost) = if *usage == crate::run_event::Usage::default() {
            (so_far.usage, so_far.cost_usd.unwrap_or(0.0))
        } else {
            (*usage, *cost_usd)
        };
        let took = std::time::Duration::from_millis(*duration_ms);
        m.run_finished(took, &usage, cost, *status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_event::{RunStatus, Usage};

    #[test]
    fn a_failed_run_counts_what_the_agent_spent_before_it_failed() {
        let m = crate::metrics::Metrics::new();
        let mut so_far = Progress::new("r1");
        so_far.apply(&RunEvent::Progress {
            stage: "agent".into(),
            message: "turn 3".into(),
            percentage: None,
            usage: Some(Usage {
                input_tokens: 1200,
                output_tokens: 300,
                ..Usage::default()
            }),
            cost_usd: Some(0.42),
        });
        let failed = RunEvent::Complete {
            run_id: "r1".into(),
            status: RunStatus::Failed,
            duration_ms: 5_000,
            usage: Usage::default(),
            cost_usd: 0.0,
        };
        count_run(&m, &so_far, &failed);
        let text = m.render(None);
        for line in [
            "backspace_runs_total{status=\"failed\"} 1",
            "backspace_model_tokens_total{kind=\"input\"} 1200",
            "backspace_model_tokens_total{kind=\"output\"} 300",
            "backspace_model_cost_usd_total 0.42",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
