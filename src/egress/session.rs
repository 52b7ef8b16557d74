//! One run's network: the forwarder started in its sandbox, the link and proxy behind it, the
//! proxy variables for the sandbox's commands, and the refusals reported as run events. Ended
//! by [`Session::stop`] (after setup when the repository says `setup_only`, else at the end of
//! the run), which also reports the last counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::allowlist::Allowlist;
use super::blocked::{self, Blocked, Tally};
use super::proxy::{Limits, Policy, Proxy, Refusal};
use super::{link, mux};
use crate::run_event::{EventSender, RunEvent};
use crate::sandbox::{RunningCommand, Sandbox, SandboxError};

/// The port the forwarder listens on, on the sandbox's own loopback.
pub const FORWARDER_PORT: u16 = 3128;
/// How long the forwarder may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What one run may open.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The repository's `network.allow`.
    pub allow: Allowlist,
    /// The operator's `BACKSPACE_EGRESS_ALLOW`.
    pub operator: Allowlist,
    pub engine_addresses: Vec<std::net::IpAddr>,
    pub limits: Limits,
}

/// The variables that send a sandbox's HTTP clients through the forwarder, upper and lower
/// case (tools read either); the sandbox's own loopback stays direct.
pub fn proxy_env(port: u16) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    let no_proxy = "localhost,127.0.0.1,::1";
    let mut env = vec![];
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push(format!("{name}={url}"));
    }
    env.push(format!("NO_PROXY={no_proxy}"));
    env.push(format!("no_proxy={no_proxy}"));
    env
}

/// A run's network while it is on.
pub struct Session {
    link: JoinHandle<()>,
    reporter: JoinHandle<()>,
    report: Reporter,
}

#[derive(Clone)]
struct Reporter {
    tally: Arc<Mutex<Tally>>,
    /// What was reported, for the pull request.
    blocked: Arc<Mutex<Blocked>>,
    plan: Arc<Plan>,
    events: EventSender,
    running: RunningCommand,
}

impl Reporter {
    fn record(&self, refusal: Refusal) {
        let command = self.running.get();
        let count = match self.tally.lock() {
            Ok(mut t) => t.record(refusal.clone(), command.clone(), Instant::now()),
            Err(_) => None,
        };
        if let Some(count) = count {
            self.emit(&refusal, count, command);
        }
    }

    fn emit(&self, r: &Refusal, count: u64, command: Option<String>) {
        let e = blocked::event(r, count, command, &self.plan.allow, &self.plan.operator);
        if let Ok(mut b) = self.blocked.lock() {
            b.apply(&e);
        }
        let _ = self.events.send(e);
    }

    fn flush(&self) {
        let left = match self.tally.lock() {
            Ok(mut t) => t.unreported(),
            Err(_) => vec![],
        };
        for (r, count, command) in left {
            self.emit(&r, count, command);
        }
    }
}

impl Session {
    /// Starts the forwarder in `sandbox` and the proxy behind it; from then on the sandbox's
    /// commands get the proxy variables.
    pub async fn start(
        sandbox: &Sandbox,
        plan: Plan,
        events: EventSender,
    ) -> Result<Session, SandboxError> {
        let argv = vec![
            "python3".to_string(),
            "-u".to_string(),
            "-c".to_string(),
            mux::FORWARDER.to_string(),
            FORWARDER_PORT.to_string(),
        ];
        let pipe = sandbox.attach(argv).await?;
        let (refusals_tx, mut refusals) = tokio::sync::mpsc::unbounded_channel();
        let policy = Policy {
            allow: plan.allow.clone(),
            operator: plan.operator.clone(),
            engine_addresses: plan.engine_addresses.clone(),
            limits: plan.limits,
        };
        let proxy = Arc::new(Proxy::new(policy, refusals_tx));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let span = tracing::info_span!("egress", run = %sandbox.run_id());
        let link = tokio::spawn(
            link::run(pipe.stdout, pipe.stdin, proxy, ready_tx).instrument(span.clone()),
        );
        let report = Reporter {
            tally: Arc::new(Mutex::new(Tally::default())),
            blocked: Arc::new(Mutex::new(Blocked::default())),
            plan: Arc::new(plan),
            events,
            running: sandbox.running_command(),
        };
        let r = report.clone();
        let reporter = tokio::spawn(
            async move {
                while let Some(refusal) = refusals.recv().await {
                    r.record(refusal);
                }
            }
            .instrument(span),
        );
        let session = Session {
            link,
            reporter,
            report,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => {}
            _ => {
                session.abort();
                return Err(SandboxError::Invalid(
                    "the egress forwarder did not start in the sandbox (does its image have python3?)"
                        .into(),
                ));
            }
        }
        sandbox.set_command_env(proxy_env(FORWARDER_PORT));
        Ok(session)
    }

    /// Ends the network: later commands get no proxy variables and nothing listens for them.
    /// The last counts of refused connections are reported; returns all that were.
    pub async fn stop(self, sandbox: &Sandbox) -> Blocked {
        sandbox.set_command_env(vec![]);
        // Let refusals already answered reach the tally.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.report.flush();
        self.abort();
        self.report
            .blocked
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    fn abort(&self) {
        // Dropping the exec's stdin ends the forwarder; removal of the container does the rest.
        self.link.abort();
        self.reporter.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.abort();
    }
}

/// An event that says the network is on, for the progress log.
pub fn started_event(plan: &Plan) -> RunEvent {
    RunEvent::progress(
        "sandbox",
        format!("network through the egress proxy to {}", plan.allow),
    )
}
