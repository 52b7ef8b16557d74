//! Logging and tracing: `tracing` with readable lines by default and JSON lines with
//! `LOG_FORMAT=json` (`RUST_LOG` filters, default `info`), and, when an OTLP endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), the spans (a
//! delivery, a run) exported over OTLP/HTTP, configured by the OpenTelemetry SDK's standard
//! variables: `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` (`http/protobuf`, the default, or
//! `http/json`), `…_HEADERS`, `…_TIMEOUT`, `…_COMPRESSION`, `OTEL_SERVICE_NAME` (default
//! `backspace`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`,
//! `OTEL_TRACES_EXPORTER=none` and `OTEL_SDK_DISABLED=true`. gRPC is not built in: it would
//! bring tonic for what OTLP/HTTP already does.

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

/// Sets up logging, and span export when `otlp_endpoint` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is given. A bad setting is reported and logging goes on
/// without export.
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
    let plan = plan(|name| std::env::var(name).ok(), otlp_endpoint);
    let provider = match &plan {
        Ok(Some(p)) => match exporter(p) {
            Ok(provider) => Some(provider),
            Err(e) => {
                problem = Some(e);
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            problem = Some(e.clone());
            None
        }
    };
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
        tracing::error!(error = %e, "OpenTelemetry export is configured but spans cannot be exported");
    } else if let (Ok(Some(p)), Some(_)) = (&plan, &provider) {
        let endpoint = p
            .endpoint
            .as_deref()
            .unwrap_or("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        tracing::info!(%endpoint, protocol = ?p.protocol, "exporting spans over OTLP/HTTP");
    }
    Telemetry { provider }
}

/// How spans are exported, from the OpenTelemetry SDK's standard variables.
#[derive(Debug, Clone, PartialEq)]
struct ExportPlan {
    /// Set when only the generic endpoint is known (`--otel-endpoint` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`): `{it}/v1/traces`. `None`: the SDK reads
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` itself, which the specification puts first.
    endpoint: Option<String>,
    protocol: Protocol,
    /// No `OTEL_SERVICE_NAME` nor `service.name` in `OTEL_RESOURCE_ATTRIBUTES`: call it
    /// `backspace`.
    default_service_name: bool,
}

/// Pure: whether and how to export, from the variables (`var` looks one up) and the endpoint
/// `serve` was given (flag or `OTEL_EXPORTER_OTLP_ENDPOINT`). `Ok(None)`: no export (no endpoint,
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
fn plan(
    var: impl Fn(&str) -> Option<String>,
    endpoint: Option<&str>,
) -> Result<Option<ExportPlan>, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={other} is not supported (otlp or none)"
            ))
        }
    }
    let signal_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let endpoint = match (signal_endpoint, endpoint.filter(|e| !e.trim().is_empty())) {
        (Some(_), _) => None,
        (None, Some(e)) => {
            let url = url::Url::parse(e).map_err(|err| format!("{e:?} is not a URL: {err}"))?;
            Some(format!("{}/v1/traces", url.as_str().trim_end_matches('/')))
        }
        (None, None) => return Ok(None),
    };
    let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
        .map(str::trim)
    {
        // The specification's default.
        None | Some("http/protobuf") => Protocol::HttpBinary,
        Some("http/json") => Protocol::HttpJson,
        Some(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (http/protobuf or http/json)"
            ))
        }
    };
    let default_service_name = set("OTEL_SERVICE_NAME").is_none()
        && !set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    Ok(Some(ExportPlan {
        endpoint,
        protocol,
        default_service_name,
    }))
}

/// The tracer provider of `plan`. What the plan does not say, the SDK reads from the
/// environment: headers, timeout, compression (`OTEL_EXPORTER_OTLP_*`), the sampler
/// (`OTEL_TRACES_SAMPLER`), the batch (`OTEL_BSP_*`), the resource (`OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_SERVICE_NAME`).
fn exporter(plan: &ExportPlan) -> Result<SdkTracerProvider, String> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(plan.protocol);
    if let Some(e) = &plan.endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    let exporter = builder.build().map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if plan.default_service_name {
        resource = resource.with_service_name("backspace");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn plan_of(
        vars: &[(&str, &str)],
        endpoint: Option<&str>,
    ) -> Result<Option<ExportPlan>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        plan(|k| vars.get(k).cloned(), endpoint)
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert_eq!(plan_of(&[], None), Ok(None));
        let on = Some("http://collector:4318");
        assert_eq!(plan_of(&[("OTEL_SDK_DISABLED", "true")], on), Ok(None));
        assert_eq!(plan_of(&[("OTEL_TRACES_EXPORTER", "none")], on), Ok(None));
        assert!(plan_of(&[("OTEL_TRACES_EXPORTER", "zipkin")], on).is_err());
    }

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_and_protobuf_by_default() {
        let p = plan_of(&[], Some("http://collector:4318/"))
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            ExportPlan {
                endpoint: Some("http://collector:4318/v1/traces".into()),
                protocol: Protocol::HttpBinary,
                default_service_name: true,
            }
        );
    }

    #[test]
    fn the_standard_variables_are_honoured() {
        let p = plan_of(
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod, service.name=bot",
                ),
            ],
            Some("http://generic:4318"),
        )
        .unwrap()
        .unwrap();
        // The signal's own endpoint wins; the SDK reads it.
        assert_eq!(p.endpoint, None);
        assert_eq!(p.protocol, Protocol::HttpJson);
        assert!(!p.default_service_name);
        let named = plan_of(&[("OTEL_SERVICE_NAME", "bot")], Some("http://c:4318"))
            .unwrap()
            .unwrap();
        assert!(!named.default_service_name);
        let grpc = plan_of(
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            Some("http://c:4317"),
        );
        assert!(grpc.unwrap_err().contains("not supported"));
    }
}
