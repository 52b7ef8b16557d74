//! What `GET /metrics` shows, kept in a `prometheus-client` registry and written in the
//! OpenMetrics text format that Prometheus scrapes. `prometheus-client` (the Prometheus
//! project's own Rust client) rather than `metrics` + `metrics-exporter-prometheus`: it is one
//! small crate (its derive, `dtoa`, `itoa`, `parking_lot`) against a facade, an exporter and their
//! utility crates, and Backspace needs no facade: the series are known and recorded in one
//! place.
//!
//! Every series exists from the start, at zero, with each label value it can take, so that a
//! `rate()` or an alert sees the first event and not only the second. Besides Backspace's own
//! series: `backspace_build_info` (the version) and the standard `process_*` series
//! ([`process`]).
//!
//! [`Metrics`] is a cheap clone (one `Arc`) that any module records into: ingress counts
//! deliveries, the runner reports runs, sandboxes and calls. Jobs by state are read from the
//! store at scrape time, so several instances on one Postgres report the same queue.

mod process;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::run_event::{RunStatus, Usage};
use crate::store::JobCounts;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the run duration buckets: runs take minutes.
const RUN_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];
/// Upper bounds (seconds) of the sandbox start buckets: containers start in about a second.
const SANDBOX_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The events the app receives (app-manifest.json, plus those every app gets), for the series
/// that exist from the start.
const EVENTS: [&str; 8] = [
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "installation",
    "installation_repositories",
    "ping",
];
/// How a delivery whose signature was checked can end.
const VERIFIED_RESULTS: [&str; 8] = [
    "queued",
    "recorded",
    "ignored",
    "denied",
    "duplicate",
    "replay",
    "bad_payload",
    "store_unavailable",
];
/// How a delivery ends before its event is known (`event="unknown"`).
const REFUSED_RESULTS: [&str; 4] = ["unauthorized", "too_large", "unavailable", "bad_request"];
const JOB_STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];
const RUN_STATUSES: [RunStatus; 4] = [
    RunStatus::Succeeded,
    RunStatus::Answered,
    RunStatus::Failed,
    RunStatus::Cancelled,
];
const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why the server closed a connection before its client did (see `server::listener`).
pub const CLOSE_REASONS: [&str; 4] = [
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "over_capacity",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The recorder; cheap to clone, safe to share.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    jobs: Family<StateLabel, Gauge>,
    store_up: Gauge,
    runs: Family<StatusLabel, Counter>,
    run_seconds: Histogram,
    sandbox_seconds: Histogram,
    tokens: Family<KindLabel, Counter>,
    connections_closed: Family<ReasonLabel, Counter>,
    cost_usd: Counter<f64, AtomicU64>,
    github_calls: Counter,
    github_retries: Counter,
    model_calls: Counter,
    model_retries: Counter,
    api_runs: Counter,
    api_rate_limited: Counter,
}

/// The process's metrics, for code far from the server (the GitHub client, the model clients,
/// the runner) to record into. Unset (tests, the CLI): nothing is recorded.
static GLOBAL: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

