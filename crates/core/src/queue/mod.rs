//! Our Redis job queue: a few Lua scripts and the Rust that calls them.
//!
//! The model, in the order a job meets it:
//! - producers `RPUSH` jobs onto the **ready** list;
//! - a worker takes one with a blocking `BLMOVE` into its own **processing** list (keyed by a
//!   fresh id per process), so an idle worker sends no commands and a new job is picked up at
//!   once;
//! - the worker holds a **lease** (a key with a TTL, renewed while it runs); a **reaper** in every
//!   worker hands the processing list of a worker whose lease expired back to ready. Because the
//!   lease is renewed while a delivery runs, a slow receiver never causes a second concurrent
//!   delivery; only a dead or frozen process loses its jobs to others;
//! - finishing a job is one script: acknowledge (and push the jobs it fanned out to), re-schedule
//!   into the **delayed** set, or dead-letter. Each first removes the job from the processing
//!   list, and does nothing if it is gone (the lease was lost), so a job never forks;
//! - a **promoter** moves due jobs from the delayed set back to ready in bounded chunks.
//!
//! Finished jobs are deleted; only dead letters stay, in their own documented structure.

mod dead_letter;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

pub use dead_letter::{
    DeadLetter, DeadLetterDraft, DeadLetterSummary, JOB_SHOW_MAX, ReplayFilter, ReplayOutcome, ReplaySummary,
    SUMMARY_TEXT_MAX,
};

use crate::keys::KeySpace;
use crate::redis_conn::{RedisConfig, connect};

/// Most jobs one promoter call moves.
pub const PROMOTE_CHUNK: usize = 500;

/// A Redis failure while talking to the queue. Callers retry with back-off; the worker loop
/// never ends on one.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
    ack: Script,
    retry: Script,
    dead: Script,
    promote: Script,
    requeue: Script,
    replay: Script,
    read_dead: Script,
    pace: Script,
}

impl Scripts {
    fn load() -> Self {
        Self {
            ack: Script::new(include_str!("ack.lua")),
            retry: Script::new(include_str!("retry.lua")),
            dead: Script::new(include_str!("dead.lua")),
            promote: Script::new(include_str!("promote.lua")),
            requeue: Script::new(include_str!("requeue.lua")),
            replay: Script::new(include_str!("replay.lua")),
            read_dead: Script::new(include_str!("read_dead.lua")),
            pace: Script::new(include_str!("pace.lua")),
        }
    }
}

/// What the promoter did and when it should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    pub moved: usize,
    /// Time until the earliest job still in the delayed set is due.
    pub next_due_in: Option<Duration>,
}

/// Queue depths, for `stats` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub ready: u64,
    pub processing: u64,
    pub delayed: u64,
    pub dead: u64,
    pub workers: u64,
    pub endpoints: u64,
}

/// A handle on the queue of one key space. Cheap to clone; all clones share one multiplexed,
/// self-reconnecting connection.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    config: RedisConfig,
    keys: KeySpace,
    scripts: std::sync::Arc<Scripts>,
}

