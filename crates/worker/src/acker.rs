//! Acknowledgements of delivered jobs, batched: while one batch is on its way to Redis, the
//! deliveries that finish meanwhile queue up and go together in the next, as one script call
//! (`ack_delivered.lua`). Under load that is one round trip, one script run and one AOF write
//! for many deliveries; with one delivery at a time it is exactly the single acknowledgement.
//!
//! Nothing is decided here: each delivery still awaits its own answer and, when a batch fails
//! (Redis unreachable), retries its own acknowledgement the usual way ([`crate::persist`]).

use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Acked, Queue, QueueError, WorkerId};
use tokio::sync::{mpsc, oneshot};

/// Most acknowledgements in one script call.
const MAX_BATCH: usize = 256;

struct Item {
    raw: Vec<u8>,
    endpoint: EndpointId,
    /// The attempt's Recent Deliveries entry.
    entry: String,
    answer: oneshot::Sender<Result<Acked, QueueError>>,
}

/// The handle deliveries acknowledge through. Cheap to share.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Item>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Acker {
    /// Starts the batching task; it ends when every handle is dropped.
    pub fn spawn(queue: Queue, worker: WorkerId) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, worker, rx));
        Self { tx }
    }

    /// Acknowledges one delivered job (see [`Queue::ack_delivered`]), in the next batch.
    pub async fn ack(&self, raw: &[u8], endpoint: &EndpointId, entry: &str) -> Result<Acked, QueueError> {
        let (answer, rx) = oneshot::channel();
        let item = Item { raw: raw.to_vec(), endpoint: endpoint.clone(), entry: entry.to_owned(), answer };
        if let Err(mpsc::error::SendError(item)) = self.tx.send(item) {
            // The batching task is gone (shutting down): acknowledge directly.
            drop(item);
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// An error for a batch that was never sent: the caller retries on its own.
fn gone() -> QueueError {
    QueueError::Redis(redis::RedisError::from((redis::ErrorKind::Client, "acknowledgement batcher stopped")))
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
        let jobs: Vec<(&[u8], &EndpointId, &str)> =
            batch.iter().map(|i| (i.raw.as_slice(), &i.endpoint, i.entry.as_str())).collect();
        let result = queue.ack_delivered_many(&worker, &jobs).await;
        drop(jobs);
        match result {
            Ok(answers) => {
                for (item, acked) in
                    batch.drain(..).zip(answers.into_iter().chain(std::iter::repeat(Acked::LeaseLost)))
                {
                    let _ = item.answer.send(Ok(acked));
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
