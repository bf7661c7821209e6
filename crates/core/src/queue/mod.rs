//! Our Redis job queue: a few Lua scripts and the Rust that calls them.
//!
//! The model, in the order a job meets it:
//! - producers publish jobs onto the **ready** list with one script per batch (all or nothing,
//!   and at most once per event id within the dedupe window, remembered in **published**);
//! - a worker takes jobs into its own **processing** list (keyed by a fresh id per process):
//!   a blocking `BLMOVE` when the queue is empty, so an idle worker sends almost nothing and a
//!   new job is picked up at once, and a fetch script taking a batch when it is deep;
//! - the worker holds a **lease**: its score in the **leases** set, renewed by one script while it
//!   runs. Each renewal says when the next other lease runs out, and the worker hands that
//!   worker's processing list back to ready right then if it was not renewed. Because the lease
//!   is renewed while a delivery runs, a slow receiver never causes a second concurrent
//!   delivery; only a dead or frozen process loses its jobs to others. A dead worker stays
//!   listed for a while, so a fetch Redis serves after its death is still handed back;
//! - a worker compares its processing list with what it runs and hands back what it is not
//!   running (a fetch whose answer was lost);
//! - finishing a job is one script: acknowledge (and push the jobs it fanned out to), re-schedule
//!   into the **delayed** set, or dead-letter. Each first removes the job from the processing
//!   list, and does nothing if it is gone (the lease was lost), so a job never forks;
//! - a **promoter** moves due jobs from the delayed set back to ready in bounded chunks.
//!
//! Every script a worker runs declares `allow-oom` (Redis 7.0+): at `maxmemory` Redis refuses
//! publishes, while workers go on delivering, which is what frees memory.
//!
//! Finished jobs are deleted; only dead letters stay, in their own documented structure.

mod dead_letter;
mod fatigue;
mod history;
mod shards;

use std::time::Duration;

use crate::redis_conn::RedisConn;
use redis::{AsyncCommands, Script};

pub use dead_letter::{
    DeadLetter, DeadLetterDraft, DeadLetterSummary, JOB_SHOW_MAX, ReplayFilter, ReplayOutcome, ReplaySummary,
    SUMMARY_TEXT_MAX,
};
pub use fatigue::{Dedupe, RouteStep, Routed};
pub use history::Redelivery;
pub use shards::{Forwarded, ShardStats, Shards, StatsReport};

use crate::keys::KeySpace;
use crate::redis_conn::{RedisConfig, connect};

/// What acknowledging a delivered job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    Done,
    /// Done; the endpoint's breaker is open or half-open: report the success to close it.
    BreakerOpen,
    /// Done; the breaker is closed and deliveries wait in the endpoint's lane: release the
    /// oldest into the slot this one frees.
    LaneWaiting,
    /// The job was no longer on the worker's list (its lease ran out).
    LeaseLost,
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

/// Most jobs one promoter call moves.
pub const PROMOTE_CHUNK: usize = 500;

/// Longest job a worker reads. Events are at most 256 KiB and a delivery adds little, so only
/// a job written into Redis by hand can be longer; it is dead-lettered unread.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;

/// How much of an oversized job its dead letter keeps.
pub const DEAD_JOB_KEPT_BYTES: usize = 16 * 1024;

/// A Redis failure while talking to the queue. Callers retry with back-off; the worker loop
/// never ends on one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}{hint}", hint = crate::redis_conn::cluster_hint(.0))]
    Redis(#[from] redis::RedisError),
    /// The primary applied the write, but fewer replicas than asked confirmed it in time (`WAIT`):
    /// a failover now could lose it. Writing it again is safe where the write is idempotent (a
    /// publish is, by event id).
    #[error("only {got} of {wanted} replicas confirmed the write within {timeout:?}")]
    NotReplicated { wanted: u32, got: u32, timeout: Duration },
    /// This process's queue shard count is not the one the deployment records.
    #[error(transparent)]
    Layout(#[from] crate::shards::LayoutMismatch),
}

impl QueueError {
    /// Redis refused a write because it is at its `maxmemory` (`OOM command not allowed`).
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            QueueError::Redis(e) => e.code() == Some("OOM"),
            QueueError::NotReplicated { .. } | QueueError::Layout(_) => false,
        }
    }

    /// The command may or may not have run: the answer timed out or the connection dropped.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            QueueError::Redis(e) => e.is_timeout() || e.is_io_error() || e.is_connection_dropped(),
            QueueError::NotReplicated { .. } => true,
            QueueError::Layout(_) => false,
        }
    }
}

