//! The shared heart of EntraGuard Notify: what an event and an endpoint are, how they are
//! validated, and how jobs move through Redis (key layout, queue protocol, dead-letter queue).
//!
//! This crate speaks no HTTP and no SMTP: the producer links it to publish, the worker to
//! deliver, the CLI and admin API to manage endpoints and dead letters.

pub mod breaker;
pub mod crypto;
pub mod digest;
pub mod endpoint;
pub mod event;
pub mod health;
pub mod history;
pub mod ids;
pub mod job;
pub mod keys;
pub mod operator;
pub mod queue;
pub mod redis_conn;
pub mod retry;
#[cfg(test)]
mod robustness;
pub mod rules;
pub mod secret;
#[cfg(feature = "settings")]
pub mod settings;
pub mod shards;
pub mod stdout;
pub mod store;
pub mod timestamp;
pub mod validation;

pub use endpoint::{Channel, Endpoint, EndpointDraft, EndpointError, EndpointView, Target, TargetPolicy};
pub use event::{Event, EventBody, EventError, EventKind, Severity};
pub use ids::{DeliveryId, EndpointId, EventId};
pub use job::{AttemptRecord, DeliveryJob, EventJob, Job};
pub use keys::KeySpace;
pub use queue::{Queue, QueueError, WorkerId};
pub use retry::{RetrySchedule, RetryScheduleError};
pub use secret::Secret;
pub use store::{EndpointStore, StoreError};
pub use timestamp::Timestamp;

/// The product name and version, as sent in `User-Agent` and shown by `--version`.
pub const USER_AGENT: &str = concat!("EntraGuard-Notify/", env!("CARGO_PKG_VERSION"));
