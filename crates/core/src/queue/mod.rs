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

#[cfg(feature = "consume")]
mod breaker;
#[cfg(feature = "consume")]
mod claim;
#[cfg(feature = "consume")]
mod claimed;
#[cfg(feature = "consume")]
mod dead_letter;
mod fair;
#[cfg(feature = "consume")]
mod fatigue;
#[cfg(feature = "consume")]
mod finish;
#[cfg(feature = "consume")]
mod history;
#[cfg(feature = "consume")]
mod lane;
mod publish;
mod shards;
mod stats;

use std::time::Duration;

use crate::redis_conn::RedisConn;
use redis::Script;

#[cfg(feature = "consume")]
pub use claim::{Fetched, Fetcher, Heartbeat};
#[cfg(feature = "consume")]
pub use claimed::{Claim, Claimed, dropped_unfinished};
#[cfg(feature = "consume")]
pub use dead_letter::{
    DeadLetter, DeadLetterDraft, DeadLetterSummary, JOB_SHOW_MAX, ReplayFilter, ReplayOutcome, ReplaySummary,
    SUMMARY_TEXT_MAX,
};
pub use fair::{FairShare, Relayout, ShardFairShare};
#[cfg(feature = "consume")]
pub use fatigue::{Dedupe, FanoutParking, RouteStep, Routed};
#[cfg(feature = "consume")]
pub use finish::{Acked, Promoted};
#[cfg(feature = "consume")]
pub use history::Redelivery;
#[cfg(feature = "consume")]
pub use lane::{PACE_AHEAD, Pace, Park, Parked};
pub use publish::{Published, Publishing};
pub use shards::{Forwarded, ShardStats, Shards, StatsReport};
pub use stats::QueueStats;

use crate::keys::KeySpace;
use crate::redis_conn::{RedisConfig, connect};

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
        Self(format!("{host}-{}", crate::ids::new_ulid().to_string().to_lowercase()))
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

/// Every Lua script the queue runs, loaded one way: each `<name>.lua` of this folder, with the
/// shared helpers of `prelude.lua` (Redis's clock, the claim check, the history push) put after
/// its first line (`#!lua flags=…`, which Redis needs first). A producer's build (without the
/// `consume` feature) runs only the publishing ones.
#[cfg_attr(not(feature = "consume"), allow(dead_code))]
struct Scripts {
    retry: Script,
    dead: Script,
    promote: Script,
    requeue: Script,
    replay: Script,
    purge: Script,
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
    history_push: Script,
    ack_retried: Script,
    route: Script,
    digest_due: Script,
    digest_send: Script,
    requeue_one: Script,
    count_in_flight: Script,
    publish_refused: Script,
    change_layout: Script,
    relayout: Script,
    live_workers: Script,
    stats: Script,
}

impl Scripts {
    fn load() -> Self {
        Self {
            retry: script(include_str!("retry.lua")),
            dead: script(include_str!("dead.lua")),
            promote: script(include_str!("promote.lua")),
            requeue: script(include_str!("requeue.lua")),
            replay: script(include_str!("replay.lua")),
            purge: script(include_str!("purge.lua")),
            read_dead: script(include_str!("read_dead.lua")),
            pace: script(include_str!("pace.lua")),
            lease: script(include_str!("lease.lua")),
            fetch: script(include_str!("fetch.lua")),
            oversized: script(include_str!("oversized.lua")),
            handback: script(include_str!("handback.lua")),
            publish: script(include_str!("publish.lua")),
            park: script(include_str!("park.lua")),
            release: script(include_str!("release.lua")),
            breaker: script(include_str!("breaker.lua")),
            breaker_admit: script(include_str!("breaker_admit.lua")),
            ack_delivered: script(include_str!("ack_delivered.lua")),
            history_push: script(include_str!("history_push.lua")),
            ack_retried: script(include_str!("ack_retried.lua")),
            route: script(include_str!("route.lua")),
            digest_due: script(include_str!("digest_due.lua")),
            digest_send: script(include_str!("digest_send.lua")),
            requeue_one: script(include_str!("requeue_one.lua")),
            count_in_flight: script(include_str!("count_in_flight.lua")),
            publish_refused: script(include_str!("publish_refused.lua")),
            change_layout: script(include_str!("change_layout.lua")),
            relayout: script(include_str!("relayout.lua")),
            live_workers: script(include_str!("live_workers.lua")),
            stats: script(include_str!("stats.lua")),
        }
    }
}

/// `source` with the prelude after its shebang line (or first, for a script without one).
fn script(source: &str) -> Script {
    const PRELUDE: &str = include_str!("prelude.lua");
    let (first, rest) = match source.strip_prefix("#!") {
        Some(_) => source.split_once('\n').unwrap_or((source, "")),
        None => ("", source),
    };
    Script::new(&format!("{first}\n{PRELUDE}\n{rest}"))
}

/// A handle on the queue of one key space. Cheap to clone; all clones share one multiplexed,
/// self-reconnecting connection.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    #[cfg_attr(not(feature = "consume"), allow(dead_code))]
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

    #[cfg(feature = "consume")]
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

    /// How long a publish refused for memory keeps Redis reported full ([`KeySpace::publish_refused`]).
    pub const PUBLISH_REFUSED_FOR: Duration = Duration::from_secs(60);
}
