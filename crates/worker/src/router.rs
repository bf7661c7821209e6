//! Fan-out acknowledgements, batched like delivered jobs' ([`crate::acker`]): while one batch is
//! on its way to Redis, the events whose fan-out was planned meanwhile queue up and go together
//! in the next, as one script call (`route.lua`). Each event is still acknowledged with its
//! steps in one atomic step; the batch shares the round trip, the AOF write, one read of Redis's
//! clock and one read and one write of each dedupe window. With one event at a time it is
//! exactly the single fan-out.
//!
//! Nothing is decided here: each fan-out awaits its own answer and, when a batch fails (Redis
//! unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use std::sync::Arc;

use entraguard_core::queue::{Claim, FanoutParking, Queue, QueueError, RouteStep, Routed};
use tokio::sync::mpsc;

use crate::batch::{self, Submitted, Taken};
use crate::running::Running;

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
    tx: mpsc::UnboundedSender<Submitted<Item, (Option<Routed>, Taken)>>,
}

impl Router {
    /// Starts the batching task; it ends when every handle is dropped. Each call also takes
    /// the next jobs, one per event it finishes (see [`crate::acker`]). With `parking` (the
    /// breaker on), deliveries to an endpoint whose breaker is open go straight into its lane.
    pub fn spawn(queue: Queue, running: Arc<Running>, parking: Option<FanoutParking>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let missing = || (None, Taken::default());
        tokio::spawn(batch::run(rx, MAX_BATCH, missing, async move |items: &[Item]| {
            let events: Vec<(&Claim, &[RouteStep])> =
                items.iter().map(|i| (&i.job, i.steps.as_slice())).collect();
            let take = if running.is_open() { items.len() } else { 0 };
            let _taking = running.taking().await;
            let (routed, fetched) = match queue.route_many(&events, take, parking).await {
                Ok(v) => v,
                Err(e) => {
                    running.note_taken(take > 0);
                    return Err(e);
                }
            };
            let taken = batch::distribute(fetched, std::iter::repeat_n(1, routed.len()), &running);
            Ok(routed.into_iter().zip(taken).collect())
        }));
        Self { tx }
    }

    /// Acknowledges one event job with its fan-out `steps` (see [`Queue::route`]), in the next
    /// batch, and takes the next job for its slot. `None` if the lease was lost.
    pub(crate) async fn route(
        &self,
        job: &Claim,
        steps: &[RouteStep],
    ) -> Result<(Option<Routed>, Taken), QueueError> {
        let item = Item { job: job.clone(), steps: steps.to_vec() };
        batch::submit(&self.tx, item, "fan-out batcher stopped").await
    }
}