impl Queue {
    /// Connects to Redis. Fails when Redis cannot be reached within the connect timeout.
    pub async fn connect(config: &RedisConfig, keys: KeySpace) -> Result<Self, QueueError> {
        let conn = connect(config, config.response_timeout).await?;
        Ok(Self { conn, config: config.clone(), keys, scripts: std::sync::Arc::new(Scripts::load()) })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The shared connection, for callers that read or write endpoints.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Pushes jobs onto the ready list, in one round trip. Returns once Redis has them (and,
    /// with `appendfsync always`, has written them to its AOF).
    pub async fn push(&self, jobs: &[String]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for chunk in jobs.chunks(1000) {
            pipe.rpush(self.keys.ready(), chunk).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
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
            ready: self.keys.ready(),
            processing: self.keys.processing(worker.as_str()),
            block,
        })
    }

    /// Registers the worker and renews its lease for `ttl`.
    pub async fn heartbeat(&self, worker: &WorkerId, ttl: Duration) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // One command per beat: `GET` tells whether the lease was there; only a new or lapsed
        // lease needs the worker (re)listed for the reapers.
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.keys.lease(worker.as_str()))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET")
            .query_async(&mut conn)
            .await?;
        if previous.is_none() {
            let _: () = conn.sadd(self.keys.workers(), worker.as_str()).await?;
        }
        Ok(())
    }

    /// Acknowledges a finished job and pushes its successors. `false` if the lease was lost.
    pub async fn ack(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        successors: &[String],
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.ack.key(self.keys.processing(worker.as_str()));
        inv.key(self.keys.ready()).arg(raw);
        for s in successors {
            inv.arg(s);
        }
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Replaces a job by `next`, due after `delay`. `false` if the lease was lost.
    pub async fn retry_later(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        next: &[u8],
        delay: Duration,
    ) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let due: i64 = self
            .scripts
            .retry
            .key(self.keys.processing(worker.as_str()))
            .key(self.keys.delayed())
            .arg(raw)
            .arg(next)
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await?;
        Ok(due != 0)
    }

    /// Moves due jobs from the delayed set to ready, up to [`PROMOTE_CHUNK`].
    pub async fn promote_due(&self) -> Result<Promoted, QueueError> {
        let mut conn = self.conn.clone();
        let (moved, wait): (usize, i64) = self
            .scripts
            .promote
            .key(self.keys.delayed())
            .key(self.keys.ready())
            .arg(PROMOTE_CHUNK)
            .invoke_async(&mut conn)
            .await?;
        let next_due_in = u64::try_from(wait).ok().map(Duration::from_millis);
        Ok(Promoted { moved, next_due_in })
    }

    /// Hands back the processing lists of workers whose lease expired. Returns the jobs moved.
    pub async fn reap_dead_workers(&self, me: &WorkerId) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let workers: Vec<String> = conn.smembers(self.keys.workers()).await?;
        let mut moved = 0;
        for w in workers.into_iter().filter(|w| w != me.as_str()) {
            loop {
                let n: i64 = self.requeue_invocation(&w, true).invoke_async(&mut conn).await?;
                if n <= 0 {
                    break;
                }
                moved += usize::try_from(n).unwrap_or(0);
                tracing::warn!(worker = %w, jobs = n, "reaped jobs of a worker whose lease expired");
            }
        }
        Ok(moved)
    }

    /// Hands this worker's unfinished jobs back to the ready list and unregisters it (shutdown).
    pub async fn release(&self, worker: &WorkerId) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let mut moved = 0;
        loop {
            let n: i64 = self.requeue_invocation(worker.as_str(), false).invoke_async(&mut conn).await?;
            if n <= 0 {
                break;
            }
            moved += usize::try_from(n).unwrap_or(0);
        }
        let _: () = conn.del(self.keys.lease(worker.as_str())).await?;
        Ok(moved)
    }

    fn requeue_invocation(&self, worker: &str, check_lease: bool) -> redis::ScriptInvocation<'_> {
        let mut inv = self.scripts.requeue.key(self.keys.processing(worker));
        inv.key(self.keys.ready())
            .key(self.keys.workers())
            .key(self.keys.lease(worker))
            .arg(worker)
            .arg(if check_lease { "1" } else { "0" })
            .arg(PROMOTE_CHUNK);
        inv
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

    /// Queue depths.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn.clone();
        let (ready, delayed, dead, endpoints, workers): (u64, u64, u64, u64, Vec<String>) = redis::pipe()
            .llen(self.keys.ready())
            .zcard(self.keys.delayed())
            .llen(self.keys.dlq())
            .hlen(self.keys.endpoints())
            .smembers(self.keys.workers())
            .query_async(&mut conn)
            .await?;
        let mut processing = 0;
        if !workers.is_empty() {
            let mut pipe = redis::pipe();
            for w in &workers {
                pipe.llen(self.keys.processing(w));
            }
            let lens: Vec<u64> = pipe.query_async(&mut conn).await?;
            processing = lens.iter().sum();
        }
        Ok(QueueStats { ready, processing, delayed, dead, workers: workers.len() as u64, endpoints })
    }
}

/// A worker's blocking fetch connection.
pub struct Fetcher {
    conn: ConnectionManager,
    ready: String,
    processing: String,
    block: Duration,
}

impl Fetcher {
    /// Waits up to the block time for a job and moves it onto this worker's processing list.
    /// Jobs are bytes: a poison job need not even be UTF-8, and must still be acknowledged by
    /// its exact bytes.
    pub async fn fetch(&mut self) -> Result<Option<Vec<u8>>, QueueError> {
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
        Ok(job)
    }

    /// Takes one ready job without blocking, if there is one.
    pub async fn try_fetch(&mut self) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.try_fetch_many(1).await?.pop())
    }

    /// Takes up to `max` ready jobs without blocking, in one round trip (a pipeline of
    /// `LMOVE`s: one write, so with `appendfsync always` one fsync for the whole batch).
    pub async fn try_fetch_many(&mut self, max: usize) -> Result<Vec<Vec<u8>>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for _ in 0..max {
            pipe.lmove(&self.ready, &self.processing, redis::Direction::Left, redis::Direction::Right);
        }
        let jobs: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.conn).await?;
        Ok(jobs.into_iter().flatten().collect())
    }
}
