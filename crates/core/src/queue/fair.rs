//! Fair share (queue layout versions 2 and 3, [`crate::layout_version`]): what each shard
//! records, and the switch between version 1 (fresh work in the ready list, urgent work at its
//! front) and 3 (both in per-tenant and per-endpoint flows, taken in round robin, urgent flows
//! first: `flow_take` and `take` in prelude.lua).

use super::{Queue, QueueError, Shards};
use crate::layout_version::{FAIR_SHARE_VERSION, VERSION_FIELD};

/// Which layout version to set every shard to ([`Shards::relayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FairShare {
    /// Version 3: fresh work goes to flows, urgent work to urgent flows (`entraguard-notify
    /// layout raise`).
    On,
    /// Version 1: the urgent flows' jobs go to the front of the ready list, the other flows' to
    /// its back, and fresh work after them (`layout lower`, before a rollback to a release
    /// without fair share).
    Off,
}

/// One shard's layout version and flows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardFairShare {
    /// The shard's hash tag.
    pub shard: String,
    /// The version its layout hash records (`None`: none yet).
    pub version: Option<String>,
    /// Whether its fresh work goes to flows (version 2 or later recorded).
    pub fair_share: bool,
    /// Flows holding work (urgent ones included), and the jobs in them.
    pub flows: u64,
    pub waiting_in_flows: u64,
}

/// What [`Shards::relayout`] did to one shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Relayout {
    pub shard: String,
    /// The version recorded before (`None`: none).
    pub was: Option<String>,
    /// Whether it was set (a version newer than 3, a later release's, is left alone).
    pub set: bool,
    /// Jobs moved from flows to the ready list (going to version 1).
    pub moved: u64,
}

impl Queue {
    /// This shard's recorded layout version and what its flows hold.
    pub async fn fair_share(&self) -> Result<ShardFairShare, QueueError> {
        let mut conn = self.conn.clone();
        let version: Option<String> =
            redis::cmd("HGET").arg(self.keys.layout()).arg(VERSION_FIELD).query_async(&mut conn).await?;
        let mut flows: Vec<String> =
            redis::cmd("LRANGE").arg(self.keys.flows()).arg(0).arg(-1).query_async(&mut conn).await?;
        let urgent: Vec<String> =
            redis::cmd("LRANGE").arg(self.keys.urgent_flows()).arg(0).arg(-1).query_async(&mut conn).await?;
        flows.extend(urgent);
        let mut waiting = 0;
        for flow in &flows {
            waiting += redis::cmd("LLEN").arg(flow).query_async::<u64>(&mut conn).await.unwrap_or(0);
        }
        let fair_share = version
            .as_deref()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|v| v >= FAIR_SHARE_VERSION);
        Ok(ShardFairShare {
            shard: self.keys.tag().to_owned(),
            version,
            fair_share,
            flows: flows.len() as u64,
            waiting_in_flows: waiting,
        })
    }

    /// How many workers hold a live lease on this shard.
    pub(crate) async fn live_workers(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        Ok(self.scripts.live_workers.key(self.keys.leases()).invoke_async(&mut conn).await?)
    }

    async fn relayout(&self, to: FairShare) -> Result<Relayout, QueueError> {
        let mut conn = self.conn.clone();
        let (was, set, moved): (String, i64, u64) = self
            .scripts
            .relayout
            .key(self.keys.layout())
            .key(self.keys.ready())
            .key(self.keys.flows())
            .arg(match to {
                FairShare::On => "3",
                FairShare::Off => "1",
            })
            .invoke_async(&mut conn)
            .await?;
        Ok(Relayout {
            shard: self.keys.tag().to_owned(),
            was: (!was.is_empty()).then_some(was),
            set: set == 1,
            moved,
        })
    }
}

impl Shards {
    /// Every counted shard's layout version and flows.
    pub async fn fair_shares(&self) -> Result<Vec<ShardFairShare>, QueueError> {
        let mut out = Vec::new();
        for q in self.counted() {
            out.push(q.fair_share().await?);
        }
        Ok(out)
    }

    /// Sets every counted shard's layout version: [`FairShare::On`] records 2 (shard 0 first:
    /// what a worker of a release without fair share checks at its start, so none starts
    /// once any shard writes flows); [`FairShare::Off`] records 1 and moves each shard's flows
    /// to its ready list in one step (shard 0 last, so a release without fair share starts only
    /// once no shard writes flows). Either is safe to repeat.
    pub async fn relayout(&self, to: FairShare) -> Result<Vec<Relayout>, QueueError> {
        let mut order: Vec<&Queue> = self.counted().iter().collect();
        if to == FairShare::Off {
            order.reverse();
        }
        let mut out = Vec::new();
        for q in order {
            out.push(q.relayout(to).await?);
        }
        Ok(out)
    }
}
