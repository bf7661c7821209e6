//! Traces: OpenTelemetry, exported over OTLP, **off unless** `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set. Everything else is read by the OpenTelemetry SDK
//! from the standard variables: the protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`, `http/protobuf` by
//! default, or `grpc`), headers, timeout, the sampler (`OTEL_TRACES_SAMPLER`,
//! `OTEL_TRACES_SAMPLER_ARG`), the batch processor (`OTEL_BSP_*`) and the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the service name defaults to the binary's).
//!
//! The spans themselves are `tracing` spans under the target [`TARGET`] that the
//! `tracing-opentelemetry` layer turns into OpenTelemetry spans; the steps that make them ask
//! [`enabled`] first, so with tracing off no span is made at all. See "Traces" in
//! docs/deploy-and-scaling.md.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The `tracing` target of every span meant for export.
pub const TARGET: &str = "entraguard::trace";

/// Whether traces are exported (set once by [`init`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The installed provider, flushed and shut down by [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether this process exports traces: the steps make their spans only then.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why traces could not be set up (the process then runs without them, and says so).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter: {0}")]
pub struct TelemetryError(String);

/// Whether the environment asks for traces: an OTLP endpoint is set (and not empty).
pub fn requested(var: impl Fn(&str) -> Option<String>) -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// The exporting layer for `service` (the default service name), when the environment asks
/// for traces; `Ok(None)` when it does not. Must run inside a tokio runtime when the protocol
/// is `grpc` (its channel lives there).
pub fn layer<S>(service: &'static str) -> Result<Option<impl tracing_subscriber::Layer<S>>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !requested(|name| std::env::var(name).ok()) {
        return Ok(None);
    }
    // An https:// endpoint: rustls with ring, as deliveries use (the client is built now).
    entraguard_core::redis_conn::ensure_crypto_provider();
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().build().map_err(|e| TelemetryError(e.to_string()))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let tracer = provider.tracer(service);
    let _ = PROVIDER.set(provider);
    ENABLED.store(true, Ordering::Relaxed);
    let filter = tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE);
    // Only the spans made for export: not the spans of log lines, nor log lines outside them.
    // No busy/idle time per span (a clock read at every poll of an attempt), no code location,
    // thread, target or level attributes: the span's own fields say what it is.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false);
    Ok(Some(tracing_subscriber::Layer::with_filter(layer, filter)))
}

/// Flushes the spans not exported yet and stops the exporter: call it when the process stops,
/// after the last work (within the runtime, for `grpc`).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "stopping the trace exporter failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert!(!requested(|_| None));
        assert!(!requested(|_| Some("  ".into())));
        assert!(requested(|n| (n == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4318".into())));
        assert!(requested(|n| {
            (n == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://127.0.0.1:4318/v1/traces".into())
        }));
        assert!(!enabled(), "nothing installed in this test binary");
    }
}
