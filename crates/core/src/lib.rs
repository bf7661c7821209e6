//! The shared heart of EntraGuard Notify: how jobs move through Redis (key layout, queue
//! protocol, dead-letter queue) and what an endpoint is, over the pure model of
//! `entraguard-model` (re-exported here at its old paths).
//!
//! This crate speaks no HTTP and no SMTP: the producer links it to publish, the worker to
//! deliver, the CLI and admin API to manage endpoints and dead letters.

// The pure model, at its old paths (`entraguard_core::event::Event` and so on).
pub use entraguard_model::{digest, event, health, ids, retry, secret, timestamp, validation};

pub mod breaker;
pub mod crypto;
pub mod endpoint;
pub mod history;
pub mod job;
pub mod keys;
pub mod operator;
pub mod queue;
pub mod redis_conn;
#[cfg(test)]
mod robustness;
pub mod rules;
#[cfg(feature = "settings")]
pub mod settings;
pub mod shards;
pub mod stdout;
pub mod store;

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
