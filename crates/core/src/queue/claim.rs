//! Claiming jobs: a worker's fetches onto its own processing list (`fetch.lua`, a blocking
//! `BLMOVE`), its lease (`lease.lua`), and what happens to the jobs of a worker that died or
//! stops (handed back, `handback.lua`, `requeue.lua`), or of one too long to read (`oversized.lua`).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use redis::Script;

use super::claimed::Claimed;
use super::{DEAD_JOB_KEPT_BYTES, MAX_JOB_BYTES, PROMOTE_CHUNK, Queue, QueueError, WorkerId};
use crate::redis_conn::{RedisConfig, RedisConn, connect};

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
    pub jobs: Vec<Claimed>,
    /// Jobs over [`MAX_JOB_BYTES`], also on the processing list, not read: dead-letter them
    /// with [`Queue::dead_letter_oversized`].
    pub oversized: usize,
    /// The endpoints' revision when the jobs were taken ([`KeySpace::endpoints_rev`]); `None`
    /// from the blocking fetch, which cannot read it in the same step.
    pub endpoints_rev: Option<u64>,
}

impl Fetched {
    /// What `take` in `prelude.lua` answered (the endpoints' revision, then each job or an
    /// oversized job's length), as jobs claimed on `list`.
    pub(crate) fn from_take(answer: Vec<redis::Value>, list: &Arc<str>) -> Fetched {
        let mut out = Fetched::default();
        let mut answer = answer.into_iter();
        if let Some(redis::Value::Int(rev)) = answer.next() {
            out.endpoints_rev = u64::try_from(rev).ok();
        }
        for v in answer {
            match v {
                redis::Value::BulkString(b) => out.jobs.push(Claimed::new(b, list.clone())),
                _ => out.oversized += 1,
            }
        }
        out
    }
}

/// A worker's blocking fetch connection.
pub struct Fetcher {
    conn: RedisConn,
    config: RedisConfig,
    ready: String,
    retry: String,
    flows: String,
    processing: Arc<str>,
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
                &*self.processing,
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
            Some(j) => Fetched { jobs: vec![self.claimed(j)], oversized: 0, endpoints_rev: None },
            None => Fetched::default(),
        })
    }

    fn claimed(&self, bytes: Vec<u8>) -> Claimed {
        Claimed::new(bytes, self.processing.clone())
    }

    fn conn_timeout(&self) -> Option<Duration> {
        Some(self.block + self.config.response_timeout.unwrap_or(Duration::from_secs(5)))
    }

    /// Takes one ready job without blocking, if there is one (an oversized job is taken onto
    /// the processing list but not returned).
    pub async fn try_fetch(&mut self) -> Result<Option<Claimed>, QueueError> {
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
        inv.key(&*self.processing).key(&self.retry).key(&self.flows);
        if let Some(rev) = &self.endpoints_rev {
            inv.key(rev);
        }
        let answer: Vec<redis::Value> = inv.arg(max).arg(MAX_JOB_BYTES).invoke_async(&mut self.conn).await?;
        Ok(Fetched::from_take(answer, &self.processing))
    }
}

impl Queue {
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
            flows: self.keys.flows(),
            processing: self.keys.processing(worker.as_str()).into(),
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
}
