//! The queue over every shard a process serves ([`crate::shards`]): where an event or an
//! endpoint's work goes, the outbox mover, and the reads that span shards (stats, dead
//! letters). With one shard every call is the one-server call, with nothing added.

#[cfg(feature = "consume")]
use super::{DeadLetter, DeadLetterSummary, ReplayFilter, ReplayOutcome, ReplaySummary};
use super::{Queue, QueueError, QueueStats};
use crate::ids::EndpointId;
use crate::job::Job;
use crate::layout_version::{
    LAYOUT_VERSION, LayoutVersionError, VERSION_FIELD, VersionDecision, decide as decide_version,
};
use crate::redis_conn::{RedisConfig, RedisConn};
#[cfg(feature = "consume")]
use crate::shards::OUTBOX_SWEEP_AGE;
use crate::shards::{FORWARD_DEDUPE_WINDOW, LayoutDecision, LayoutRole, RecordedLayout, ShardLayout, decide};
use std::sync::Arc;
use std::time::Duration;

/// Most outbox entries one sweep moves per target shard.
#[cfg(feature = "consume")]
const SWEEP_CHUNK: usize = 200;

/// One queue shard's depths, named as in the totals ([`QueueStats`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    /// The shard's hash tag, e.g. `{entraguard:2}`.
    pub shard: String,
    /// An earlier count's shard (`NOTIFY_DRAIN_SHARDS`): served until empty, nothing new placed
    /// in it.
    pub draining: bool,
    pub ready: u64,
    pub retrying: u64,
    pub parked: u64,
    pub processing: u64,
    pub scheduled: u64,
    pub dead: u64,
    /// Events routed to other shards' endpoints, waiting in this shard's outbox.
    pub forwarding: u64,
}

/// The deployment's queue depths (every served shard summed) and, with more than one shard
/// served, each shard's: what `entraguard-notify stats --json` prints and `GET /api/stats`
/// answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatsReport {
    #[serde(flatten)]
    pub total: QueueStats,
    /// Only with more than one queue shard served (`NOTIFY_QUEUE_SHARDS`, `NOTIFY_DRAIN_SHARDS`):
    /// each shard's depths, shard 0 first, then the placed ones, then the draining ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStats>,
}

/// The queue shards of one deployment. Cheap to clone; every shard shares one connection.
#[derive(Clone)]
pub struct Shards {
    layout: Arc<ShardLayout>,
    /// In [`ShardLayout::counted`] order: the placed shards (shard 0 first), then draining ones,
    /// then those only counted (earlier recorded counts' shards this process does not serve).
    queues: Arc<[Queue]>,
    /// With `Some((n, timeout))`, an outbox entry leaves its outbox only once `n` replicas of
    /// the target shard hold the moved copy (`WAIT`, as `NOTIFY_PUBLISH_REPLICAS` asks of a
    /// publish): otherwise a failover of the target's primary right after a move would lose an
    /// event whose publish a replica had confirmed.
    forward_replicas: Option<(u32, Duration)>,
}

/// What one outbox move did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Entries enqueued in their target shard now.
    pub moved: usize,
    /// Entries the target shard had taken already (a move repeated after a crash or by two
    /// sweepers): removed from the outbox, not enqueued twice.
    pub duplicates: usize,
}

impl Shards {
    /// Connects to Redis (one connection for every shard).
    pub async fn connect(config: &RedisConfig, layout: ShardLayout) -> Result<Self, QueueError> {
        let queue = Queue::connect(config, layout.home().clone()).await?;
        Ok(Self::on(&queue, layout))
    }

    /// The shards of `layout` on `queue`'s connection.
    pub fn on(queue: &Queue, layout: ShardLayout) -> Self {
        let queues = layout.counted().enumerate().map(|(i, k)| queue.for_shard(k.clone(), i == 0)).collect();
        Self { layout: Arc::new(layout), queues, forward_replicas: None }
    }

