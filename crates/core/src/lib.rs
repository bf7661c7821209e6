//! The shared heart of EntraGuard Notify: how jobs move through Redis (key layout, queue
//! protocol, dead-letter queue) and what an endpoint is, over the pure model of
//! `entraguard-model` (re-exported here at its old paths).
//!
//! This crate speaks no HTTP and no SMTP: the producer links it to publish, the worker to
//! deliver, the CLI and admin API to manage endpoints and dead letters.
//!
//! Features (all on by default; the workspace's crates name theirs): `endpoints` (endpoints,
//! rules, sealing, the endpoint store), `tls` (`rediss://`), `cluster` (`redis+cluster://`),
//! `settings` (the binaries' shared clap settings), `openapi` (admin API schemas). Without
//! them what is left is what a producer needs: the queue over one plain Redis.

// The pure model, at its old paths (`entraguard_core::event::Event` and so on).
pub use entraguard_model::{
    digest, event, health, ids, rate_limit, retry, secret, silence, timestamp, trace, validation,
};

pub mod breaker;
#[cfg(feature = "endpoints")]
pub mod crypto;
#[cfg(feature = "endpoints")]
pub mod endpoint;
pub mod history;
pub mod job;
pub mod keys;
pub mod layout_version;
#[cfg(feature = "endpoints")]
pub mod operator;
pub mod queue;
pub mod redis_conn;
#[cfg(all(test, feature = "endpoints"))]
mod robustness;
#[cfg(feature = "endpoints")]
pub mod rules;
#[cfg(feature = "settings")]
pub mod settings;
pub mod shards;
#[cfg(feature = "endpoints")]
pub mod signing_key;
#[cfg(feature = "endpoints")]
pub mod silences;
pub mod stdout;
#[cfg(feature = "endpoints")]
pub mod store;

#[cfg(feature = "endpoints")]
pub use endpoint::{Channel, Endpoint, EndpointDraft, EndpointError, EndpointView, Target, TargetPolicy};
pub use event::{Event, EventBody, EventError, EventKind, Severity};
pub use ids::{DeliveryId, EndpointId, EventId};
pub use job::{AttemptRecord, DeliveryJob, EventJob, Job};
pub use keys::KeySpace;
pub use queue::{Queue, QueueError, WorkerId};
pub use retry::{RetrySchedule, RetryScheduleError};
pub use secret::Secret;
#[cfg(feature = "endpoints")]
pub use store::{EndpointStore, StoreError};
pub use timestamp::Timestamp;

/// The product name and version, as sent in `User-Agent` and shown by `--version`.
pub const USER_AGENT: &str = concat!("EntraGuard-Notify/", env!("CARGO_PKG_VERSION"));