/// Names one worker process: its host name (the pod name in Kubernetes) and a fresh ULID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn generate() -> Self {
        let host: String = std::env::var("HOSTNAME")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let host = if host.is_empty() { "worker".to_owned() } else { host };
        Self(format!("{host}-{}", ulid::Ulid::new().to_string().to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Scripts {
    retry: Script,
    dead: Script,
    promote: Script,
    requeue: Script,
    replay: Script,
    read_dead: Script,
    pace: Script,
    lease: Script,
    fetch: Script,
    oversized: Script,
    handback: Script,
    publish: Script,
    park: Script,
    release: Script,
    breaker: Script,
    breaker_admit: Script,
    ack_delivered: Script,
}

impl Scripts {
    fn load() -> Self {
        Self {
            retry: Script::new(include_str!("retry.lua")),
            dead: Script::new(include_str!("dead.lua")),
            promote: Script::new(include_str!("promote.lua")),
            requeue: Script::new(include_str!("requeue.lua")),
            replay: Script::new(include_str!("replay.lua")),
            read_dead: Script::new(include_str!("read_dead.lua")),
            pace: Script::new(include_str!("pace.lua")),
            lease: Script::new(include_str!("lease.lua")),
            fetch: Script::new(include_str!("fetch.lua")),
            oversized: Script::new(include_str!("oversized.lua")),
            handback: Script::new(include_str!("handback.lua")),
            publish: Script::new(include_str!("publish.lua")),
            park: Script::new(include_str!("park.lua")),
            release: Script::new(include_str!("release.lua")),
            breaker: Script::new(include_str!("breaker.lua")),
            breaker_admit: Script::new(include_str!("breaker_admit.lua")),
            ack_delivered: Script::new(include_str!("ack_delivered.lua")),
        }
    }
}

/// What the promoter did and when it should look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub moved: usize,
    /// Time until the earliest job still in the delayed set is due.
    pub next_due_in: Option<Duration>,
    /// Endpoints whose lane is due for a look (release some of its waiting deliveries).
    pub due_lanes: Vec<String>,
    /// Time until the next lane is due, if one is waiting.
    pub next_lane_in: Option<Duration>,
}

/// What a lease renewal learned about the other workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time until the next other live worker's lease runs out, if there is one.
    pub next_expiry_in: Option<Duration>,
    /// Whether some other worker's lease has run out (its jobs may need handing back).
    pub expired_others: bool,
}

/// What one fetch took.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Jobs to run, already on the worker's processing list.
    pub jobs: Vec<Vec<u8>>,
    /// Jobs over [`MAX_JOB_BYTES`], also on the processing list, not read: dead-letter them
    /// with [`Queue::dead_letter_oversized`].
    pub oversized: usize,
    /// The endpoints' revision when the jobs were taken ([`KeySpace::endpoints_rev`]); `None`
    /// from the blocking fetch, which cannot read it in the same step.
    pub endpoints_rev: Option<u64>,
}

/// What a batch publish did, per event, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Enqueued now.
    Enqueued,
    /// The id was accepted within the dedupe window: acknowledged, no second job.
    Duplicate,
}

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

/// A handle on the queue of one key space. Cheap to clone; all clones share one multiplexed,
/// self-reconnecting connection.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    config: RedisConfig,
    keys: KeySpace,
    /// Whether this is shard 0, which also holds the endpoint store (see [`crate::shards`]).
    home: bool,
    scripts: std::sync::Arc<Scripts>,
}

impl Queue {
    /// Connects to Redis. Fails when Redis cannot be reached within the connect timeout.
    pub async fn connect(config: &RedisConfig, keys: KeySpace) -> Result<Self, QueueError> {
        let conn = connect(config, config.response_timeout).await?;
        Ok(Self {
            conn,
            config: config.clone(),
            keys,
            home: true,
            scripts: std::sync::Arc::new(Scripts::load()),
        })
    }

