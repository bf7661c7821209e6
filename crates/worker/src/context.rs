//! What the tasks serving one queue shard share: that shard's queue, acknowledgement batchers,
//! clock and running jobs; and, shared by every shard of the process, the endpoint store and
//! its cache, the deliverer and the admission gate.

use std::sync::Arc;

use entraguard_core::queue::{Queue, Shards, WorkerId};
use entraguard_core::store::EndpointStore;
use tokio::sync::Notify;

use crate::acker::Acker;
use crate::clock::RedisClock;
use crate::config::WorkerConfig;
use crate::delivery::Deliverer;
use crate::endpoints::EndpointCache;
use crate::gate::Gate;
use crate::router::Router;
use crate::running::Running;

/// What the tasks serving one queue shard share.
pub(crate) struct Ctx {
    /// The shard this context serves.
    pub(crate) queue: Queue,
    /// Every shard (fan-out forwards to other shards' endpoints through them).
    pub(crate) shards: Shards,
    /// The index of [`Ctx::queue`] in [`Shards::served`].
    pub(crate) shard: usize,
    pub(crate) store: EndpointStore,
    pub(crate) deliverer: Deliverer,
    pub(crate) worker: WorkerId,
    pub(crate) config: WorkerConfig,
    /// Wakes the promoter when this worker schedules a retry.
    pub(crate) promoter_wake: Notify,
    /// Admission per endpoint: in-flight cap and Slack pacing; what cannot run waits in lanes.
    pub(crate) gate: Gate,
    /// Acknowledges delivered jobs in batches.
    pub(crate) acker: Acker,
    /// Acknowledges fanned-out events with their steps, in batches.
    pub(crate) router: Router,
    /// Redis's clock, read now and then (quiet hours are decided by it).
    pub(crate) clock: RedisClock,
    /// Endpoints and routes, cached and kept current by the endpoints' revision.
    pub(crate) endpoints: Arc<EndpointCache>,
    /// The jobs this process runs: what its processing list should hold.
    pub(crate) running: Arc<Running>,
}
