//! What EntraGuard Notify's events are, pure: the event kinds and bodies (and how they are read
//! and validated), ids, timestamps, scan digests, the retry schedule, rate limits, secrets,
//! silences, W3C trace context and an endpoint input's error.
//!
//! No tokio, no Redis, no HTTP: the layers above (`entraguard-core`'s queue, the worker, the
//! producer) build on these types, and this crate cannot reach back into them.

pub mod digest;
pub mod event;
pub mod health;
pub mod ids;
pub mod rate_limit;
pub mod retry;
pub mod secret;
pub mod silence;
pub mod timestamp;
pub mod trace;
pub mod validation;

pub use event::{Event, EventBody, EventError, EventKind, Severity};
pub use ids::{DeliveryId, EndpointId, EventId, SilenceId};
pub use rate_limit::{RateLimit, RateLimitError};
pub use retry::{RetrySchedule, RetryScheduleError};
pub use secret::Secret;
pub use timestamp::Timestamp;
pub use trace::TraceParent;
