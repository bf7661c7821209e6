//! Acknowledgements of delivered jobs, batched: while one batch is on its way to Redis, the
//! deliveries that finish meanwhile queue up and go together in the next, as one script call
//! (`ack_delivered.lua`). Under load that is one round trip, one script run and one AOF write
//! for many deliveries; with one delivery at a time it is exactly the single acknowledgement.
//!
//! Nothing is decided here: each delivery still awaits its own answer and, when a batch fails
//! (Redis unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Acked, Claim, Queue, QueueError};
use tokio::sync::mpsc;

use crate::batch::{self, Submitted};

/// Most acknowledgements in one script call.
const MAX_BATCH: usize = 256;

/// One delivered job: the claim on it, its endpoint, and the attempt's Recent Deliveries entry.
struct Item {
    job: Claim,
    endpoint: EndpointId,
    entry: String,
}

/// The handle deliveries acknowledge through. Cheap to share.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Submitted<Item, Acked>>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Acker {
    /// Starts the batching task; it ends when every handle is dropped.
    pub fn spawn(queue: Queue) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch::run(rx, MAX_BATCH, Acked::LeaseLost, async move |items: &[Item]| {
            let jobs: Vec<(&Claim, &EndpointId, &str)> =
                items.iter().map(|i| (&i.job, &i.endpoint, i.entry.as_str())).collect();
            queue.ack_delivered_many(&jobs).await
        }));
        Self { tx }
    }

    /// Acknowledges one delivered job (see [`Queue::ack_delivered`]), in the next batch.
    pub async fn ack(&self, job: &Claim, endpoint: &EndpointId, entry: &str) -> Result<Acked, QueueError> {
        let item = Item { job: job.clone(), endpoint: endpoint.clone(), entry: entry.to_owned() };
        batch::submit(&self.tx, item, "acknowledgement batcher stopped").await
    }
}
