//! What every long-running binary of EntraGuard Notify shares (the worker, the admin server):
//! logging set up one way ([`logging`]) and a shutdown signal handed to every task
//! ([`shutdown`]).

pub mod logging;
pub mod shutdown;

pub use shutdown::Shutdown;
