//! Endpoint lanes: deliveries that wait for their endpoint (`park.lua`), released oldest first
//! (`release.lua`), and a Slack webhook's send slot (`pace.lua`).

use std::time::Duration;

use super::{Claim, Queue, QueueError, history};
use crate::job::DeliveryJob;

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
        Ok(self.park_job(job, waiting, park).await? == Parked::Parked)
    }

    /// Parks a delivery in its endpoint's lane until the endpoint can take it (see [`Park`]):
    /// `waiting` (the delivery, with the failed attempt that parked it recorded if one did)
    /// takes the place of `job` on the worker's list, kept as a [`StoredDelivery`] (its event
    /// once in `{p}:bodies`). A lane that holds `park.lane_max` already takes nothing
    /// ([`Parked::LaneFull`], counted in [`KeySpace::lane_full`]: the caller dead-letters the
    /// delivery), except at its front.
    ///
    /// [`StoredDelivery`]: crate::job::StoredDelivery
    /// [`KeySpace::lane_full`]: crate::keys::KeySpace::lane_full
    pub async fn park_job(
        &self,
        job: &Claim,
        waiting: &DeliveryJob,
        park: Park<'_>,
    ) -> Result<Parked, QueueError> {
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
            .arg(&stored.body);
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(match done {
            1 => Parked::Parked,
            2 => Parked::LaneFull,
            _ => Parked::LeaseLost,
        })
    }

    /// Releases up to `n` deliveries from an endpoint's lane to the front of the ready list
    /// (none while its send slot is taken); a lane with work left is looked at again after
    /// `next_look` at the latest. Returns how many moved.
    pub async fn release_lane(
        &self,
        endpoint: &str,
        n: usize,
        next_look: Duration,
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
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Claims `endpoint`'s send slot for `interval`, across every worker: `None` means send
    /// now, `Some(wait)` means another send holds the slot for that long.
    pub async fn pace(
        &self,
        endpoint: &crate::ids::EndpointId,
        interval: Duration,
    ) -> Result<Option<Duration>, QueueError> {
        let mut conn = self.conn.clone();
        let wait: i64 = self
            .scripts
            .pace
            .key(self.keys.pace(endpoint.as_str()))
            .arg(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(u64::try_from(wait).ok().filter(|w| *w > 0).map(Duration::from_millis))
    }
}