    /// The queue of another shard (`keys`), on the same connection; `home` for shard 0.
    pub fn for_shard(&self, keys: KeySpace, home: bool) -> Self {
        Self { keys, home, ..self.clone() }
    }

    /// Whether this is shard 0 (or the only shard), which holds the endpoint store.
    pub fn is_home(&self) -> bool {
        self.home
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The shared connection, for callers that read or write endpoints.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

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
    /// Urgent jobs (the `bool`) go to the front of the ready list.
    pub async fn publish(
        &self,
        jobs: &[(String, bool, String)],
        window: Duration,
    ) -> Result<Vec<Published>, QueueError> {
        self.publish_replicated(jobs, window, None).await
    }

    /// [`Queue::publish`], then, with `Some((n, timeout))`, `WAIT n timeout`: answers only once
    /// `n` replicas hold the jobs, so a failover that promotes one of them cannot lose them;
    /// [`QueueError::NotReplicated`] when fewer confirm in time (the primary has them; publishing
    /// again is safe).
    pub async fn publish_replicated(
        &self,
        jobs: &[(String, bool, String)],
        window: Duration,
        replicated: Option<(u32, Duration)>,
    ) -> Result<Vec<Published>, QueueError> {
        self.publish_with(jobs, window, self.keys.published(), replicated).await
    }

    /// [`Queue::publish_replicated`] with the dedupe window kept in `dedupe` (the published set,
    /// or the forwarded set for events moved in from another shard's outbox).
    pub(crate) async fn publish_with(
        &self,
        jobs: &[(String, bool, String)],
        window: Duration,
        dedupe: String,
        replicated: Option<(u32, Duration)>,
    ) -> Result<Vec<Published>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.publish.key(self.keys.ready());
        inv.key(dedupe).arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        for (id, urgent, job) in jobs {
            inv.arg(id).arg(if *urgent { "1" } else { "0" }).arg(job);
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

    /// Opens a dedicated connection for blocking fetches (a blocked `BLMOVE` would stall every
    /// other command on a shared multiplexed connection).
    pub async fn fetcher(&self, worker: &WorkerId, block: Duration) -> Result<Fetcher, QueueError> {
        let conn = connect(
            &self.config,
            Some(block + self.config.response_timeout.unwrap_or(Duration::from_secs(5))),
        )
        .await?;
        Ok(Fetcher {
            conn,
            config: self.config.clone(),
            ready: self.keys.ready(),
            retry: self.keys.retry(),
            processing: self.keys.processing(worker.as_str()),
            endpoints_rev: self.home.then(|| self.keys.endpoints_rev()),
            block,
            fetch: self.scripts.fetch.clone(),
        })
    }

    /// Registers the worker and renews its lease for `ttl`, in one atomic step, and tells when
    /// the next other worker's lease runs out.
    pub async fn heartbeat(&self, worker: &WorkerId, ttl: Duration) -> Result<Heartbeat, QueueError> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (now, next, expired): (i64, i64, i64) = self
            .scripts
            .lease
            .key(self.keys.leases())
            .arg(worker.as_str())
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        let next_expiry_in =
            (next >= 0).then(|| Duration::from_millis(u64::try_from(next - now).unwrap_or_default()));
        Ok(Heartbeat { next_expiry_in, expired_others: expired > 0 })
    }

    /// Finishes a delivered job, and in the same step clears its endpoint's count of failures
    /// in a row (a success ends the run, whichever worker counted it).
    pub async fn ack_delivered(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        endpoint: &crate::ids::EndpointId,
    ) -> Result<Acked, QueueError> {
        let answers = self.ack_delivered_many(worker, &[(raw, endpoint, "")]).await?;
        Ok(answers.into_iter().next().unwrap_or(Acked::LeaseLost))
    }

    /// [`Queue::ack_delivered`] for many jobs of one worker, in one step; one answer per job.
    /// Each job's history entry (see [`crate::history::encode_attempt`]; `""` for none) joins
    /// its endpoint's Recent Deliveries in the same step.
    pub async fn ack_delivered_many(
        &self,
        worker: &WorkerId,
        jobs: &[(&[u8], &crate::ids::EndpointId, &str)],
    ) -> Result<Vec<Acked>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.ack_delivered.key(self.keys.processing(worker.as_str()));
        for (_, endpoint, _) in jobs {
            inv.key(self.keys.breaker(endpoint.as_str()));
        }
        for (_, endpoint, _) in jobs {
            inv.key(self.keys.history(endpoint.as_str()));
        }
        for (_, endpoint, _) in jobs {
            inv.key(self.keys.lane(endpoint.as_str()));
        }
        let (keep, ms) = history::history_bounds();
        inv.arg(keep).arg(ms);
        for (raw, _, _) in jobs {
            inv.arg(*raw);
        }
        for (_, _, entry) in jobs {
            inv.arg(*entry);
        }
        let done: Vec<i64> = inv.invoke_async(&mut conn).await?;
        Ok(done
            .into_iter()
            .map(|d| match d {
                0 => Acked::LeaseLost,
                2 => Acked::BreakerOpen,
                3 => Acked::LaneWaiting,
                _ => Acked::Done,
            })
            .collect())
    }

