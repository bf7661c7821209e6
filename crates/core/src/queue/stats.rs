//! Queue depths, for `stats`, the admin API and `/metrics`.

use super::{Queue, QueueError};

/// Queue depths, for `stats` and metrics.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub ready: u64,
    /// Due retries and replays, waiting behind first attempts.
    pub retrying: u64,
    /// Deliveries waiting in endpoint lanes (their endpoint at its cap or paced).
    pub parked: u64,
    pub processing: u64,
    /// Jobs waiting for their time in the `delayed` set: retries, deliveries held until their
    /// endpoint's quiet hours end, and digest timers (one per open digest, `digests`), not
    /// retries alone. One name, `scheduled`, in the CLI table, its JSON, the API and the metric
    /// (`entraguard_queue_scheduled_retries`, named before holds and timers shared the set).
    pub scheduled: u64,
    pub dead: u64,
    pub workers: u64,
    pub endpoints: u64,
    /// Scan digests collecting findings (their findings wait in Redis until the scan ends).
    #[serde(default)]
    pub digests: u64,
    /// Queue shards: events routed to another shard's endpoints, waiting in an outbox to be
    /// moved there (0 with one shard).
    #[serde(default)]
    pub forwarding: u64,
    /// Deliveries dead-lettered as "endpoint lane full" (their endpoint's lane held
    /// `NOTIFY_LANE_MAX`), ever; they are among `dead` until replayed or deleted.
    #[serde(default)]
    pub lane_full: u64,
}

impl QueueStats {
    /// Nothing ready, retrying, parked, in flight, scheduled or waiting to move between shards
    /// (dead letters, workers, endpoints and open digests aside).
    pub fn is_drained(&self) -> bool {
        self.ready == 0
            && self.retrying == 0
            && self.parked == 0
            && self.processing == 0
            && self.scheduled == 0
            && self.forwarding == 0
    }
}

impl Queue {
    /// Queue depths.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn.clone();
        let t: (i64, i64) = conn.query_at(&redis::cmd("TIME"), &self.keys.leases()).await?;
        let now = t.0 * 1000 + t.1 / 1000;
        type Depths = (u64, u64, Vec<String>, u64, u64, u64, Vec<String>, u64, Vec<u64>);
        let (ready, retrying, lanes, scheduled, dead, endpoints, listed, live, full): Depths = redis::pipe()
            .llen(self.keys.ready())
            .llen(self.keys.retry())
            .zrange(self.keys.lanes(), 0, -1)
            .zcard(self.keys.delayed())
            .llen(self.keys.dlq())
            .hlen(self.keys.endpoints())
            .zrange(self.keys.leases(), 0, -1)
            .zcount(self.keys.leases(), format!("({now}"), "+inf")
            .hvals(self.keys.lane_full())
            .query_async(&mut conn)
            .await?;
        let sum_of = |keys: Vec<String>| async move {
            if keys.is_empty() {
                return Ok::<u64, QueueError>(0);
            }
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.llen(k);
            }
            let mut conn = self.conn.clone();
            let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
            Ok(lens.iter().sum())
        };
        let processing = sum_of(listed.iter().map(|w| self.keys.processing(w)).collect()).await?;
        let parked = sum_of(lanes.iter().map(|e| self.keys.lane(e)).collect()).await?;
        let digests = self.open_digests().await?;
        Ok(QueueStats {
            ready,
            retrying,
            parked,
            processing,
            scheduled,
            dead,
            workers: live,
            endpoints,
            digests,
            forwarding: 0,
            lane_full: full.iter().sum(),
        })
    }
}
