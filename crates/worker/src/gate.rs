//! Admission per endpoint: whether a delivery may run now, or waits in its endpoint's lane.
//!
//! An endpoint takes at most `NOTIFY_ENDPOINT_CONCURRENCY` deliveries at once from one worker
//! process, and an endpoint with a rate limit (`10/s`, `600/min`; a Slack webhook without one:
//! one message per `NOTIFY_SLACK_PACE`) one delivery per send slot across all workers, the slots
//! spaced evenly (`Queue::pace`; a slot within `PACE_AHEAD` is waited for here). A
//! delivery that cannot run now is parked at the back of the endpoint's lane in Redis
//! (`{p}:lane:<id>`, at most `NOTIFY_LANE_MAX`; past it the delivery is dead-lettered as
//! "endpoint lane full"), where it costs nothing while it waits: no polling, no trips through
//! the delayed set. The lane itself is the shared state: it leaves the lane, oldest first, when
//! - **any** delivery to that endpoint finishes, in whichever worker process: the finishing
//!   acknowledgement answers "the lane holds work" in the same round trip, and the worker
//!   releases as many of the oldest as it has free slots for the endpoint; a process that parked
//!   deliveries itself releases one per finish whatever it delivered. So a restarted or replaced
//!   worker drains a backlog at the rate of the one before it, and a healthy endpoint's
//!   delivery costs no extra command;
//! - its breaker closes: a probe's success releases the probing worker's cap's worth at once, an
//!   operator's reset or enable the oldest; finishing deliveries release the rest;
//! - the lane's wake-up time comes (`{p}:lanes`): a rate-limited endpoint's next send slot comes
//!   within `PACE_AHEAD` (the release gives each delivery it moves its own slot, so a
//!   rate-limited lane is released by its schedule only, not by finishing deliveries), the probe is due,
//!   or, as a safety net when no delivery to it finishes (every worker restarted), a second
//!   after the last look, which releases the oldest (whose finish releases the rest, as above).
//!
//! So a hanging endpoint holds only its own slots and its waiting work costs O(1) Redis
//! commands per slot freed, whatever the number waiting.
//!
//! Admission also consults the endpoint's circuit breaker (state in Redis, see
//! `entraguard_core::breaker`), through a cache in this process: a closed breaker is read
//! again at most once per probe interval (so a healthy endpoint costs no extra read per
//! delivery), an open one at most [`OPEN_RECHECK`] after the last read (an operator's reset, an
//! enable or another worker's successful probe reaches every worker within it, and at the next
//! fetch when the endpoints' revision moves). The process learns "open" from its own failure
//! report's answer, or from that cached read. While open, deliveries park in the lane with its
//! next look at the probe time; when it comes, admission claims the probe in Redis. New
//! deliveries made while it is open do not come here at all: fan-out puts them into the lane
//! (`route.lua`, see `entraguard_core::queue::FanoutParking`).
//! Once a closed breaker has counted a failure, every admission asks Redis, which lets a
//! delivery through only while failures, trials out and this process's attempts in flight stay
//! under the threshold (the rest park until a finishing delivery releases one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use entraguard_core::breaker::{Admit, Answer, AttemptFacts, BreakerSettings, BreakerState};
use entraguard_core::endpoint::Endpoint;
use entraguard_core::ids::EndpointId;
use entraguard_core::queue::{Pace, Queue, QueueError};

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

/// How long a disabled endpoint's lane waits before it is looked at again (enabling it releases
/// the lane at once).
pub const DISABLED_LOOK: Duration = Duration::from_secs(86_400);

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
    breaker: BreakerSettings,
    /// What this process knows of each endpoint's breaker, and until when it trusts it.
    breakers: Mutex<HashMap<EndpointId, Known>>,
}

