//! The one logging set-up of the long-running binaries (worker and admin server): stderr, the
//! `RUST_LOG` filter (default `info`), text or JSON. Text gets ANSI colours only on a terminal,
//! and never with `NO_COLOR` set, so files and pipes get plain lines.

use std::io::IsTerminal;

use entraguard_core::settings::{LogFormat, log_colours};

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The cluster client warns once per failed reconnect (hundreds a second while a failover
        // runs); our own "redis unavailable" lines say what matters.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis::cluster_handling=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(log_colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref()))
            .init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
}
