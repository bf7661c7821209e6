//! The one logging set-up of the long-running binaries (worker and admin server): stderr, the
//! `RUST_LOG` filter (default `info`), text or JSON. Text gets ANSI colours only on a terminal,
//! and never with `NO_COLOR` set, so files and pipes get plain lines.

use std::io::IsTerminal;

use entraguard_core::settings::{LogFormat, log_colours};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    // A usable `RUST_LOG` is read by `EnvFilter`. Without one, the default `info` is a static
    // per-target filter: the same lines, without `EnvFilter`'s bookkeeping of spans (a lock and a
    // map lookup each time a span is entered or left, i.e. on every poll of every delivery). The
    // cluster client warns once per failed reconnect (hundreds a second while a failover runs);
    // our own "redis unavailable" lines say what matters, so it logs errors only.
    let (env, targets) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (Some(filter), None),
        Err(_) => (
            None,
            Some(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("redis::cluster_handling", LevelFilter::ERROR),
            ),
        ),
    };
    let registry = tracing_subscriber::registry().with(env).with(targets);
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
