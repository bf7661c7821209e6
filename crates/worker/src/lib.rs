//! The EntraGuard Notify worker: takes jobs from Redis, fans each event out to its endpoints,
//! renders and delivers each delivery, and re-schedules or dead-letters what fails.
//!
//! The path of one event, top to bottom: [`runner`] (fetch, concurrency, shutdown, dispatch),
//! [`slot`] (one slot's jobs, the next one's delivery beside the last one's acknowledgement) →
//! [`fanout`] (an event becomes deliveries) → [`attempt`] (one delivery: admission through
//! [`gate`], the attempt through [`delivery`] (render with [`channel`], send with
//! [`transport`]), the outcome with [`retry`]); [`trace`] makes their spans when traces are on.

mod acker;
pub mod attempt;
mod batch;
mod clock;
pub mod config;
mod context;
pub mod delivered;
mod digest;
pub mod endpoints;
pub mod fanout;
pub mod gate;
pub mod health;
mod lease;
pub mod metrics;
mod persist;
mod poison;
mod preflight;
mod promoter;
mod reconcile;
pub mod retry;
mod router;
pub mod runner;
pub mod running;
pub mod silencing;
mod slot;
pub mod trace;

pub use config::WorkerConfig;
// Rendering and sending live below the worker (the admin server's Send test uses them too), and
// logging and shutdown with every long-running binary; their paths here stay as they were.
pub use entraguard_delivery::{channel, delivery, outcome, signature, transport};
pub use entraguard_process::{logging, shutdown, telemetry};
pub use runner::run;
pub use shutdown::Shutdown;
