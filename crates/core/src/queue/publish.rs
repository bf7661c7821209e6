//! Publishing: jobs onto the ready list, at most once per id within a dedupe window (`publish.lua`),
//! optionally confirmed by replicas (`WAIT`), and the record of a publish Redis refused for memory.

use std::time::Duration;

use super::{Queue, QueueError};

/// One event job to publish ([`Queue::publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishing {
    /// The event's id: the dedupe window's member.
    pub id: String,
    /// A critical or high finding, a failed scan: to the front of the ready list.
    pub urgent: bool,
    /// The event's tenant: its fair-share flow (layout version 2); `None` for a job that is not
    /// an event this release reads (moved as it is, to the ready list).
    pub tenant: Option<String>,
    /// The encoded job.
    pub job: String,
}

/// What a batch publish did, per event, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Enqueued now.
    Enqueued,
    /// The id was accepted within the dedupe window: acknowledged, no second job.
    Duplicate,
}

impl Queue {
    /// Pushes jobs onto the ready list as they are, in one round trip, with no dedupe (tests,
    /// benchmarks and tools; events are published with [`Queue::publish`]).
    pub async fn push(&self, jobs: &[String]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in jobs.chunks(1000) {
            pipe.rpush(self.keys.ready(), chunk).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Publishes `(event id, job)` pairs in one atomic step: either every job not already
    /// accepted within `window` is enqueued, or (Redis refused: full, unreachable) none is. An
    /// id accepted within the window is acknowledged as [`Published::Duplicate`] without a
    /// second job, so a caller may retry a publish whose answer it never got.
    /// Urgent jobs go to their tenant's urgent flow with urgent share on (layout version 3), else
    /// to the front of the ready list; with fair share on (layout version 2 or 3) the others go
    /// to their tenant's flow, else to the back of the ready list.
    pub async fn publish(&self, jobs: &[Publishing], window: Duration) -> Result<Vec<Published>, QueueError> {
        self.publish_replicated(jobs, window, None).await
    }

    /// [`Queue::publish`], then, with `Some((n, timeout))`, `WAIT n timeout`: answers only once
    /// `n` replicas hold the jobs, so a failover that promotes one of them cannot lose them;
    /// [`QueueError::NotReplicated`] when fewer confirm in time (the primary has them; publishing
    /// again is safe).
    pub async fn publish_replicated(
        &self,
        jobs: &[Publishing],
        window: Duration,
        replicated: Option<(u32, Duration)>,
    ) -> Result<Vec<Published>, QueueError> {
        self.publish_with(jobs, window, self.keys.published(), replicated).await
    }

    /// [`Queue::publish_replicated`] with the dedupe window kept in `dedupe` (the published set,
    /// or the forwarded set for events moved in from another shard's outbox).
    pub(crate) async fn publish_with(
        &self,
        jobs: &[Publishing],
        window: Duration,
        dedupe: String,
        replicated: Option<(u32, Duration)>,
    ) -> Result<Vec<Published>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.publish.key(self.keys.ready());
        inv.key(dedupe).key(self.keys.layout()).key(self.keys.flows());
        inv.arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        for p in jobs {
            // The tenant's flow for its kind of work: urgent (layout version 3) or not.
            let flow = p
                .tenant
                .as_deref()
                .map(|t| if p.urgent { self.keys.urgent_tenant_flow(t) } else { self.keys.tenant_flow(t) })
                .unwrap_or_default();
            inv.arg(&p.id).arg(if p.urgent { "1" } else { "0" }).arg(&p.job).arg(flow);
        }
        let flags: Vec<i64> = match inv.invoke_async(&mut conn).await {
            Ok(flags) => flags,
            Err(e) => {
                let e = QueueError::from(e);
                if e.is_out_of_memory() {
                    // Best effort: the refusal itself is the error to report.
                    let _ = self.record_publish_refused().await;
                }
                return Err(e);
            }
        };
        if let Some((replicas, timeout)) = replicated {
            // WAIT counts the replicas that have every write this connection sent so far, the
            // publish included (on a cluster, the queue's primary and its replicas).
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
            let got: u32 =
                conn.query_at(redis::cmd("WAIT").arg(replicas).arg(ms), &self.keys.ready()).await?;
            if got < replicas {
                return Err(QueueError::NotReplicated { wanted: replicas, got, timeout });
            }
        }
        Ok(flags
            .into_iter()
            .map(|f| if f == 1 { Published::Enqueued } else { Published::Duplicate })
            .collect())
    }

    /// Records that Redis refused a publish for memory, for [`Queue::publish_refused`]. A script
    /// with `allow-oom`, so the write goes through at `maxmemory`.
    pub async fn record_publish_refused(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(Self::PUBLISH_REFUSED_FOR.as_millis()).unwrap_or(60_000);
        let _: i64 = self
            .scripts
            .publish_refused
            .key(self.keys.publish_refused())
            .arg(ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether Redis refused a publish for memory within the last minute.
    pub async fn publish_refused(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let key = self.keys.publish_refused();
        Ok(conn.query_at::<bool>(redis::cmd("EXISTS").arg(&key), &key).await?)
    }

    /// Whether Redis is at its `maxmemory` (with `noeviction` it then refuses publishes).
    pub async fn memory_full(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let info: String = conn.query_at(redis::cmd("INFO").arg("memory"), &self.keys.ready()).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let max = field("maxmemory");
        Ok(max > 0 && field("used_memory") >= max)
    }
}
