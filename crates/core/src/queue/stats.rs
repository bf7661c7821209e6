//! Queue depths, for `stats`, the admin API and `/metrics`.

use super::{Queue, QueueError};

/// Queue depths, for `stats` and metrics.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// First attempts waiting: the ready list and, with fair share on (queue layout version 2
    /// or 3), every tenant's and endpoint's flow, urgent ones (version 3) included.
    pub ready: u64,
    /// Fair-share flows holding first attempts (`{p}:flows`, and `{p}:uflows` for urgent ones):
    /// tenants with events and endpoints with deliveries waiting their turn (0 on layout
    /// version 1).
    #[serde(default)]
    pub flows: u64,
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
    /// Event bodies kept once for the deliveries that wait in lanes or lie in the dead-letter
    /// queue (`{p}:bodies`): each goes with the last delivery that refers to it.
    #[serde(default)]
    pub event_bodies: u64,
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
    /// Queue depths, read in one step (`stats.lua`): a consistent snapshot, so work moving
    /// between lists while it is read is counted once, never missed.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn.clone();
        let lane_prefix = self.keys.lane("");
        let processing_prefix = self.keys.processing("");
        let d: Vec<u64> = self
            .scripts
            .stats
            .key(self.keys.ready())
            .key(self.keys.retry())
            .key(self.keys.lanes())
            .key(self.keys.delayed())
            .key(self.keys.dlq())
            .key(self.keys.endpoints())
            .key(self.keys.leases())
            .key(self.keys.lane_full())
            .key(self.keys.digests())
            .key(self.keys.bodies())
            .key(self.keys.flows())
            .arg(lane_prefix)
            .arg(processing_prefix)
            .invoke_async(&mut conn)
            .await?;
        let at = |i: usize| d.get(i).copied().unwrap_or(0);
        Ok(QueueStats {
            ready: at(0),
            retrying: at(1),
            parked: at(2),
            processing: at(3),
            scheduled: at(4),
            dead: at(5),
            endpoints: at(6),
            workers: at(7),
            lane_full: at(8),
            digests: at(9),
            event_bodies: at(10),
            flows: at(11),
            forwarding: 0,
        })
    }
}