/// The metrics `serve` installed, if any.
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get()
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// prometheus-client writes label values as they are: keep them to characters that need no
/// escaping (the callers pass event names and fixed words).
fn label_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn status_label(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Answered => "answered",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let jobs = Family::<StateLabel, Gauge>::default();
        let store_up = Gauge::default();
        let runs = Family::<StatusLabel, Counter>::default();
        let run_seconds = Histogram::new(RUN_BUCKETS);
        let sandbox_seconds = Histogram::new(SANDBOX_BUCKETS);
        let tokens = Family::<KindLabel, Counter>::default();
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        let cost_usd = Counter::<f64, AtomicU64>::default();
        let [github_calls, github_retries, model_calls, model_retries, api_runs, api_rate_limited] =
            std::array::from_fn(|_| Counter::default());

        // The registry ends each help text with a full stop.
        let build = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("backspace_build", "The running build of Backspace", build);
        registry.register(
            "backspace_webhook_deliveries",
            "Webhook deliveries by event and result",
            deliveries.clone(),
        );
        registry.register(
            "backspace_jobs",
            "Jobs in the store by state (all instances)",
            jobs.clone(),
        );
        registry.register(
            "backspace_store_up",
            "1 when the store answered this scrape",
            store_up.clone(),
        );
        registry.register(
            "backspace_runs",
            "Runs finished on this instance by status",
            runs.clone(),
        );
        registry.register_with_unit(
            "backspace_run_duration",
            "Wall time of finished runs",
            Unit::Seconds,
            run_seconds.clone(),
        );
        registry.register_with_unit(
            "backspace_sandbox_start",
            "Time from asking for a sandbox to its being ready",
            Unit::Seconds,
            sandbox_seconds.clone(),
        );
        registry.register(
            "backspace_model_tokens",
            "Model tokens used by finished runs (whatever their end), by kind",
            tokens.clone(),
        );
        registry.register(
            "backspace_model_cost_usd",
            "Estimated model cost of finished runs (whatever their end), in US dollars",
            cost_usd.clone(),
        );
        for (name, help, counter) in [
            ("backspace_github_calls", "GitHub REST calls", &github_calls),
            (
                "backspace_github_retried_calls",
                "GitHub REST calls that needed at least one retry",
                &github_retries,
            ),
            (
                "backspace_model_calls",
                "Model API calls (Anthropic or OpenAI-compatible)",
                &model_calls,
            ),
            (
                "backspace_model_retried_calls",
                "Model API calls that needed at least one retry",
                &model_retries,
            ),
            (
                "backspace_api_runs",
                "Runs started through POST /api/code",
                &api_runs,
            ),
            (
                "backspace_api_rate_limited",
                "POST /api/code requests refused by the rate limit",
                &api_rate_limited,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "backspace_connections_closed",
            "Connections the server closed before their client did, by reason (too slow for a timeout, or over BACKSPACE_MAX_CONNECTIONS)",
            connections_closed.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector::new()));

        // Every label value at zero from the start.
        for event in EVENTS {
            for result in VERIFIED_RESULTS {
                let _ = deliveries.get_or_create(&DeliveryLabels {
                    event: event.to_owned(),
                    result: result.to_owned(),
                });
            }
        }
        for result in REFUSED_RESULTS {
            let _ = deliveries.get_or_create(&DeliveryLabels {
                event: "unknown".to_owned(),
                result: result.to_owned(),
            });
        }
        for state in JOB_STATES {
            let _ = jobs.get_or_create(&StateLabel { state });
        }
        for status in RUN_STATUSES {
            let _ = runs.get_or_create(&StatusLabel {
                status: status_label(status),
            });
        }
        for kind in TOKEN_KINDS {
            let _ = tokens.get_or_create(&KindLabel { kind });
        }
        for reason in CLOSE_REASONS {
            let _ = connections_closed.get_or_create(&ReasonLabel { reason });
        }

        Metrics {
            inner: Arc::new(Inner {
                registry,
                deliveries,
                jobs,
                store_up,
                runs,
                run_seconds,
                sandbox_seconds,
                tokens,
                connections_closed,
                cost_usd,
                github_calls,
                github_retries,
                model_calls,
                model_retries,
                api_runs,
                api_rate_limited,
            }),
        }
    }

    /// A webhook delivery and how it ended (`queued`, `recorded`, `ignored`, `duplicate`,
    /// `unauthorized`, `bad_request`, …).
    pub fn delivery(&self, event: &str, result: &str) {
        self.inner
            .deliveries
            .get_or_create(&DeliveryLabels {
                event: label_value(event),
                result: label_value(result),
            })
            .inc();
    }

    /// The server closed a connection before its client did; `reason` is one of
    /// [`CLOSE_REASONS`].
    pub fn connection_closed(&self, reason: &'static str) {
        self.inner
            .connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Makes these the metrics [`global`] returns (once per process; later calls keep the first).
    pub fn install_global(&self) {
        let _ = GLOBAL.set(self.clone());
    }

    /// A run ended, however it ended: its duration, token usage and cost.
    pub fn run_finished(
        &self,
        duration: Duration,
        usage: &Usage,
        cost_usd: f64,
        status: RunStatus,
    ) {
        let i = &self.inner;
        i.run_seconds.observe(duration.as_secs_f64());
        i.runs
            .get_or_create(&StatusLabel {
                status: status_label(status),
            })
            .inc();
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_input_tokens),
            ("cache_write", usage.cache_creation_input_tokens),
        ] {
            i.tokens.get_or_create(&KindLabel { kind }).inc_by(n);
        }
        if cost_usd.is_finite() && cost_usd > 0.0 {
            i.cost_usd.inc_by(cost_usd);
        }
    }

    /// A sandbox became ready after `d` (create + start + copy-in).
    pub fn sandbox_started(&self, d: Duration) {
        self.inner.sandbox_seconds.observe(d.as_secs_f64());
    }

    /// One GitHub REST call; `retried` when it needed at least one retry.
    pub fn github_call(&self, retried: bool) {
        self.inner.github_calls.inc();
        if retried {
            self.inner.github_retries.inc();
        }
    }

    /// One model (Anthropic or OpenAI-compatible) call; `retried` when it needed a retry.
    pub fn model_call(&self, retried: bool) {
        self.inner.model_calls.inc();
        if retried {
            self.inner.model_retries.inc();
        }
    }

    /// A run started through `POST /api/code`.
    pub fn api_run(&self) {
        self.inner.api_runs.inc();
    }

    /// A `POST /api/code` refused by the rate limit.
    pub fn api_rate_limited(&self) {
        self.inner.api_rate_limited.inc();
    }

    /// The exposition text; `jobs` is `None` when the store did not answer (then the jobs
    /// series are left out rather than shown stale, and `backspace_store_up` is 0).
    pub fn render(&self, jobs: Option<&JobCounts>) -> String {
        let i = &self.inner;
        match jobs {
            Some(c) => {
                for (state, n) in [
                    ("queued", c.queued),
                    ("running", c.running),
                    ("succeeded", c.succeeded),
                    ("failed", c.failed),
                    ("cancelled", c.cancelled),
                ] {
                    i.jobs.get_or_create(&StateLabel { state }).set(n);
                }
                i.store_up.set(1);
            }
            None => {
                i.jobs.clear();
                i.store_up.set(0);
            }
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; the registry's own encoders do not either.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            tracing::error!(error = %e, "could not write the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series ` in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_series_is_there_before_anything_happened() {
        let text = Metrics::new().render(None);
        for series in [
            "backspace_webhook_deliveries_total{event=\"issue_comment\",result=\"queued\"}",
            "backspace_webhook_deliveries_total{event=\"pull_request_review\",result=\"ignored\"}",
            "backspace_webhook_deliveries_total{event=\"unknown\",result=\"unauthorized\"}",
            "backspace_runs_total{status=\"failed\"}",
            "backspace_runs_total{status=\"cancelled\"}",
            "backspace_model_tokens_total{kind=\"cache_write\"}",
            "backspace_model_cost_usd_total",
            "backspace_run_duration_seconds_count",
            "backspace_sandbox_start_seconds_bucket{le=\"+Inf\"}",
            "backspace_github_calls_total",
            "backspace_api_rate_limited_total",
            "backspace_store_up",
        ] {
            assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
        }
        assert!(
            text.contains(&format!(
                "backspace_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        m.sandbox_started(Duration::from_millis(300));
        m.sandbox_started(Duration::from_secs(3));
        let text = m.render(None);
        let s = "backspace_sandbox_start_seconds";
        assert_eq!(
            value(&text, &format!("{s}_bucket{{le=\"0.25\"}}")),
            Some(0.0)
        );
        assert_eq!(
            value(&text, &format!("{s}_bucket{{le=\"0.5\"}}")),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!("{s}_bucket{{le=\"5.0\"}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("{s}_bucket{{le=\"+Inf\"}}")),
            Some(2.0)
        );
        assert_eq!(value(&text, &format!("{s}_sum")), Some(3.3));
        assert_eq!(value(&text, &format!("{s}_count")), Some(2.0));
        assert_eq!(value(&text, "backspace_store_up"), Some(0.0));
        assert!(
            !text.contains("backspace_jobs{"),
            "no stale job counts: {text}"
        );
    }

    #[test]
    fn runs_add_tokens_cost_and_status_whatever_their_end() {
        let m = Metrics::new();
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_creation_input_tokens: 5,
            cache_read_input_tokens: 7,
        };
        m.run_finished(Duration::from_secs(45), &usage, 0.25, RunStatus::Succeeded);
        m.run_finished(Duration::from_secs(5), &usage, 0.5, RunStatus::Failed);
        m.github_call(true);
        m.github_call(false);
        m.model_call(false);
        let text = m.render(Some(&JobCounts {
            queued: 3,
            ..JobCounts::default()
        }));
        for (series, v) in [
            ("backspace_model_tokens_total{kind=\"input\"}", 200.0),
            ("backspace_model_tokens_total{kind=\"cache_read\"}", 14.0),
            ("backspace_model_tokens_total{kind=\"cache_write\"}", 10.0),
            ("backspace_model_cost_usd_total", 0.75),
            ("backspace_runs_total{status=\"succeeded\"}", 1.0),
            ("backspace_runs_total{status=\"failed\"}", 1.0),
            ("backspace_run_duration_seconds_bucket{le=\"10.0\"}", 1.0),
            ("backspace_run_duration_seconds_bucket{le=\"60.0\"}", 2.0),
            ("backspace_github_calls_total", 2.0),
            ("backspace_github_retried_calls_total", 1.0),
            ("backspace_model_calls_total", 1.0),
            ("backspace_jobs{state=\"queued\"}", 3.0),
            ("backspace_jobs{state=\"running\"}", 0.0),
            ("backspace_store_up", 1.0),
        ] {
            assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
        }
    }

    #[test]
    fn label_values_cannot_break_the_text() {
        let m = Metrics::new();
        m.delivery("a\"b\n", "x\\y");
        let text = m.render(None);
        assert!(
            text.contains("backspace_webhook_deliveries_total{event=\"a_b_\",result=\"x_y\"} 1"),
            "{text}"
        );
    }
}
