//! The batching both acknowledgement paths share ([`crate::acker`] for delivered jobs,
//! [`crate::router`] for fanned-out events): callers submit one item each and await their own
//! answer; one task sends everything that queued up while the previous batch was on its way to
//! Redis as one script call. Under load that is one round trip, one script run and one AOF write
//! for many items; with one item at a time it is exactly the single call.

use entraguard_core::queue::{Claimed, Fetched, QueueError};
use tokio::sync::{mpsc, oneshot};

use crate::running::Running;

/// What a finishing step (an acknowledgement, a fan-out) took for the slot its job frees.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The next jobs to run (one, or two for a slot that had none ahead: see
    /// [`crate::slot`]), in order, already on the processing list and started in [`Running`].
    pub(crate) jobs: Vec<Claimed>,
    /// Jobs too long to read, taken too: to dead-letter unread.
    pub(crate) oversized: usize,
    /// The endpoints' revision when they were taken (shard 0 only).
    pub(crate) endpoints_rev: Option<u64>,
}

/// Shares out what one batch's step took, in order: each finished item gets the jobs it wanted
/// (`wants`, one number per item) while there are any (the first item also gets the oversized
/// count), each job started in `running` before any task sees it.
pub(crate) fn distribute(
    fetched: Fetched,
    wants: impl IntoIterator<Item = usize>,
    running: &Running,
) -> Vec<Taken> {
    if !fetched.jobs.is_empty() || fetched.oversized > 0 {
        running.note_taken(false);
    }
    let mut jobs = fetched.jobs.into_iter();
    let mut oversized = fetched.oversized;
    wants
        .into_iter()
        .map(|want| {
            let jobs: Vec<Claimed> = jobs.by_ref().take(want).collect();
            for j in &jobs {
                running.start(&j.shared_bytes());
            }
            Taken { jobs, oversized: std::mem::take(&mut oversized), endpoints_rev: fetched.endpoints_rev }
        })
        .collect()
}

/// One submitted item and where its answer goes.
pub(crate) type Submitted<I, A> = (I, oneshot::Sender<Result<A, QueueError>>);

/// Sends `item` to the batching task behind `tx` and waits for its answer. When the task is
/// gone (shutting down) the caller gets an error and retries on its own, as after a failed batch.
pub(crate) async fn submit<I, A>(
    tx: &mpsc::UnboundedSender<Submitted<I, A>>,
    item: I,
    what: &'static str,
) -> Result<A, QueueError> {
    let (answer, rx) = oneshot::channel();
    if tx.send((item, answer)).is_err() {
        return Err(gone(what));
    }
    rx.await.unwrap_or_else(|_| Err(gone(what)))
}

/// The batching task: takes whatever queued up (at most `max`), flushes it with one call, and
/// hands each caller its answer (`missing()` for an item the answer did not cover, each caller
/// the error when the call failed). Ends when every sender is dropped.
pub(crate) async fn run<I, A, F>(
    mut rx: mpsc::UnboundedReceiver<Submitted<I, A>>,
    max: usize,
    missing: impl Fn() -> A,
    mut flush: F,
) where
    F: AsyncFnMut(&[I]) -> Result<Vec<A>, QueueError>,
{
    let mut items: Vec<I> = Vec::with_capacity(max);
    let mut answers: Vec<oneshot::Sender<Result<A, QueueError>>> = Vec::with_capacity(max);
    while let Some((item, answer)) = rx.recv().await {
        items.push(item);
        answers.push(answer);
        while items.len() < max {
            match rx.try_recv() {
                Ok((item, answer)) => {
                    items.push(item);
                    answers.push(answer);
                }
                Err(_) => break,
            }
        }
        match flush(&items).await {
            Ok(got) => {
                for (answer, a) in
                    answers.drain(..).zip(got.into_iter().chain(std::iter::repeat_with(&missing)))
                {
                    let _ = answer.send(Ok(a));
                }
            }
            Err(e) => {
                for answer in answers.drain(..) {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
        items.clear();
    }
}

/// An error for an item that was never sent.
fn gone(what: &'static str) -> QueueError {
    QueueError::Redis(redis::RedisError::from((redis::ErrorKind::Client, what)))
}

/// What a running job knows of its slot: how many jobs its acknowledgement takes, and how to
/// say that its receiver part is over.
#[derive(Debug)]
pub(crate) struct Slot {
    freed: Option<oneshot::Sender<()>>,
    want: usize,
}

impl Slot {
    /// A slot whose job takes `want` jobs at its acknowledgement and says on `freed` when its
    /// receiver part is over.
    pub(crate) fn new(freed: oneshot::Sender<()>, want: usize) -> Self {
        Self { freed: Some(freed), want }
    }

    /// Jobs a delivered job's acknowledgement takes for this slot: 2 when the slot has none
    /// ahead and none coming, else 1.
    pub(crate) fn want(&self) -> usize {
        self.want
    }

    /// The job's receiver part is over (the answer is in, the endpoint's slot given back): the
    /// slot may start its next job while this one records its outcome.
    pub(crate) fn free(&mut self) {
        if let Some(freed) = self.freed.take() {
            let _ = freed.send(());
        }
    }
}