/// A cached breaker state.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// Closed as of the last read (a success clears its failure count through the
    /// acknowledgement itself).
    Closed { until: Instant, generation: u64 },
    /// Open (or disabled, or someone else's probe is out): park until `until`. Trusted for
    /// [`OPEN_RECHECK`] after `read`: an operator's reset or another worker's probe may have
    /// closed it since.
    Open { until: Instant, read: Instant },
}

/// Longest this process trusts a cached "open" before it asks Redis again: a reset, an enable
/// or a probe that closed the breaker elsewhere reaches it within this (at once when the
/// endpoints' revision moves, see [`Gate::forget_breakers`]). Within this of the probe time
/// every admission asks Redis.
pub const OPEN_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Counts {
    in_flight: usize,
    /// Of those, admitted as breaker trials (counted in Redis).
    trials: usize,
    /// Deliveries this process parked for the cap and has not released yet.
    parked: usize,
}

impl Gate {
    pub fn new(cap: usize, slack_pace: Duration, breaker: BreakerSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                cap: cap.max(1),
                slack_pace,
                lanes: Mutex::new(HashMap::new()),
                breaker,
                breakers: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn breaker_settings(&self) -> &BreakerSettings {
        &self.inner.breaker
    }

    /// How long a claimed probe may run before another worker takes it over.
    pub fn probe_deadline(attempt_timeout: Duration) -> Duration {
        attempt_timeout * 2 + Duration::from_secs(1)
    }

    /// Drops every cached breaker word: the endpoints' revision moved (an endpoint enabled,
    /// edited or reset), so the next delivery to each endpoint reads its breaker in Redis.
    pub fn forget_breakers(&self) {
        self.inner.breakers().clear();
    }

    /// How many more deliveries to `endpoint` this process would admit now (at least 1): what a
    /// finishing delivery releases from the endpoint's lane.
    pub fn free_slots(&self, endpoint: &EndpointId) -> usize {
        let in_flight = self.inner.lock().get(endpoint).map_or(0, |c| c.in_flight);
        self.inner.cap.saturating_sub(in_flight).max(1)
    }

    /// Whether this process read `endpoint`'s breaker closed, with no failure counted, within
    /// the last probe interval (what lets its admission skip Redis).
    pub fn known_closed(&self, endpoint: &str) -> bool {
        let Ok(id) = endpoint.parse::<EndpointId>() else { return false };
        let now = Instant::now();
        matches!(self.inner.breakers().get(&id), Some(Known::Closed { until, .. }) if *until > now)
    }

    /// Learns what a report's answer says.
    pub fn learn(&self, endpoint: &EndpointId, answer: &Answer) {
        let now = Instant::now();
        let known = match answer.state {
            // Failures counted: every admission asks Redis until they are cleared.
            BreakerState::Closed if answer.failures > 0 => {
                self.inner.breakers().remove(endpoint);
                return;
            }
            BreakerState::Closed => {
                Known::Closed { until: now + self.inner.breaker.probe, generation: answer.generation }
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                Known::Open { until: now + answer.probe_in, read: now }
            }
            BreakerState::Disabled => Known::Open { until: now + self.inner.breaker.probe, read: now },
        };
        self.inner.breakers().insert(endpoint.clone(), known);
    }

    /// The breaker's word on one delivery: `Ok` to run it, `Err(wait)` to park it (`wait` is
    /// `None` for a park that a finishing delivery of this process releases).
    async fn breaker(
        &self,
        queue: &Queue,
        endpoint: &EndpointId,
        probe_deadline: Duration,
        in_flight: usize,
    ) -> Result<Result<Run, Option<Duration>>, QueueError> {
        if self.inner.breaker.is_off() {
            return Ok(Ok(Run::default()));
        }
        let now = Instant::now();
        match self.inner.breakers().get(endpoint).copied() {
            Some(Known::Closed { until, generation }) if until > now => {
                return Ok(Ok(Run { generation: Some(generation), ..Run::default() }));
            }
            // Not within the last OPEN_RECHECK before the probe time either: the delivery the
            // lane releases as the probe (at Redis's probe time, a little before this process's
            // `until`) must not be parked again at the back of the lane by a cached word.
            Some(Known::Open { until, read }) if until > now + OPEN_RECHECK && now < read + OPEN_RECHECK => {
                return Ok(Err(Some(until - now)));
            }
            _ => {}
        }
        let admit =
            queue.breaker_admit(endpoint, probe_deadline, self.inner.breaker.failures, in_flight).await?;
        let now = Instant::now();
        let (known, verdict) = match admit {
            Admit::Closed { generation } => (
                Some(Known::Closed { until: now + self.inner.breaker.probe, generation }),
                Ok(Run { generation: Some(generation), ..Run::default() }),
            ),
            // Failures counted: nothing cached, the next admission asks again.
            Admit::Trial { generation } => {
                (None, Ok(Run { generation: Some(generation), trial: true, probe: false }))
            }
            Admit::Wait => (None, Err(None)),
            // Until the probe reports, others park till its deadline.
            Admit::Probe { generation } => (
                Some(Known::Open { until: now + probe_deadline, read: now }),
                Ok(Run { generation: Some(generation), trial: false, probe: true }),
            ),
            Admit::Open(wait) => (
                Some(Known::Open { until: now + wait, read: now }),
                Err(Some(wait.max(Duration::from_millis(1)))),
            ),
            Admit::Disabled => (
                Some(Known::Open { until: now + self.inner.breaker.probe, read: now }),
                Err(Some(DISABLED_LOOK)),
            ),
        };
        match known {
            Some(known) => self.inner.breakers().insert(endpoint.clone(), known),
            None => self.inner.breakers().remove(endpoint),
        };
        Ok(verdict)
    }

    /// The spacing of `endpoint`'s sends across every worker (its rate limit, or a Slack
    /// webhook's pace), if it has one.
    pub fn send_interval(&self, endpoint: &Endpoint) -> Option<Duration> {
        endpoint.send_interval(self.inner.slack_pace)
    }

    /// Admits a delivery to `endpoint`, or says how long it parks. A rate-limited endpoint's send
    /// slot is taken in Redis (shared by every worker; `held`: the slot its lane's release gave
    /// the delivery); a Redis error is returned for the caller to retry, with nothing held.
    pub async fn admit(
        &self,
        queue: &Queue,
        endpoint: &Endpoint,
        probe_deadline: Duration,
        held: Option<u64>,
    ) -> Result<Admission, QueueError> {
        let others = {
            let mut lanes = self.inner.lock();
            let counts = lanes.entry(endpoint.id.clone()).or_default();
            if counts.in_flight >= self.inner.cap {
                counts.parked += 1;
                return Ok(Admission::Park(LANE_SAFETY_LOOK));
            }
            counts.in_flight += 1;
            counts.in_flight - 1 - counts.trials
        };
        let mut ticket = Ticket {
            gate: self.clone(),
            endpoint: endpoint.id.clone(),
            finished: false,
            run: Run::default(),
            send_after: Duration::ZERO,
        };
        // Dropping the ticket on a park frees the slot again.
        match self.breaker(queue, &endpoint.id, probe_deadline, others).await? {
            Ok(run) => {
                if run.trial {
                    let mut lanes = self.inner.lock();
                    lanes.entry(endpoint.id.clone()).or_default().trials += 1;
                }
                ticket.run = run;
            }
            Err(Some(wait)) => return Ok(Admission::Park(wait)),
            Err(None) => {
                // Released by the next delivery of ours to the endpoint that finishes.
                drop(ticket);
                self.inner.lock().entry(endpoint.id.clone()).or_default().parked += 1;
                return Ok(Admission::Park(LANE_SAFETY_LOOK));
            }
        }
        if let Some(interval) = self.send_interval(endpoint) {
            // Dropping the ticket on either early return frees the slot again.
            let wait = match queue.pace(&endpoint.id, interval, held).await? {
                Pace::Go(after) => {
                    ticket.send_after = after;
                    None
                }
                Pace::Wait(wait) => Some(wait),
            };
            if let Some(wait) = wait {
                if ticket.run.trial {
                    // The breaker's trial slot too (else it is forgotten at its deadline).
                    let _ = queue
                        .breaker_report_attempt(
                            &endpoint.id,
                            None,
                            entraguard_core::breaker::Report::Release,
                            &self.inner.breaker,
                            ticket.facts(false),
                        )
                        .await;
                }
                crate::metrics::waited_turn(endpoint.id.as_str());
                return Ok(Admission::Park(wait));
            }
        }
        Ok(Admission::Go(ticket))
    }

    /// Frees one slot; `true` when a delivery this process parked should be released.
    fn free(&self, endpoint: &EndpointId, trial: bool) -> bool {
        let mut lanes = self.inner.lock();
        let Some(counts) = lanes.get_mut(endpoint) else { return false };
        counts.in_flight = counts.in_flight.saturating_sub(1);
        if trial {
            counts.trials = counts.trials.saturating_sub(1);
        }
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

    fn breakers(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Known>> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the breaker let a delivery run.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// The breaker's generation it was admitted under (`None`: the breaker is off).
    generation: Option<u64>,
    /// Admitted as a trial (failures were counted).
    trial: bool,
    /// The breaker's probe.
    probe: bool,
}

/// One admitted delivery's slot. Freed when finished, or when dropped (a panic, a park after
/// all): never leaked.
#[derive(Debug)]
pub struct Ticket {
    gate: Gate,
    endpoint: EndpointId,
    finished: bool,
    run: Run,
    /// The send slot taken under the endpoint's rate limit opens this long after admission.
    send_after: Duration,
}

impl Ticket {
    /// How long to wait before sending: until the send slot taken for this delivery opens
    /// (zero without a rate limit; at most `PACE_AHEAD`).
    pub fn send_after(&self) -> Duration {
        self.send_after
    }

    /// Whether this delivery is the probe of an open breaker.
    pub fn is_probe(&self) -> bool {
        self.run.probe
    }

    /// What to tell the breaker with this attempt's report; `parks` when the delivery parks if
    /// the breaker is not closed after it.
    pub fn facts(&self, parks: bool) -> AttemptFacts {
        AttemptFacts { generation: self.run.generation, trial: self.run.trial, parks }
    }

    /// The delivery's outcome is recorded: frees the slot. `true` when one delivery parked in
    /// this endpoint's lane should now be released to the ready list.
    pub fn finish(mut self) -> bool {
        self.free_now()
    }

    /// Frees the slot now, before the outcome is fully recorded: a probe's success frees it
    /// before the closing releases the lane into it (else the released delivery could find the
    /// slot still taken and park again, behind the rest). Returns what [`Ticket::finish`]
    /// would; a later `finish` then frees nothing more and returns `false`.
    pub fn free_now(&mut self) -> bool {
        if self.finished {
            return false;
        }
        self.finished = true;
        self.gate.free(&self.endpoint, self.run.trial)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            // A parked delivery of ours waits for the lane's next look instead.
            let _ = self.gate.free(&self.endpoint, self.run.trial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_endpoint_parks_and_a_finish_releases_one() {
        let gate = Gate::new(2, Duration::ZERO, BreakerSettings::default());
        let ep = EndpointId::generate();
        let take = || {
            let mut lanes = gate.inner.lock();
            let c = lanes.entry(ep.clone()).or_default();
            if c.in_flight >= gate.inner.cap {
                c.parked += 1;
                None
            } else {
                c.in_flight += 1;
                Some(Ticket {
                    gate: gate.clone(),
                    endpoint: ep.clone(),
                    finished: false,
                    run: Run::default(),
                    send_after: Duration::ZERO,
                })
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
