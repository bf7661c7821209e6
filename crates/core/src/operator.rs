//! What an operator does to an endpoint's circuit breaker (the CLI's `endpoint reset` and
//! `endpoint enable`, the admin API's enable, a changed URL): close it by hand, resume its lane,
//! and tell every worker at once.

use crate::breaker::{BreakerSettings, Report};
use crate::endpoint::Endpoint;
use crate::ids::EndpointId;
use crate::queue::{Queue, QueueError};
use crate::store::{EndpointStore, StoreError};

/// Why enabling or resetting an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What a reset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The breaker was open, half-open or disabled and is closed now (the change is announced);
    /// `false`: it was already closed.
    pub closed_now: bool,
    /// Deliveries that were waiting in the endpoint's lane: the oldest was released at once and
    /// the rest follow, oldest first, as deliveries finish.
    pub waiting: u64,
}

impl Reset {
    /// What happened, for people: "breaker closed; 3 waiting deliveries resume, oldest first".
    pub fn summary(&self) -> String {
        let breaker = if self.closed_now { "breaker closed" } else { "breaker was already closed" };
        match self.waiting {
            0 => format!("{breaker}; nothing was waiting in its lane"),
            1 => format!("{breaker}; 1 waiting delivery resumes"),
            n => format!("{breaker}; {n} waiting deliveries resume, oldest first"),
        }
    }
}

/// Closes an endpoint's breaker by hand and resumes its lane (the oldest at once, the rest
/// oldest first as deliveries finish); a breaker that was not closed announces it.
/// Workers that cached "open" ask Redis again within a second.
pub async fn reset(queue: &Queue, endpoint: &Endpoint) -> Result<Reset, QueueError> {
    let answer = queue
        .breaker_report(&endpoint.id, Some(&endpoint.name), Report::Reset, &BreakerSettings::default())
        .await?;
    Ok(Reset { closed_now: answer.changed, waiting: answer.parked })
}

/// [`reset`], then the endpoints' revision moved, so every worker drops what it cached of the
/// breaker at its next fetch: an operator's reset (the CLI's `endpoint reset`, a changed URL)
/// acts at once.
pub async fn reset_now(
    store: &EndpointStore,
    queue: &Queue,
    endpoint: &Endpoint,
) -> Result<Reset, BreakerError> {
    let done = reset(queue, endpoint).await?;
    store.touch().await?;
    Ok(done)
}

/// Enables an endpoint (the CLI's `endpoint enable`, the admin API's enable): its breaker is
/// reset and the deliveries kept in its lane while it was disabled resume. Returns the
/// endpoint as stored and what the reset did.
pub async fn enable_endpoint(
    store: &EndpointStore,
    queue: &Queue,
    id: &EndpointId,
) -> Result<(Endpoint, Reset), BreakerError> {
    let ep = store.set_enabled(id, true).await?;
    let reset = reset_now(store, queue, &ep).await?;
    Ok((ep, reset))
}
