//! Counters and histograms for `GET /metrics`, written by hand in Prometheus' text format
//! (version 0.0.4). A dozen series do not justify a metrics crate and its build time; the
//! exposition format is small and stable, and the tests read it back.
//!
//! [`Metrics`] is a cheap clone (one `Arc`) that any module records into: ingress counts
//! deliveries, the runner reports runs, sandboxes and calls. Jobs by state are read from the
//! store at scrape time, so several instances on one Postgres report the same queue.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::run_event::{RunStatus, Usage};
use crate::store::JobCounts;

/// Upper bounds (seconds) of the run duration buckets: runs take minutes.
const RUN_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];
/// Upper bounds (seconds) of the sandbox start buckets: containers start in about a second.
const SANDBOX_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The recorder; cheap to clone, safe to share.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
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

#[derive(Default)]
struct Inner {
    /// (event, result) → count.
    deliveries: Mutex<BTreeMap<(String, String), u64>>,
    /// status → count.
    runs: Mutex<BTreeMap<&'static str, u64>>,
    run_seconds: Histogram<10>,
    sandbox_seconds: Histogram<9>,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cache_read_tokens: AtomicU64,
    cache_write_tokens: AtomicU64,
    /// Micro-dollars, so that the sum stays exact in an integer.
    cost_micro_usd: AtomicU64,
    github_calls: AtomicU64,
    github_retries: AtomicU64,
    model_calls: AtomicU64,
    model_retries: AtomicU64,
    api_runs: AtomicU64,
    api_rate_limited: AtomicU64,
}

struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Microseconds.
    sum_micros: AtomicU64,
}

impl Default for Histogram<10> {
    fn default() -> Self {
        Histogram::new(RUN_BUCKETS)
    }
}

