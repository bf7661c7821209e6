//! Endpoint lanes: deliveries that wait for their endpoint (`park.lua`), released oldest first
//! (`release.lua`), and the send slots of an endpoint with a rate limit (`pace.lua`; a Slack
//! webhook's pace is one).
//!
//! A rate limit spaces an endpoint's sends evenly, one slot per interval, on Redis's clock and
//! across every worker (`{p}:pace:<endpoint>`: when the next free slot opens). A delivery takes a
//! slot at admission when one opens within [`PACE_AHEAD`] (it then waits that little in its
//! worker), else it parks in the endpoint's lane, whose next look in `{p}:lanes` is when the next
//! free slot comes within [`PACE_AHEAD`]: the promoter of any worker wakes then
//! (`promote.lua` names the lane), and the release gives each delivery it moves its own slot, so
//! a backlog leaves its lane oldest first at exactly the limit, with nothing polled meanwhile.

use std::time::Duration;

use super::{Claim, Fetched, MAX_JOB_BYTES, Queue, QueueError, history};
use crate::job::DeliveryJob;

/// How far ahead a send slot is taken: a delivery whose endpoint's next slot opens within this
/// waits for it in its worker (holding its concurrency permit that long at most); a later one
/// waits in the lane. It is also the time a released delivery has to reach a worker before its
/// slot opens, so a backlog keeps the full rate through a busy moment. The same in every
/// process: `pace.lua` and `release.lua` both read it.
pub const PACE_AHEAD: Duration = Duration::from_millis(100);

/// A rate-limited endpoint's answer to a delivery ([`Queue::pace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A slot is the delivery's: send after this (at most [`PACE_AHEAD`]).
    Go(Duration),
    /// No slot within [`PACE_AHEAD`]: park in the lane, looked at again after this.
    Wait(Duration),
}

/// How a delivery parks in its endpoint's lane ([`Queue::park_job`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Park<'a> {
    /// The lane is looked at again after this at the latest.
    pub wake_in: Duration,
    /// At the front (a failed probe stays the oldest), else at the back.
    pub front: bool,
    /// The failed attempt's Recent Deliveries entry, written in the same step.
    pub history: Option<&'a str>,
    /// Most deliveries the lane may hold (`NOTIFY_LANE_MAX`); 0: no limit.
    pub lane_max: u64,
}

/// What parking a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    Parked,
    /// The lane already holds its most: nothing changed (the delivery is still the worker's, to
    /// dead-letter as "endpoint lane full").
    LaneFull,
    /// The job was no longer on the worker's list (its lease ran out).
    LeaseLost,
}

impl Queue {
    /// [`Queue::park_job`] at the back of the lane, with no history entry and no cap: `true`
    /// when parked, `false` if the lease was lost.
    pub async fn park(
        &self,
        job: &Claim,
        waiting: &DeliveryJob,
        wake_in: Duration,
    ) -> Result<bool, QueueError> {
        let park = Park { wake_in, ..Park::default() };
        Ok(self.park_job(job, waiting, park, 0).await?.0 == Parked::Parked)
    }

    /// Parks a delivery in its endpoint's lane until the endpoint can take it (see [`Park`]):
    /// `waiting` (the delivery, with the failed attempt that parked it recorded if one did)
    /// takes the place of `job` on the worker's list, kept as a [`StoredDelivery`] (its event
    /// once in `{p}:bodies`). A lane that holds `park.lane_max` already takes nothing
    /// ([`Parked::LaneFull`], counted in [`KeySpace::lane_full`]: the caller dead-letters the
    /// delivery), except at its front. Once parked, up to `take` next jobs are taken onto the
    /// processing list in the same step for the slot the delivery frees, as
    /// [`Queue::ack_delivered_many`] takes them.
    ///
    /// [`StoredDelivery`]: crate::job::StoredDelivery
    /// [`KeySpace::lane_full`]: crate::keys::KeySpace::lane_full
    pub async fn park_job(
        &self,
        job: &Claim,
        waiting: &DeliveryJob,
        park: Park<'_>,
        take: usize,
    ) -> Result<(Parked, Fetched), QueueError> {
        let endpoint = waiting.endpoint_id.as_str();
        let stored = waiting.stored();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.park.key(job.list());
        inv.key(self.keys.lane(endpoint))
            .key(self.keys.lanes())
            .arg(job.bytes())
            .arg(endpoint)
            .arg(u64::try_from(park.wake_in.as_millis()).unwrap_or(u64::MAX))
            .arg(if park.front { "1" } else { "0" });
        history::history_args(&mut inv, self.keys.history(endpoint), park.history.unwrap_or(""));
        inv.arg(&stored.job)
            .arg(park.lane_max)
            .key(self.keys.lane_full())
            .key(self.keys.bodies())
            .key(self.keys.body_refs())
            .arg(&stored.body_id)
            .arg(&stored.body)
            .arg(take)
            .arg(MAX_JOB_BYTES);
        if take > 0 {
            inv.key(self.keys.ready()).key(self.keys.retry()).key(self.keys.flows());
            if self.home {
                inv.key(self.keys.endpoints_rev());
            }
        }
        let (done, taken): (i64, Vec<redis::Value>) = inv.invoke_async(&mut conn).await?;
        let parked = match done {
            1 => Parked::Parked,
            2 => Parked::LaneFull,
            _ => Parked::LeaseLost,
        };
        Ok((parked, Fetched::from_take(taken, job.shared_list())))
    }

    /// Releases up to `n` deliveries from an endpoint's lane to the front of the ready list; a
    /// lane with work left is looked at again after `next_look` at the latest. A rate-limited
    /// endpoint's lane releases its turns instead: as many as have a free send slot within
    /// [`PACE_AHEAD`] (at most `paced_most`), each with its slot, and is looked at again when
    /// the next one comes within it. Returns how many moved.
    pub async fn release_lane(
        &self,
        endpoint: &str,
        n: usize,
        next_look: Duration,
        paced_most: usize,
    ) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let moved: i64 = self
            .scripts
            .release
            .key(self.keys.lane(endpoint))
            .key(self.keys.ready())
            .key(self.keys.lanes())
            .key(self.keys.pace(endpoint))
            .key(self.keys.breaker(endpoint))
            .key(self.keys.bodies())
            .key(self.keys.body_refs())
            .arg(endpoint)
            .arg(n)
            .arg(u64::try_from(next_look.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(micros(PACE_AHEAD))
            .arg(paced_most.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Takes a send slot of `endpoint`, spaced `interval` from the others, across every worker
    /// (see the module's docs): [`Pace::Go`] with how long to wait for it, or [`Pace::Wait`]
    /// when none opens within [`PACE_AHEAD`]. `held` is the slot its lane's release gave the
    /// delivery (`DeliveryJob::slot`), used unless it passed more than [`PACE_AHEAD`] ago.
    pub async fn pace(
        &self,
        endpoint: &crate::ids::EndpointId,
        interval: Duration,
        held: Option<u64>,
    ) -> Result<Pace, QueueError> {
        let mut conn = self.conn.clone();
        let (go, us): (i64, i64) = self
            .scripts
            .pace
            .key(self.keys.pace(endpoint.as_str()))
            .arg(micros(interval).max(1))
            .arg(micros(PACE_AHEAD))
            .arg(held.map(|h| h.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        let wait = Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(if go == 1 { Pace::Go(wait) } else { Pace::Wait(wait.max(Duration::from_millis(1))) })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
