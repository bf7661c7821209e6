//! The EntraGuard Notify worker: takes jobs from Redis, fans each event out to its endpoints,
//! renders and delivers each delivery, and re-schedules or dead-letters what fails.
//!
//! The path of one event, top to bottom: [`runner`] (fetch, concurrency, shutdown) →
//! [`fanout`] → [`delivery`] (render with [`channel`], send with [`transport`]) → [`retry`].

pub mod channel;
pub mod config;
pub mod delivery;
pub mod fanout;
pub mod gate;
pub mod health;
pub mod metrics;
pub mod outcome;
pub mod retry;
pub mod runner;
pub mod running;
pub mod shutdown;
pub mod signature;
pub mod transport;

pub use config::WorkerConfig;
pub use runner::run;
pub use shutdown::Shutdown;