impl Default for Histogram<9> {
    fn default() -> Self {
        Histogram::new(SANDBOX_BUCKETS)
    }
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn status_label(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Answered => "answered",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// Prometheus label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// A webhook delivery and how it ended (`queued`, `recorded`, `ignored`, `duplicate`,
    /// `unauthorized`, `bad_request`, …).
    pub fn delivery(&self, event: &str, result: &str) {
        let mut map = self
            .inner
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry((event.to_owned(), result.to_owned()))
            .or_default() += 1;
    }

    /// Makes these the metrics [`global`] returns (once per process; later calls keep the first).
    pub fn install_global(&self) {
        let _ = GLOBAL.set(self.clone());
    }

    /// A run ended: its duration, token usage and cost.
    pub fn run_finished(
        &self,
        duration: Duration,
        usage: &Usage,
        cost_usd: f64,
        status: RunStatus,
    ) {
        let i = &self.inner;
        i.run_seconds.observe(duration);
        *i.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status_label(status))
            .or_default() += 1;
        i.input_tokens
            .fetch_add(usage.input_tokens, Ordering::Relaxed);
        i.output_tokens
            .fetch_add(usage.output_tokens, Ordering::Relaxed);
        i.cache_read_tokens
            .fetch_add(usage.cache_read_input_tokens, Ordering::Relaxed);
        i.cache_write_tokens
            .fetch_add(usage.cache_creation_input_tokens, Ordering::Relaxed);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            i.cost_micro_usd
                .fetch_add((cost_usd * 1e6).round() as u64, Ordering::Relaxed);
        }
    }

    /// A sandbox became ready after `d` (create + start + copy-in).
    pub fn sandbox_started(&self, d: Duration) {
        self.inner.sandbox_seconds.observe(d);
    }

    /// One GitHub REST call; `retried` when it needed at least one retry.
    pub fn github_call(&self, retried: bool) {
        self.inner.github_calls.fetch_add(1, Ordering::Relaxed);
        if retried {
            self.inner.github_retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One model (Anthropic or OpenAI-compatible) call; `retried` when it needed a retry.
    pub fn model_call(&self, retried: bool) {
        self.inner.model_calls.fetch_add(1, Ordering::Relaxed);
        if retried {
            self.inner.model_retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A run started through `POST /api/code`.
    pub fn api_run(&self) {
        self.inner.api_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// A `POST /api/code` refused by the rate limit.
    pub fn api_rate_limited(&self) {
        self.inner.api_rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `jobs` is `None` when the store did not answer.
    pub fn render(&self, jobs: Option<&JobCounts>) -> String {
        let i = &self.inner;
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {v}");
        };

        let _ = writeln!(
            out,
            "# HELP backspace_webhook_deliveries_total Webhook deliveries by event and result."
        );
        let _ = writeln!(out, "# TYPE backspace_webhook_deliveries_total counter");
        for ((event, result), n) in i
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "backspace_webhook_deliveries_total{{event=\"{}\",result=\"{}\"}} {n}",
                label(event),
                label(result)
            );
        }

        let _ = writeln!(
            out,
            "# HELP backspace_jobs Jobs in the store by state (all instances)."
        );
        let _ = writeln!(out, "# TYPE backspace_jobs gauge");
        let _ = writeln!(
            out,
            "# HELP backspace_store_up 1 when the store answered this scrape."
        );
        let _ = writeln!(out, "# TYPE backspace_store_up gauge");
        match jobs {
            Some(c) => {
                for (state, n) in [
                    ("queued", c.queued),
                    ("running", c.running),
                    ("succeeded", c.succeeded),
                    ("failed", c.failed),
                    ("cancelled", c.cancelled),
                ] {
                    let _ = writeln!(out, "backspace_jobs{{state=\"{state}\"}} {n}");
                }
                let _ = writeln!(out, "backspace_store_up 1");
            }
            None => {
                let _ = writeln!(out, "backspace_store_up 0");
            }
        }

        let _ = writeln!(
            out,
            "# HELP backspace_runs_total Runs finished on this instance by status."
        );
        let _ = writeln!(out, "# TYPE backspace_runs_total counter");
        for (status, n) in i.runs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "backspace_runs_total{{status=\"{status}\"}} {n}");
        }
        i.run_seconds.write(
            &mut out,
            "backspace_run_duration_seconds",
            "Wall time of finished runs.",
        );
        i.sandbox_seconds.write(
            &mut out,
            "backspace_sandbox_start_seconds",
            "Time from asking for a sandbox to its being ready.",
        );

        let _ = writeln!(
            out,
            "# HELP backspace_model_tokens_total Model tokens used by finished runs, by kind."
        );
        let _ = writeln!(out, "# TYPE backspace_model_tokens_total counter");
        for (kind, v) in [
            ("input", &i.input_tokens),
            ("output", &i.output_tokens),
            ("cache_read", &i.cache_read_tokens),
            ("cache_write", &i.cache_write_tokens),
        ] {
            let _ = writeln!(
                out,
                "backspace_model_tokens_total{{kind=\"{kind}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP backspace_model_cost_usd_total Estimated model cost of finished runs, in US dollars."
        );
        let _ = writeln!(out, "# TYPE backspace_model_cost_usd_total counter");
        let _ = writeln!(
            out,
            "backspace_model_cost_usd_total {}",
            i.cost_micro_usd.load(Ordering::Relaxed) as f64 / 1e6
        );

        counter(
            &mut out,
            "backspace_github_calls_total",
            "GitHub REST calls.",
            i.github_calls.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "backspace_github_retried_calls_total",
            "GitHub REST calls that needed at least one retry.",
            i.github_retries.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "backspace_model_calls_total",
            "Model API calls (Anthropic or OpenAI-compatible).",
            i.model_calls.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "backspace_model_retried_calls_total",
            "Model API calls that needed at least one retry.",
            i.model_retries.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "backspace_api_runs_total",
            "Runs started through POST /api/code.",
            i.api_runs.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "backspace_api_rate_limited_total",
            "POST /api/code requests refused by the rate limit.",
            i.api_rate_limited.load(Ordering::Relaxed),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        m.sandbox_started(Duration::from_millis(300));
        m.sandbox_started(Duration::from_secs(3));
        let text = m.render(None);
        assert!(text.contains("backspace_sandbox_start_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("backspace_sandbox_start_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("backspace_sandbox_start_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("backspace_sandbox_start_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("backspace_sandbox_start_seconds_sum 3.3"));
        assert!(text.contains("backspace_sandbox_start_seconds_count 2"));
        assert!(text.contains("backspace_store_up 0"));
    }

    #[test]
    fn runs_add_tokens_cost_and_status() {
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
        for line in [
            "backspace_model_tokens_total{kind=\"input\"} 200",
            "backspace_model_tokens_total{kind=\"cache_read\"} 14",
            "backspace_model_cost_usd_total 0.75",
            "backspace_runs_total{status=\"succeeded\"} 1",
            "backspace_runs_total{status=\"failed\"} 1",
            "backspace_run_duration_seconds_bucket{le=\"10\"} 1",
            "backspace_run_duration_seconds_bucket{le=\"60\"} 2",
            "backspace_github_calls_total 2",
            "backspace_github_retried_calls_total 1",
            "backspace_model_calls_total 1",
            "backspace_jobs{state=\"queued\"} 3",
            "backspace_store_up 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.delivery("a\"b", "x\\y");
        assert!(m
            .render(None)
            .contains("backspace_webhook_deliveries_total{event=\"a\\\"b\",result=\"x\\\\y\"} 1"));
    }
}
