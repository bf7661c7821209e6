//! The one logging set-up of the long-running binaries (worker and admin server): stderr, the
//! `RUST_LOG` filter (default `info`), text or JSON. Text gets ANSI colours only on a terminal,
//! and never with `NO_COLOR` set, so files and pipes get plain lines.

mod cluster_warnings;

use std::io::IsTerminal;
use std::sync::OnceLock;

use entraguard_core::settings::{LogFormat, log_colours};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use cluster_warnings::{ClusterWarnings, Outage};

/// The installed [`ClusterWarnings`], for [`flush`].
static CLUSTER_WARNINGS: OnceLock<ClusterWarnings> = OnceLock::new();

/// Installs the global subscriber (no traces: see [`init_traced`]).
pub fn init(format: LogFormat) {
    let _ = install(format, None);
}

/// Installs the global subscriber, with the OTLP trace exporter when the environment asks for
/// it ([`crate::telemetry`]); says whether traces are on. Call it within the tokio runtime (a
/// `grpc` exporter's channel lives there), and [`crate::telemetry::shutdown`] when the process
/// stops.
pub fn init_traced(
    format: LogFormat,
    service: &'static str,
) -> Result<bool, crate::telemetry::TelemetryError> {
    install(format, Some(service))
}

fn install(
    format: LogFormat,
    service: Option<&'static str>,
) -> Result<bool, crate::telemetry::TelemetryError> {
    // A usable `RUST_LOG` is read by `EnvFilter`. Without one, the default `info` is a static
    // per-target filter: the same lines, without `EnvFilter`'s bookkeeping of spans (a lock and a
    // map lookup each time a span is entered or left, i.e. on every poll of every delivery). The
    // cluster client warns once per failed reconnect (hundreds a second while a failover runs):
    // `ClusterWarnings` collapses those, whichever filter is in place, to the first warning per
    // node and one line with the count when the node has been quiet for a while.
    // With traces on, the spans made for export pass whatever the log level (`RUST_LOG=warn`
    // must not turn traces off); they carry no log lines of their own.
    let traced = service.is_some() && crate::telemetry::requested(|name| std::env::var(name).ok());
    let (env, targets) = match EnvFilter::try_from_default_env() {
        Ok(filter) if traced => match format!("{}=trace", crate::telemetry::TARGET).parse() {
            Ok(spans) => (Some(filter.add_directive(spans)), None),
            Err(_) => (Some(filter), None),
        },
        Ok(filter) => (Some(filter), None),
        Err(_) if traced => (
            None,
            Some(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target(crate::telemetry::TARGET, LevelFilter::TRACE),
            ),
        ),
        Err(_) => (None, Some(Targets::new().with_default(LevelFilter::INFO))),
    };
    let cluster_warnings = CLUSTER_WARNINGS.get_or_init(ClusterWarnings::new).clone();
    let registry = tracing_subscriber::registry().with(env).with(targets).with(cluster_warnings);
    // With traces off, the subscriber is exactly the one without them (no empty layer in it).
    match service.map(crate::telemetry::layer).transpose()?.flatten() {
        Some(traces) => {
            with_output(registry.with(traces), format);
            Ok(true)
        }
        None => {
            with_output(registry, format);
            Ok(false)
        }
    }
}

/// Installs `registry` with the log lines' output layer (text or JSON on stderr).
fn with_output<S>(registry: S, format: LogFormat)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(log_colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            )))
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .init(),
    }
}

/// Logs the count of the cluster client's warnings still being collapsed (a node still down):
/// call it when the process stops, after the last work.
pub fn flush() {
    if let Some(layer) = CLUSTER_WARNINGS.get() {
        layer.flush();
    }
}
