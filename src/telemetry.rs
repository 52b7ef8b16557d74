//! Logging and tracing: `tracing` with readable lines by default and JSON lines with
//! `LOG_FORMAT=json` (`RUST_LOG` filters, default `info`), and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the spans (a delivery, a run) exported over OTLP/HTTP
//! (JSON) to `{endpoint}/v1/traces`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the span exporter alive; [`Telemetry::shutdown`] sends what is still buffered.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter (at the end of `serve`).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("backspace: could not flush the last spans: {e}");
            }
        }
    }
}

/// Sets up logging, and span export when `otlp_endpoint` is given. A bad endpoint is reported
/// and logging goes on without export.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // Every enclosing span, so a line shows the run it belongs to however deep it is.
            .with_span_list(true)
            .boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let mut problem = None;
    let provider = otlp_endpoint.and_then(|endpoint| match exporter(endpoint) {
        Ok(p) => Some(p),
        Err(e) => {
            problem = Some(e);
            None
        }
    });
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("backspace")));
    // `try_init` fails only when a subscriber is already set (tests): keep that one.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = problem {
        tracing::error!(error = %e, "OTEL_EXPORTER_OTLP_ENDPOINT is set but spans cannot be exported");
    } else if let Some(endpoint) = otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
    }
    Telemetry { provider }
}

fn exporter(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    let traces = format!("{}/v1/traces", url.as_str().trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(traces)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("backspace")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
