//! Fan-out acknowledgements, batched like delivered jobs' ([`crate::acker`]): while one batch is
//! on its way to Redis, the events whose fan-out was planned meanwhile queue up and go together
//! in the next, as one script call (`route.lua`). Each event is still acknowledged with its
//! steps in one atomic step; the batch shares the round trip, the AOF write, one read of Redis's
//! clock and one read and one write of each dedupe window. With one event at a time it is
//! exactly the single fan-out.
//!
//! Nothing is decided here: each fan-out awaits its own answer and, when a batch fails (Redis
//! unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use entraguard_core::queue::{Claim, Queue, QueueError, RouteStep, Routed};
use tokio::sync::mpsc;

use crate::batch::{self, Submitted};

/// Most events in one script call.
const MAX_BATCH: usize = 128;

/// One event job: the claim on it and its fan-out steps.
struct Item {
    job: Claim,
    steps: Vec<RouteStep>,
}

/// The handle fan-out acknowledges through. Cheap to share.
#[derive(Debug, Clone)]
pub struct Router {
    tx: mpsc::UnboundedSender<Submitted<Item, Option<Routed>>>,
}

impl Router {
    /// Starts the batching task; it ends when every handle is dropped.
    pub fn spawn(queue: Queue) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch::run(
            rx,
            MAX_BATCH,
            || None,
            async move |items: &[Item]| {
                let events: Vec<(&Claim, &[RouteStep])> =
                    items.iter().map(|i| (&i.job, i.steps.as_slice())).collect();
                queue.route_many(&events).await
            },
        ));
        Self { tx }
    }

    /// Acknowledges one event job with its fan-out `steps` (see [`Queue::route`]), in the next
    /// batch. `None` if the lease was lost.
    pub async fn route(&self, job: &Claim, steps: &[RouteStep]) -> Result<Option<Routed>, QueueError> {
        let item = Item { job: job.clone(), steps: steps.to_vec() };
        batch::submit(&self.tx, item, "fan-out batcher stopped").await
    }
}
