//! What every task of one worker process shares: the queue, the endpoint store, the deliverer,
//! the admission gate and the set of running jobs.

use entraguard_core::queue::{Queue, WorkerId};
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

/// What every task of one worker process shares.
pub(crate) struct Ctx {
    pub(crate) queue: Queue,
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
    pub(crate) endpoints: EndpointCache,
    /// The jobs this process runs: what its processing list should hold.
    pub(crate) running: Running,
}