    /// Replaces a job by `next`, due after `delay`. `false` if the lease was lost.
    pub async fn retry_later(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        next: &[u8],
        delay: Duration,
    ) -> Result<bool, QueueError> {
        self.retry_later_recorded(worker, raw, next, delay, None).await
    }

    /// [`Queue::retry_later`], and the failed attempt's history entry (see
    /// [`crate::history::encode_attempt`]) joins the endpoint's Recent Deliveries in the same
    /// step.
    pub async fn retry_later_recorded(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        next: &[u8],
        delay: Duration,
        history: Option<(&crate::ids::EndpointId, &str)>,
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.retry.key(self.keys.processing(worker.as_str()));
        inv.key(self.keys.delayed())
            .arg(raw)
            .arg(next)
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        if let Some((endpoint, entry)) = history {
            history::history_args(&mut inv, self.keys.history(endpoint.as_str()), entry);
        }
        let due: i64 = inv.invoke_async(&mut conn).await?;
        Ok(due != 0)
    }

    /// Moves due jobs from the delayed set to the retry list, up to [`PROMOTE_CHUNK`], and
    /// lists the endpoint lanes due for a look.
    pub async fn promote_due(&self) -> Result<Promoted, QueueError> {
        let mut conn = self.conn.clone();
        let answer: Vec<redis::Value> = self
            .scripts
            .promote
            .key(self.keys.delayed())
            .key(self.keys.ready())
            .key(self.keys.retry())
            .key(self.keys.lanes())
            .arg(PROMOTE_CHUNK)
            .invoke_async(&mut conn)
            .await?;
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        };
        let ms = |n: i64| u64::try_from(n).ok().map(Duration::from_millis);
        let due_lanes = answer
            .iter()
            .skip(3)
            .filter_map(|v| match v {
                redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                _ => None,
            })
            .collect();
        Ok(Promoted {
            moved: usize::try_from(int(answer.first())).unwrap_or(0),
            next_due_in: ms(int(answer.get(1))),
            due_lanes,
            next_lane_in: ms(int(answer.get(2))),
        })
    }

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

    /// Asks an endpoint's circuit breaker whether a delivery may run (claiming the probe when its
    /// time has come; a claimed probe may be taken over after `probe_deadline`). While a closed
    /// breaker has counted failures, a delivery runs only as a trial, while the failures, the
    /// trials out and `in_flight` (the asking worker's other attempts to the endpoint, trials not
    /// counted) stay under `failures` (the threshold).
    pub async fn breaker_admit(
        &self,
        endpoint: &crate::ids::EndpointId,
        probe_deadline: Duration,
        failures: u32,
        in_flight: usize,
    ) -> Result<crate::breaker::Admit, QueueError> {
        use crate::breaker::Admit;
        let mut conn = self.conn.clone();
        let (answer, ms, _failures, generation): (String, i64, i64, i64) = self
            .scripts
            .breaker_admit
            .key(self.keys.breaker(endpoint.as_str()))
            .arg(u64::try_from(probe_deadline.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(failures.max(1))
            .arg(in_flight)
            .invoke_async(&mut conn)
            .await?;
        let ms = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        let generation = u64::try_from(generation).unwrap_or(0);
        Ok(match answer.as_str() {
            "probe" => Admit::Probe { generation },
            "open" => Admit::Open(ms),
            "disabled" => Admit::Disabled,
            "trial" => Admit::Trial { generation },
            "wait" => Admit::Wait,
            _ => Admit::Closed { generation },
        })
    }

    /// Tells an endpoint's circuit breaker how an attempt ended (or resets it), and says what
    /// it did. A state change is announced, in the same step, by an `endpoint.health_changed`
    /// event naming the endpoint `name` (`None`: no announcement), unless announcements are
    /// damped. See `breaker.lua`.
    pub async fn breaker_report(
        &self,
        endpoint: &crate::ids::EndpointId,
        name: Option<&str>,
        report: crate::breaker::Report<'_>,
        settings: &crate::breaker::BreakerSettings,
    ) -> Result<crate::breaker::Answer, QueueError> {
        self.breaker_report_attempt(endpoint, name, report, settings, crate::breaker::AttemptFacts::default())
            .await
    }

    /// [`Queue::breaker_report`] with what the worker knows of the attempt (its generation,
    /// whether it was a trial, whether the failing delivery parks).
    pub async fn breaker_report_attempt(
        &self,
        endpoint: &crate::ids::EndpointId,
        name: Option<&str>,
        report: crate::breaker::Report<'_>,
        settings: &crate::breaker::BreakerSettings,
        facts: crate::breaker::AttemptFacts,
    ) -> Result<crate::breaker::Answer, QueueError> {
        use crate::breaker::Report;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let (op, error, probe) = match report {
            Report::Failure { error, probe } => ("fail", error, probe),
            Report::Success { probe } => ("ok", "", probe),
            Report::Reset => ("reset", "", false),
            Report::Release => ("release", "", false),
        };
        let mut conn = self.conn.clone();
        let id = endpoint.as_str();
        let answer: crate::breaker::ScriptAnswer = self
            .scripts
            .breaker
            .key(self.keys.breaker(id))
            .key(self.keys.lane(id))
            .key(self.keys.ready())
            .key(self.keys.retry())
            .key(self.keys.lanes())
            .key(self.keys.endpoints())
            .key(self.keys.endpoints_rev())
            .arg(op)
            .arg(id)
            .arg(settings.failures.max(1))
            .arg(ms(settings.probe))
            .arg(ms(settings.max_probe))
            .arg(ms(settings.disable_after))
            .arg(crate::breaker::cut_error(error))
            .arg(if probe { "1" } else { "0" })
            .arg(name.map(|n| crate::breaker::announcement(endpoint, n, error)).unwrap_or_default())
            .arg(facts.generation.map(|g| g.to_string()).unwrap_or_default())
            .arg(if facts.trial { "1" } else { "0" })
            .arg(if facts.parks { "1" } else { "0" })
            .arg(settings.release.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(crate::breaker::Answer::from_script(answer))
    }

    /// What an endpoint's breaker says now, and how many deliveries wait in its lane.
    pub async fn breaker_status(
        &self,
        endpoint: &crate::ids::EndpointId,
    ) -> Result<crate::breaker::BreakerStatus, QueueError> {
        let mut conn = self.conn.clone();
        let id = endpoint.as_str();
        type Fields = (Option<String>, Option<u64>, Option<String>, Option<i64>, Option<i64>);
        let ((state, failures, last_error, opened_at, next_probe), parked): (Fields, u64) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.breaker(id))
            .arg(&["state", "failures", "last_error", "opened_at", "next_probe"])
            .llen(self.keys.lane(id))
            .query_async(&mut conn)
            .await?;
        Ok(crate::breaker::BreakerStatus::from_fields(
            state, failures, last_error, opened_at, next_probe, parked,
        ))
    }

    /// Every endpoint's breaker state and parked count, for the metrics (two pipelined reads
    /// per endpoint, at scrape time).
    pub async fn breaker_overview(
        &self,
    ) -> Result<Vec<(String, crate::breaker::BreakerState, u64)>, QueueError> {
        let ids = self.endpoint_ids().await?;
        self.breaker_overview_of(ids).await
    }

    /// The ids of every stored endpoint (shard 0's endpoints hash).
    pub async fn endpoint_ids(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.hkeys(self.keys.endpoints()).await?)
    }

    /// [`Queue::breaker_overview`] of these endpoints, read in this shard.
    pub async fn breaker_overview_of(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<(String, crate::breaker::BreakerState, u64)>, QueueError> {
        let mut conn = self.conn.clone();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.keys.breaker(id), "state").llen(self.keys.lane(id));
        }
        let answers: Vec<(Option<String>, u64)> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(answers)
            .map(|(id, (state, parked))| {
                let status =
                    crate::breaker::BreakerStatus::from_fields(state, None, None, None, None, parked);
                (id, status.state, parked)
            })
            .collect())
    }

    /// Hands back the processing lists of workers whose lease ran out, and forgets workers dead
    /// longer than `forget_after` whose lists are empty. Returns the jobs moved and whether
    /// dead workers are still listed (then call again later: a late fetch of theirs may land).
    pub async fn reap_dead_workers(
        &self,
        me: &WorkerId,
        forget_after: Duration,
    ) -> Result<(usize, bool), QueueError> {
        let mut conn = self.conn.clone();
        let t: (i64, i64) = conn.query_at(&redis::cmd("TIME"), &self.keys.leases()).await?;
        let now = t.0 * 1000 + t.1 / 1000;
        let dead: Vec<String> = conn.zrangebyscore(self.keys.leases(), "-inf", now).await?;
        let mut moved = 0;
        for w in dead.iter().filter(|w| w.as_str() != me.as_str()) {
            loop {
                let n: i64 = self.requeue_invocation(w, true, forget_after).invoke_async(&mut conn).await?;
                if n <= 0 {
                    break;
                }
                moved += usize::try_from(n).unwrap_or(0);
                tracing::warn!(worker = %w, jobs = n, "handed back the jobs of a worker whose lease ran out");
                if usize::try_from(n).unwrap_or(0) < PROMOTE_CHUNK {
                    break;
                }
            }
        }
        let still_listed: i64 = conn.zcount(self.keys.leases(), "-inf", now).await?;
        let mine_listed = dead.iter().any(|w| w.as_str() == me.as_str());
        Ok((moved, still_listed > i64::from(mine_listed)))
    }

    /// Hands this worker's unfinished jobs back to the ready list and marks its lease as run
    /// out (shutdown). It stays listed a while, so a fetch Redis serves after this still gets
    /// handed back by the others.
    pub async fn release(&self, worker: &WorkerId) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let mut moved = 0;
        loop {
            let n: i64 = self
                .requeue_invocation(worker.as_str(), false, Duration::ZERO)
                .invoke_async(&mut conn)
                .await?;
            moved += usize::try_from(n).unwrap_or(0);
            if usize::try_from(n).unwrap_or(0) < PROMOTE_CHUNK {
                break;
            }
        }
        Ok(moved)
    }

    fn requeue_invocation(
        &self,
        worker: &str,
        check_lease: bool,
        forget_after: Duration,
    ) -> redis::ScriptInvocation<'_> {
        let mut inv = self.scripts.requeue.key(self.keys.processing(worker));
        inv.key(self.keys.ready())
            .key(self.keys.leases())
            .arg(worker)
            .arg(if check_lease { "1" } else { "0" })
            .arg(PROMOTE_CHUNK)
            .arg(u64::try_from(forget_after.as_millis()).unwrap_or(u64::MAX));
        inv
    }

    /// The jobs on this worker's processing list (for reconciling it against what runs).
    pub async fn processing_jobs(&self, worker: &WorkerId) -> Result<Vec<Vec<u8>>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.lrange(self.keys.processing(worker.as_str()), 0, -1).await?)
    }

    /// How many jobs are on this worker's processing list.
    pub async fn processing_len(&self, worker: &WorkerId) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        Ok(conn.llen(self.keys.processing(worker.as_str())).await?)
    }

    /// Hands `jobs` back from this worker's processing list to the front of the ready list,
    /// each only if it is still there. Returns how many moved.
    pub async fn hand_back(&self, worker: &WorkerId, jobs: &[Vec<u8>]) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.handback.key(self.keys.processing(worker.as_str()));
        inv.key(self.keys.ready());
        for j in jobs {
            inv.arg(j.as_slice());
        }
        let n: i64 = inv.invoke_async(&mut conn).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Dead-letters one job over [`MAX_JOB_BYTES`] from this worker's processing list, keeping
    /// its first [`DEAD_JOB_KEPT_BYTES`]. Returns its length, 0 when there was none.
    pub async fn dead_letter_oversized(&self, worker: &WorkerId, id: &str) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .scripts
            .oversized
            .key(self.keys.processing(worker.as_str()))
            .key(self.keys.dlq())
            .key(self.keys.dlq_entry(id))
            .arg(id)
            .arg(MAX_JOB_BYTES)
            .arg(DEAD_JOB_KEPT_BYTES)
            .arg(crate::timestamp::Timestamp::now().to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
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

    /// How long a publish refused for memory keeps Redis reported full ([`KeySpace::publish_refused`]).
    pub const PUBLISH_REFUSED_FOR: Duration = Duration::from_secs(60);

    /// Records that Redis refused a publish for memory, for [`Queue::publish_refused`]. A script
    /// with `allow-oom`, so the write goes through at `maxmemory`.
    pub async fn record_publish_refused(&self) -> Result<(), QueueError> {
        let script = redis::Script::new(
            "#!lua flags=allow-oom\nredis.call('SET', KEYS[1], '1', 'PX', ARGV[1])\nreturn 1",
        );
        let mut conn = self.conn.clone();
        let ms = u64::try_from(Self::PUBLISH_REFUSED_FOR.as_millis()).unwrap_or(60_000);
        let _: i64 = script.key(self.keys.publish_refused()).arg(ms).invoke_async(&mut conn).await?;
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

/// A worker's blocking fetch connection.
pub struct Fetcher {
    conn: RedisConn,
    config: RedisConfig,
    ready: String,
    retry: String,
    processing: String,
    /// `None` on a shard other than shard 0 (see [`crate::shards`]).
    endpoints_rev: Option<String>,
    block: Duration,
    fetch: Script,
}

impl Fetcher {
    /// Waits up to the block time for a job and moves it onto this worker's processing list.
    /// Jobs are bytes: a poison job need not even be UTF-8, and must still be acknowledged by
    /// its exact bytes.
    pub async fn fetch(&mut self) -> Result<Fetched, QueueError> {
        let job: Option<Vec<u8>> = self
            .conn
            .blmove(
                &self.ready,
                &self.processing,
                redis::Direction::Left,
                redis::Direction::Right,
                self.block.as_secs_f64(),
            )
            .await?;
        Ok(match job {
            Some(j) if j.len() > MAX_JOB_BYTES => {
                // The connection's read buffer grew to hold it: start a fresh connection so
                // the memory goes back instead of staying with the buffer.
                drop(j);
                if let Ok(conn) = connect(&self.config, self.conn_timeout()).await {
                    self.conn = conn;
                }
                Fetched { jobs: Vec::new(), oversized: 1, endpoints_rev: None }
            }
            Some(j) => Fetched { jobs: vec![j], oversized: 0, endpoints_rev: None },
            None => Fetched::default(),
        })
    }

    fn conn_timeout(&self) -> Option<Duration> {
        Some(self.block + self.config.response_timeout.unwrap_or(Duration::from_secs(5)))
    }

    /// Takes one ready job without blocking, if there is one (an oversized job is taken onto
    /// the processing list but not returned).
    pub async fn try_fetch(&mut self) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.try_fetch_many(1).await?.jobs.pop())
    }

    /// Takes up to `max` ready jobs without blocking, in one round trip and one atomic step
    /// (one write, so with `appendfsync always` one fsync for the whole batch). Works while
    /// Redis is at its `maxmemory`, when the blocking fetch is refused.
    pub async fn try_fetch_many(&mut self, max: usize) -> Result<Fetched, QueueError> {
        if max == 0 {
            return Ok(Fetched::default());
        }
        let mut inv = self.fetch.key(&self.ready);
        inv.key(&self.processing).key(&self.retry);
        if let Some(rev) = &self.endpoints_rev {
            inv.key(rev);
        }
        let answer: Vec<redis::Value> = inv.arg(max).arg(MAX_JOB_BYTES).invoke_async(&mut self.conn).await?;
        let mut out = Fetched::default();
        let mut answer = answer.into_iter();
        if let Some(redis::Value::Int(rev)) = answer.next() {
            out.endpoints_rev = u64::try_from(rev).ok();
        }
        for v in answer {
            match v {
                redis::Value::BulkString(b) => out.jobs.push(b),
                _ => out.oversized += 1,
            }
        }
        Ok(out)
    }
}
