//! Admission per endpoint: whether a delivery may run now, or waits in its endpoint's lane.
//!
//! An endpoint takes at most `NOTIFY_ENDPOINT_CONCURRENCY` deliveries at once from one worker
//! process, and a Slack webhook one message per `NOTIFY_SLACK_PACE` across all workers. A
//! delivery that cannot run now is parked in the endpoint's lane in Redis (`{p}:lane:<id>`),
//! where it costs nothing while it waits: no polling, no trips through the delayed set. It
//! leaves the lane when
//! - a delivery to that endpoint finishes in the process that parked it (one freed slot
//!   releases one parked delivery), or
//! - the lane's wake-up time comes (`{p}:lanes`): the Slack send slot frees, or, as a safety
//!   net for a worker that died with deliveries parked, a second after the last look.
//!
//! So a hanging endpoint holds only its own slots and its waiting work costs O(1) Redis
//! commands per slot freed, whatever the number waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use entraguard_core::endpoint::{Channel, Endpoint};
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Queue, QueueError};

/// How long a lane parked for the in-flight cap waits, at most, before it is looked at again
/// (a safety net: a finishing delivery normally releases it at once).
pub const LANE_SAFETY_LOOK: Duration = Duration::from_secs(1);

/// Whether a delivery runs now.
#[derive(Debug)]
pub enum Admission {
    /// Run it; give the ticket back with [`Ticket::finish`] when its outcome is recorded.
    Go(Ticket),
    /// Park it in the endpoint's lane; the lane is looked at again after this at the latest.
    Park(Duration),
}

/// The admission state of every endpoint this process delivers to. Cheap to share.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cap: usize,
    slack_pace: Duration,
    lanes: Mutex<HashMap<EndpointId, Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    in_flight: usize,
    /// Deliveries this process parked for the cap and has not released yet.
    parked: usize,
}

impl Gate {
    pub fn new(cap: usize, slack_pace: Duration) -> Self {
        Self { inner: Arc::new(Inner { cap: cap.max(1), slack_pace, lanes: Mutex::new(HashMap::new()) }) }
    }

    /// Admits a delivery to `endpoint`, or says how long it parks. The Slack send slot is
    /// claimed in Redis (shared by every worker); a Redis error is returned for the caller to
    /// retry, with nothing held.
    pub async fn admit(&self, queue: &Queue, endpoint: &Endpoint) -> Result<Admission, QueueError> {
        {
            let mut lanes = self.inner.lock();
            let counts = lanes.entry(endpoint.id.clone()).or_default();
            if counts.in_flight >= self.inner.cap {
                counts.parked += 1;
                return Ok(Admission::Park(LANE_SAFETY_LOOK));
            }
            counts.in_flight += 1;
        }
        let ticket = Ticket { gate: self.clone(), endpoint: endpoint.id.clone(), finished: false };
        if endpoint.channel == Channel::Slack && !self.inner.slack_pace.is_zero() {
            // Dropping the ticket on either early return frees the slot again.
            if let Some(wait) = queue.pace(&endpoint.id, self.inner.slack_pace).await? {
                return Ok(Admission::Park(wait));
            }
        }
        Ok(Admission::Go(ticket))
    }

    /// Frees one slot; `true` when a delivery this process parked should be released.
    fn free(&self, endpoint: &EndpointId) -> bool {
        let mut lanes = self.inner.lock();
        let Some(counts) = lanes.get_mut(endpoint) else { return false };
        counts.in_flight = counts.in_flight.saturating_sub(1);
        let release = counts.parked > 0;
        if release {
            counts.parked -= 1;
        }
        if counts.in_flight == 0 && counts.parked == 0 {
            lanes.remove(endpoint);
        }
        release
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Counts>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted delivery's slot. Freed when finished, or when dropped (a panic, a park after
/// all): never leaked.
#[derive(Debug)]
pub struct Ticket {
    gate: Gate,
    endpoint: EndpointId,
    finished: bool,
}

impl Ticket {
    /// The delivery's outcome is recorded: frees the slot. `true` when one delivery parked in
    /// this endpoint's lane should now be released to the ready list.
    pub fn finish(mut self) -> bool {
        self.finished = true;
        self.gate.free(&self.endpoint)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            // A parked delivery of ours waits for the lane's next look instead.
            let _ = self.gate.free(&self.endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_endpoint_parks_and_a_finish_releases_one() {
        let gate = Gate::new(2, Duration::ZERO);
        let ep = EndpointId::generate();
        let take = || {
            let mut lanes = gate.inner.lock();
            let c = lanes.entry(ep.clone()).or_default();
            if c.in_flight >= gate.inner.cap {
                c.parked += 1;
                None
            } else {
                c.in_flight += 1;
                Some(Ticket { gate: gate.clone(), endpoint: ep.clone(), finished: false })
            }
        };
        let a = take().expect("first slot");
        let b = take().expect("second slot");
        assert!(take().is_none(), "the third parks");
        assert!(a.finish(), "a finish releases the parked one");
        drop(b);
        assert!(gate.inner.lock().is_empty(), "nothing held once all are done");
    }
}
