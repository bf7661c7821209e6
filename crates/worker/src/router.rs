//! Fan-out acknowledgements, batched like delivered jobs' ([`crate::acker`]): while one batch is
//! on its way to Redis, the events whose fan-out was planned meanwhile queue up and go together
//! in the next, as one script call (`route.lua`). Each event is still acknowledged with its
//! steps in one atomic step; the batch shares the round trip, the AOF write, one read of Redis's
//! clock and one read and one write of each dedupe window. With one event at a time it is
//! exactly the single fan-out.
//!
//! Nothing is decided here: each fan-out awaits its own answer and, when a batch fails (Redis
//! unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use entraguard_core::queue::{Queue, QueueError, RouteStep, Routed, WorkerId};
use tokio::sync::{mpsc, oneshot};

/// Most events in one script call.
const MAX_BATCH: usize = 128;

struct Item {
    raw: Vec<u8>,
    steps: Vec<RouteStep>,
    answer: oneshot::Sender<Result<Option<Routed>, QueueError>>,
}

/// The handle fan-out acknowledges through. Cheap to share.
#[derive(Debug, Clone)]
pub struct Router {
    tx: mpsc::UnboundedSender<Item>,
}

impl Router {
    /// Starts the batching task; it ends when every handle is dropped.
    pub fn spawn(queue: Queue, worker: WorkerId) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, worker, rx));
        Self { tx }
    }

    /// Acknowledges one event job with its fan-out `steps` (see [`Queue::route`]), in the next
    /// batch. `None` if the lease was lost.
    pub async fn route(&self, raw: &[u8], steps: &[RouteStep]) -> Result<Option<Routed>, QueueError> {
        let (answer, rx) = oneshot::channel();
        let item = Item { raw: raw.to_vec(), steps: steps.to_vec(), answer };
        if self.tx.send(item).is_err() {
            // The batching task is gone (shutting down): the caller retries on its own.
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// An error for a batch that was never sent: the caller retries on its own.
fn gone() -> QueueError {
    QueueError::Redis(redis::RedisError::from((redis::ErrorKind::Client, "fan-out batcher stopped")))
}

async fn run(queue: Queue, worker: WorkerId, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let events: Vec<(&[u8], &[RouteStep])> =
            batch.iter().map(|i| (i.raw.as_slice(), i.steps.as_slice())).collect();
        let result = queue.route_many(&worker, &events).await;
        drop(events);
        match result {
            Ok(answers) => {
                for (item, routed) in batch.drain(..).zip(answers.into_iter().chain(std::iter::repeat(None)))
                {
                    let _ = item.answer.send(Ok(routed));
                }
            }
            Err(e) => {
                for item in batch.drain(..) {
                    let _ = item.answer.send(Err(e.clone()));
                }
            }
        }
    }
}
