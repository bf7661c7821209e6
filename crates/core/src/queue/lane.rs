//! Endpoint lanes: deliveries that wait for their endpoint (`park.lua`), released oldest first
//! (`release.lua`), and a Slack webhook's send slot (`pace.lua`).

use std::time::Duration;

use super::{Queue, QueueError, WorkerId, history};

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
    /// Parks a delivery in its endpoint's lane until the endpoint can take it; the lane is
    /// looked at again after `wake_in` at the latest. `false` if the lease was lost.
    pub async fn park(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        endpoint: &crate::ids::EndpointId,
        wake_in: Duration,
    ) -> Result<bool, QueueError> {
        self.park_at(worker, raw, endpoint, wake_in, false).await
    }

    /// [`Queue::park`], at the front of the lane when `front` (a failed probe stays the oldest).
    pub async fn park_at(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        endpoint: &crate::ids::EndpointId,
        wake_in: Duration,
        front: bool,
    ) -> Result<bool, QueueError> {
        self.park_at_recorded(worker, raw, endpoint, wake_in, front, None).await
    }

    /// [`Queue::park_at`], and the failed attempt that parked it (its history entry, see
    /// [`crate::history::encode_attempt`]) joins the endpoint's Recent Deliveries in the same
    /// step.
    pub async fn park_at_recorded(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        endpoint: &crate::ids::EndpointId,
        wake_in: Duration,
        front: bool,
        history: Option<&str>,
    ) -> Result<bool, QueueError> {
        self.park_spent(worker, raw, None, endpoint, wake_in, front, history).await
    }

    /// [`Queue::park_at_recorded`] of a delivery whose attempt failed: `next` (the same delivery
    /// with that attempt recorded) waits in the lane in place of `raw`.
    #[allow(clippy::too_many_arguments)]
    pub async fn park_spent(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        next: Option<&[u8]>,
        endpoint: &crate::ids::EndpointId,
        wake_in: Duration,
        front: bool,
        history: Option<&str>,
    ) -> Result<bool, QueueError> {
        let park = Park { wake_in, front, history, lane_max: 0 };
        Ok(self.park_job(worker, raw, next, endpoint, park).await? == Parked::Parked)
    }

    /// Parks a delivery in its endpoint's lane (see [`Park`]); with `next`, that job (the same
    /// delivery with a failed attempt recorded) waits in place of `raw`. A lane that holds
    /// `park.lane_max` already takes nothing ([`Parked::LaneFull`], counted in
    /// [`KeySpace::lane_full`]: the caller dead-letters the delivery), except at its front.
    pub async fn park_job(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        next: Option<&[u8]>,
        endpoint: &crate::ids::EndpointId,
        park: Park<'_>,
    ) -> Result<Parked, QueueError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.park.key(self.keys.processing(worker.as_str()));
        inv.key(self.keys.lane(endpoint.as_str()))
            .key(self.keys.lanes())
            .arg(raw)
            .arg(endpoint.as_str())
            .arg(u64::try_from(park.wake_in.as_millis()).unwrap_or(u64::MAX))
            .arg(if park.front { "1" } else { "0" });
        history::history_args(&mut inv, self.keys.history(endpoint.as_str()), park.history.unwrap_or(""));
        inv.arg(next.unwrap_or_default()).arg(park.lane_max).key(self.keys.lane_full());
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
