//! Acknowledgements of delivered jobs, batched: while one batch is on its way to Redis, the
//! deliveries that finish meanwhile queue up and go together in the next, as one script call
//! (`ack_delivered.lua`). Under load that is one round trip, one script run and one AOF write
//! for many deliveries; with one delivery at a time it is exactly the single acknowledgement.
//!
//! The same call takes the next jobs, as many as each delivery's slot wants (one, or two for a
//! slot with none ahead: [`crate::slot`]), while the worker is not shutting down: each slot
//! runs them with the concurrency permit it holds, so a busy worker's delivery costs one round
//! trip, not an acknowledgement and a fetch, and that round trip runs beside the slot's next
//! delivery. The jobs are started in [`Running`] before any task sees them, under
//! [`Running::taking`].
//!
//! Nothing is decided here: each delivery still awaits its own answer and, when a batch fails
//! (Redis unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use std::sync::Arc;

use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Acked, Claim, Queue, QueueError};
use tokio::sync::mpsc;

use crate::batch::{self, Submitted, Taken};
use crate::running::Running;

/// Most acknowledgements in one script call.
const MAX_BATCH: usize = 256;

/// One delivered job: the claim on it, its endpoint, and the attempt's Recent Deliveries entry.
struct Item {
    job: Claim,
    endpoint: EndpointId,
    entry: String,
    /// Jobs to take for the delivery's slot (see [`crate::slot`]).
    want: usize,
}

/// One delivery's answer: its acknowledgement and what was taken for its slot.
#[derive(Debug)]
pub(crate) struct AckAnswer {
    pub(crate) acked: Acked,
    pub(crate) taken: Taken,
}

/// The handle deliveries acknowledge through. Cheap to share.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Submitted<Item, AckAnswer>>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Acker {
    /// Starts the batching task; it ends when every handle is dropped.
    pub fn spawn(queue: Queue, running: Arc<Running>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let missing = || AckAnswer { acked: Acked::LeaseLost, taken: Taken::default() };
        tokio::spawn(batch::run(rx, MAX_BATCH, missing, async move |items: &[Item]| {
            let jobs: Vec<(&Claim, &EndpointId, &str)> =
                items.iter().map(|i| (&i.job, &i.endpoint, i.entry.as_str())).collect();
            let take = if running.is_open() { items.iter().map(|i| i.want).sum() } else { 0 };
            let _taking = running.taking().await;
            let (acked, fetched) = match queue.ack_delivered_many(&jobs, take).await {
                Ok(v) => v,
                Err(e) => {
                    running.note_taken(take > 0);
                    return Err(e);
                }
            };
            let taken = batch::distribute(fetched, items.iter().map(|i| i.want), &running);
            Ok(acked.into_iter().zip(taken).map(|(acked, taken)| AckAnswer { acked, taken }).collect())
        }));
        Self { tx }
    }

    /// Acknowledges one delivered job (see [`Queue::ack_delivered`]) in the next batch, and
    /// takes the next `want` jobs for its slot.
    pub(crate) async fn ack(
        &self,
        job: &Claim,
        endpoint: &EndpointId,
        entry: &str,
        want: usize,
    ) -> Result<AckAnswer, QueueError> {
        let item = Item { job: job.clone(), endpoint: endpoint.clone(), entry: entry.to_owned(), want };
        batch::submit(&self.tx, item, "acknowledgement batcher stopped").await
    }
}