    /// These shards, moving outbox entries only once `replicas` replicas of the target shard
    /// hold them (waiting up to `timeout` for them; 0 replicas: no wait). A move they do not
    /// confirm in time fails with [`QueueError::NotReplicated`] and leaves the entries in the
    /// outbox for the sweep (moving again enqueues nothing twice).
    pub fn with_forward_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.forward_replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// The shard layout the deployment records in Redis ([`crate::keys::KeySpace::layout`]).
    pub async fn recorded_layout(&self) -> Result<RecordedLayout, QueueError> {
        let mut conn = self.connection();
        let (count, earlier): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.home().keys().layout())
            .arg("count")
            .arg("earlier")
            .query_async(&mut conn)
            .await?;
        Ok(RecordedLayout::parse(count.as_deref(), earlier.as_deref()))
    }

    /// Checks this process's shard count against the one the deployment records, records it on
    /// a first start (producers and workers) or on a deliberate change (a worker whose
    /// `NOTIFY_DRAIN_SHARDS` is the recorded count), and returns these shards also counting the
    /// shards of the earlier recorded counts (for `stats` and `/metrics`).
    /// [`QueueError::Layout`] when the counts disagree: the process must not run.
    pub async fn checked(&self, role: LayoutRole) -> Result<(Self, LayoutDecision), QueueError> {
        let key = self.home().keys().layout();
        let configured = u16::try_from(self.count()).unwrap_or(u16::MAX);
        // A compare-and-set: two processes starting at once with different counts record one,
        // and the other then reads it and refuses.
        for _ in 0..5 {
            let recorded = self.recorded_layout().await?;
            let decision = decide(&recorded, configured, role, &key)?;
            let mut conn = self.connection();
            let written = match &decision {
                LayoutDecision::Agree | LayoutDecision::Unrecorded => true,
                LayoutDecision::Record => {
                    redis::cmd("HSETNX").arg(&key).arg("count").arg(configured).query_async(&mut conn).await?
                }
                LayoutDecision::Change { from, earlier } => {
                    let field = RecordedLayout { count: None, earlier: earlier.clone() }.earlier_field();
                    let done: i64 = self
                        .home()
                        .scripts
                        .change_layout
                        .key(&key)
                        .arg(from)
                        .arg(configured)
                        .arg(field)
                        .invoke_async(&mut conn)
                        .await?;
                    done == 1
                }
            };
            if !written {
                continue;
            }
            let earlier = match &decision {
                LayoutDecision::Change { earlier, .. } => earlier.clone(),
                _ => recorded.earlier,
            };
            let layout = (*self.layout).clone().observing(&earlier);
            let mut checked = Self::on(self.home(), layout);
            checked.forward_replicas = self.forward_replicas;
            return Ok((checked, decision));
        }
        Err(QueueError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the recorded shard layout kept changing while it was read",
        ))))
    }

    /// Checks the queue layout version the deployment records ([`crate::layout_version`])
    /// against what this release reads, and records this release's on a first start (or on the
    /// first start after releases that did not record it). The outer error is Redis's (retry
    /// it); the inner one means this worker must not run.
    pub async fn checked_version(&self) -> Result<Result<VersionDecision, LayoutVersionError>, QueueError> {
        let key = self.home().keys().layout();
        let mut conn = self.connection();
        for _ in 0..5 {
            let recorded: Option<String> =
                redis::cmd("HGET").arg(&key).arg(VERSION_FIELD).query_async(&mut conn).await?;
            let decision = match decide_version(recorded.as_deref(), &key) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            if decision == VersionDecision::Agree {
                self.record_version_on_shards(recorded.as_deref().unwrap_or_default().trim()).await?;
                return Ok(Ok(decision));
            }
            // Nothing recorded: a new deployment, or one that releases before the field ran. While
            // a worker holds a live lease (one of such a release, running on), what they read is
            // version 1; with none, nothing running is left behind by version 2.
            let version = if self.home().live_workers().await? > 0 { 1 } else { LAYOUT_VERSION };
            // Two workers starting at once: one records, the other reads what it recorded.
            let written: Result<bool, redis::RedisError> =
                redis::cmd("HSETNX").arg(&key).arg(VERSION_FIELD).arg(version).query_async(&mut conn).await;
            match written.map_err(QueueError::from) {
                Ok(true) => {
                    self.record_version_on_shards(&version.to_string()).await?;
                    return Ok(Ok(decision));
                }
                Ok(false) => {}
                // A full Redis refuses the write; a worker must still start and drain it.
                Err(e) if e.is_out_of_memory() => return Ok(Ok(VersionDecision::Unrecorded)),
                Err(e) => return Err(e),
            }
        }
        Err(QueueError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the recorded layout version kept changing while it was read",
        ))))
    }

    /// Records `version` (what shard 0 records) in each other shard's own layout hash where it
    /// records none: the scripts of a shard read its own (they cannot reach shard 0's on a
    /// Redis Cluster), so a shard added later follows the deployment's version. Refused for
    /// memory: left for a later start.
    async fn record_version_on_shards(&self, version: &str) -> Result<(), QueueError> {
        for q in self.counted().iter().skip(1) {
            let mut conn = q.connection();
            let key = q.keys().layout();
            let written: Result<bool, redis::RedisError> =
                redis::cmd("HSETNX").arg(&key).arg(VERSION_FIELD).arg(version).query_async(&mut conn).await;
            match written.map_err(QueueError::from) {
                Ok(_) => {}
                Err(e) if e.is_out_of_memory() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One shard: `queue` itself.
    pub fn single(queue: Queue) -> Self {
        let layout = ShardLayout::single(queue.keys().clone());
        Self { layout: Arc::new(layout), queues: Arc::from([queue]), forward_replicas: None }
    }

    pub fn layout(&self) -> &ShardLayout {
        &self.layout
    }

    /// Shard 0: the endpoint store's shard.
    pub fn home(&self) -> &Queue {
        &self.queues[0]
    }

    /// Every served shard: the placed ones by index, then the draining ones.
    pub fn served(&self) -> &[Queue] {
        &self.queues[..self.layout.served_count().min(self.queues.len())]
    }

    /// Every counted shard: the served ones, then those of earlier recorded counts this process
    /// does not serve ([`Shards::checked`]); `stats` and `/metrics` read them all.
    pub fn counted(&self) -> &[Queue] {
        &self.queues
    }

    /// How many shards new work is placed in.
    pub fn count(&self) -> usize {
        self.layout.count()
    }

    /// The shard an endpoint's deliveries, breaker, lane, history and dedupe windows live in.
    pub fn for_endpoint(&self, endpoint: &EndpointId) -> &Queue {
        &self.queues[self.layout.of_endpoint(endpoint.as_str())]
    }

    /// The index of `endpoint`'s shard.
    pub fn index_of_endpoint(&self, endpoint: &EndpointId) -> usize {
        self.layout.of_endpoint(endpoint.as_str())
    }

    /// How many outbox indexes a shard may hold entries for: the placed count, or more while
    /// shards of a larger earlier count drain (as many as served shards, at least).
    fn outbox_targets(&self) -> usize {
        if self.layout.count() == 1 && self.queues.len() == 1 {
            1
        } else {
            // Counted shards of an earlier, larger count may hold outboxes up to its count.
            self.queues.len().max(self.layout.count())
        }
    }

    /// The shared connection.
    pub fn connection(&self) -> RedisConn {
        self.home().connection()
    }

    /// Moves outbox entries of served shard `from` (`jobs`, as `route.lua` added them) into
    /// placed shard `target`'s ready list, deduplicated there by event id, then removes them from
    /// the outbox. Repeating a move (a worker killed between the two steps, two sweepers) enqueues
    /// nothing twice.
    pub async fn forward(
        &self,
        from: usize,
        target: usize,
        jobs: &[String],
    ) -> Result<Forwarded, QueueError> {
        if jobs.is_empty() {
            return Ok(Forwarded::default());
        }
        let source = &self.queues[from];
        let dest = &self.queues[target.min(self.layout.count() - 1)];
        let entries: Vec<super::Publishing> = jobs
            .iter()
            .map(|raw| match Job::decode(raw.as_bytes()) {
                Ok(Job::Event(e)) => super::Publishing {
                    id: e.event.id.to_string(),
                    urgent: e.event.is_urgent(),
                    tenant: Some(e.event.tenant_id.clone()),
                    job: raw.clone(),
                },
                // Not ours to read: moved as it is, named by itself (the target's fan-out
                // dead-letters it with the reason).
                _ => super::Publishing { id: raw.clone(), urgent: false, tenant: None, job: raw.clone() },
            })
            .collect();
        // With forward replicas, the WAIT runs whether the copies were new or moved before (a
        // repeated move): the outbox entry goes only once a replica holds the copy.
        let flags = dest
            .publish_with(&entries, FORWARD_DEDUPE_WINDOW, dest.keys().forwarded(), self.forward_replicas)
            .await?;
        let moved = flags.iter().filter(|f| matches!(f, super::Published::Enqueued)).count();
        let mut conn = source.connection();
        let _: i64 =
            redis::cmd("ZREM").arg(source.keys().outbox(target)).arg(jobs).query_async(&mut conn).await?;
        Ok(Forwarded { moved, duplicates: jobs.len() - moved })
    }

    #[cfg(feature = "consume")]
    /// Moves the entries of served shard `from`'s outboxes that were added more than
    /// [`OUTBOX_SWEEP_AGE`] ago: those whose worker died (or lost Redis) before moving them.
    pub async fn sweep_outbox(&self, from: usize) -> Result<Forwarded, QueueError> {
        let mut total = Forwarded::default();
        if self.served().len() == 1 {
            return Ok(total);
        }
        let source = &self.queues[from];
        let now = source.redis_time_ms().await?;
        let before = now - i64::try_from(OUTBOX_SWEEP_AGE.as_millis()).unwrap_or(0);
        // Outboxes are named by the target's index in the layout that wrote them; after a change
        // of count a draining shard's may name indexes past the new count: look at those too.
        for target in 0..self.outbox_targets() {
            let mut conn = source.connection();
            let jobs: Vec<String> = redis::cmd("ZRANGE")
                .arg(source.keys().outbox(target))
                .arg("-inf")
                .arg(before)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_CHUNK)
                .query_async(&mut conn)
                .await?;
            let f = self.forward(from, target, &jobs).await?;
            total.moved += f.moved;
            total.duplicates += f.duplicates;
        }
        Ok(total)
    }

    /// Every counted shard's depths, summed: what `stats` shows for the deployment. Endpoints
    /// are counted in shard 0; workers are the most any shard lists (each serves every shard).
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(Self::total(&self.shard_stats().await?))
    }

    /// The totals and, with more than one shard served, each shard's depths.
    pub async fn report(&self) -> Result<StatsReport, QueueError> {
        let per_shard = self.shard_stats().await?;
        let total = Self::total(&per_shard);
        let mut shards = Vec::new();
        if per_shard.len() > 1 {
            for (i, (q, s)) in self.queues.iter().zip(per_shard).enumerate() {
                // An earlier count's shard that no one serves is shown only while it holds work.
                let empty =
                    s.ready + s.retrying + s.parked + s.processing + s.scheduled + s.dead + s.forwarding == 0;
                if i >= self.served().len() && empty {
                    continue;
                }
                shards.push(ShardStats {
                    shard: q.keys().tag().to_owned(),
                    draining: i >= self.count(),
                    ready: s.ready,
                    retrying: s.retrying,
                    parked: s.parked,
                    processing: s.processing,
                    scheduled: s.scheduled,
                    dead: s.dead,
                    forwarding: s.forwarding,
                });
            }
            if shards.len() == 1 {
                shards.clear();
            }
        }
        Ok(StatsReport { total, shards })
    }

    /// The deployment's depths from each shard's ([`Shards::shard_stats`]).
    pub fn total(per_shard: &[QueueStats]) -> QueueStats {
        let mut total = QueueStats::default();
        for (i, s) in per_shard.iter().enumerate() {
            total.ready += s.ready;
            total.flows += s.flows;
            total.retrying += s.retrying;
            total.parked += s.parked;
            total.processing += s.processing;
            total.scheduled += s.scheduled;
            total.dead += s.dead;
            total.digests += s.digests;
            total.forwarding += s.forwarding;
            total.lane_full += s.lane_full;
            total.event_bodies += s.event_bodies;
            total.workers = total.workers.max(s.workers);
            if i == 0 {
                total.endpoints = s.endpoints;
            }
        }
        total
    }

    #[cfg(feature = "consume")]
    /// Every endpoint's breaker state and parked count, each read in its endpoint's shard.
    pub async fn breaker_overview(
        &self,
    ) -> Result<Vec<(String, crate::breaker::BreakerState, u64)>, QueueError> {
        if self.queues.len() == 1 {
            return self.home().breaker_overview().await;
        }
        let ids = self.home().endpoint_ids().await?;
        let mut out = Vec::with_capacity(ids.len());
        for (i, q) in self.queues.iter().enumerate().take(self.count()) {
            let mine: Vec<String> =
                ids.iter().filter(|id| self.layout.of_endpoint(id) == i).cloned().collect();
            out.extend(q.breaker_overview_of(mine).await?);
        }
        Ok(out)
    }

    /// Each counted shard's depths, in [`Shards::counted`] order.
    pub async fn shard_stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let mut out = Vec::with_capacity(self.queues.len());
        for q in self.queues.iter() {
            let mut s = q.stats().await?;
            s.forwarding = q.outbox_len(self.outbox_targets()).await?;
            out.push(s);
        }
        Ok(out)
    }

    #[cfg(feature = "consume")]
    /// Dead-letter summaries of every shard, newest first (by failure time), `count` from
    /// `offset` among those `filter` picks.
    pub async fn dead_letter_summaries_matching(
        &self,
        filter: &ReplayFilter,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetterSummary>, QueueError> {
        if self.served().len() == 1 {
            return self.home().dead_letter_summaries_matching(filter, offset, count).await;
        }
        let mut all = Vec::new();
        for q in self.served() {
            all.extend(q.dead_letter_summaries_matching(filter, 0, offset.saturating_add(count)).await?);
        }
        // Timestamps are written in one canonical RFC 3339 form: text order is time order.
        all.sort_by(|a, b| b.failed_at.cmp(&a.failed_at));
        Ok(all.into_iter().skip(offset).take(count).collect())
    }

    #[cfg(feature = "consume")]
    /// The shard holding dead letter `id`, if any.
    pub async fn dead_letter_shard(&self, id: &str) -> Result<Option<&Queue>, QueueError> {
        for q in self.served() {
            let mut conn = q.connection();
            let exists: bool =
                redis::cmd("EXISTS").arg(q.keys().dlq_entry(id)).query_async(&mut conn).await?;
            if exists {
                return Ok(Some(q));
            }
        }
        Ok(None)
    }

    #[cfg(feature = "consume")]
    /// One dead letter by id, from whichever shard holds it.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        match self.dead_letter_shard(id).await? {
            Some(q) => q.dead_letter_by_id(id).await,
            None => Ok(None),
        }
    }

    #[cfg(feature = "consume")]
    /// Replays one dead letter in the shard that holds it (its endpoint's shard when it died).
    pub async fn replay(&self, id: &str) -> Result<ReplayOutcome, QueueError> {
        match self.dead_letter_shard(id).await? {
            Some(q) => q.replay(id).await,
            None => Ok(ReplayOutcome::NotFound),
        }
    }

    #[cfg(feature = "consume")]
    /// [`Queue::replay_matching`] in every shard.
    pub async fn replay_matching(&self, filter: &ReplayFilter) -> Result<ReplaySummary, QueueError> {
        let mut total = ReplaySummary::default();
        for q in self.served() {
            let s = q.replay_matching(filter).await?;
            total.replayed += s.replayed;
            total.not_replayable += s.not_replayable;
        }
        Ok(total)
    }

    #[cfg(feature = "consume")]
    /// Deletes one dead letter, wherever it is. `false` if there was none.
    pub async fn purge(&self, id: &str) -> Result<bool, QueueError> {
        match self.dead_letter_shard(id).await? {
            Some(q) => q.purge(id).await,
            None => Ok(false),
        }
    }

    #[cfg(feature = "consume")]
    /// Deletes every dead letter of every shard; returns how many.
    pub async fn purge_all(&self) -> Result<usize, QueueError> {
        let mut n = 0;
        for q in self.served() {
            n += q.purge_all().await?;
        }
        Ok(n)
    }
}

impl Queue {
    /// How many forwarded events wait in this shard's outboxes (for `count` shards).
    pub async fn outbox_len(&self, count: usize) -> Result<u64, QueueError> {
        if count <= 1 {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for t in 0..count {
            pipe.zcard(self.keys.outbox(t));
        }
        let mut conn = self.conn.clone();
        let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
        Ok(lens.iter().sum())
    }
}
