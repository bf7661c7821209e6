//! What every long-running binary of EntraGuard Notify shares (the worker, the admin server):
//! logging set up one way ([`logging`]) and a shutdown signal handed to every task
//! ([`shutdown`]), and traces exported over OTLP when the environment asks for them
//! ([`telemetry`]).

pub mod logging;
pub mod shutdown;
pub mod telemetry;

pub use shutdown::Shutdown;
