//! Finishing a delivered job (`ack_delivered.lua`, batched), re-scheduling a failed one into the
//! delayed set (`retry.lua`), and promoting due jobs and lanes back (`promote.lua`).

use std::time::Duration;

#[cfg(doc)]
use super::Fetcher;
use super::{Claim, Fetched, MAX_JOB_BYTES, PROMOTE_CHUNK, Queue, QueueError, history};

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

impl Queue {
    /// Finishes a delivered job, and in the same step clears its endpoint's count of failures
    /// in a row (a success ends the run, whichever worker counted it).
    pub async fn ack_delivered(
        &self,
        job: &Claim,
        endpoint: &crate::ids::EndpointId,
    ) -> Result<Acked, QueueError> {
        let (answers, _) = self.ack_delivered_many(&[(job, endpoint, "")], 0).await?;
        Ok(answers.into_iter().next().unwrap_or(Acked::LeaseLost))
    }

    /// [`Queue::ack_delivered`] for many jobs of one worker (one processing list), in one round
    /// trip; one answer per job.
    /// Each job's history entry (see [`crate::history::encode_attempt`]; `""` for none) joins
    /// its endpoint's Recent Deliveries in the same round trip, even when the job's lease was
    /// lost (the attempt was made and answered). In the same round trip too, up to `take` next
    /// jobs are taken onto the processing list, as [`Fetcher::try_fetch_many`] takes them (ready
    /// before retries; the endpoints' revision with them on shard 0): the slots these deliveries
    /// free run them without another round trip.
    ///
    /// One pipeline: an `LREM` per job, `ack_delivered.lua` (each endpoint's breaker and lane,
    /// then the take), and an `LPUSH`, `LTRIM` and `PEXPIRE` per endpoint with entries. The jobs
    /// and the entries, most of a batch's bytes, stay out of the script: Redis's Lua hashes every
    /// byte of every string it is handed. Each step stands on its own, so a pipeline cut short
    /// (a worker killed mid-write) leaves nothing half done that matters: a job taken off the
    /// list is delivered; a breaker's count not cleared is cleared by the next success; a lane
    /// not looked at is looked at by the promoter.
    pub async fn ack_delivered_many(
        &self,
        jobs: &[(&Claim, &crate::ids::EndpointId, &str)],
        take: usize,
    ) -> Result<(Vec<Acked>, Fetched), QueueError> {
        let Some((first, _, _)) = jobs.first() else { return Ok((Vec::new(), Fetched::default())) };
        debug_assert!(jobs.iter().all(|(j, _, _)| j.list() == first.list()), "one processing list");
        // The batch's endpoints, each once, in the order they come; each job's among them.
        let mut endpoints: Vec<&crate::ids::EndpointId> = Vec::new();
        let of_job: Vec<usize> = jobs
            .iter()
            .map(|(_, endpoint, _)| match endpoints.iter().position(|e| e == endpoint) {
                Some(k) => k,
                None => {
                    endpoints.push(endpoint);
                    endpoints.len() - 1
                }
            })
            .collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (job, _, _) in jobs {
            pipe.cmd("LREM").arg(first.list()).arg(1).arg(job.bytes());
        }
        let mut inv = self.scripts.ack_delivered.key(first.list());
        for endpoint in &endpoints {
            inv.key(self.keys.breaker(endpoint.as_str()));
        }
        for endpoint in &endpoints {
            inv.key(self.keys.lane(endpoint.as_str()));
        }
        if take > 0 {
            inv.key(self.keys.ready()).key(self.keys.retry()).key(self.keys.flows());
            if self.home {
                inv.key(self.keys.endpoints_rev());
            }
        }
        inv.arg(take).arg(MAX_JOB_BYTES).arg(endpoints.len());
        pipe.invoke_script(&inv);
        // Each endpoint's entries, oldest first: the newest ends up first in the list.
        let entries: Vec<(String, Vec<&str>)> = endpoints
            .iter()
            .enumerate()
            .map(|(k, endpoint)| {
                let of_endpoint = jobs
                    .iter()
                    .zip(&of_job)
                    .filter(|(_, at)| **at == k)
                    .map(|((_, _, entry), _)| *entry)
                    .filter(|entry| !entry.is_empty())
                    .collect();
                (self.keys.history(endpoint.as_str()), of_endpoint)
            })
            .filter(|(_, of_endpoint): &(String, Vec<&str>)| !of_endpoint.is_empty())
            .collect();
        let (keep, ms) = history::history_bounds();
        for (key, of_endpoint) in &entries {
            pipe.lpush(key, of_endpoint).ltrim(key, 0, keep as isize - 1).pexpire(key, ms as i64);
        }
        let mut conn = self.conn.clone();
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        // One reply per command sent; were any missing, the jobs without one answer LeaseLost
        // (the caller's `missing`), never a panic.
        let pushed = if replies.len() > jobs.len() { replies.split_off(jobs.len() + 1) } else { Vec::new() };
        let script = if replies.len() > jobs.len() { replies.pop() } else { None };
        let script = script.unwrap_or(redis::Value::Nil);
        // A server error in an `LREM`'s place says nothing of the lease (a cluster mid-failover:
        // CLUSTERDOWN, TRYAGAIN): the batch fails, and each delivery tries its acknowledgement
        // again (`ack_delivered_retried`, which records the attempt once), as when Redis is
        // unreachable. Read as a lost lease, the job would be handed back and delivered twice.
        if let Some(e) = replies.iter().find_map(|r| match r {
            redis::Value::ServerError(e) => Some(e.clone()),
            _ => None,
        }) {
            return Err(redis::RedisError::from(e).into());
        }
        let script: Result<redis::Value, redis::RedisError> = match script {
            redis::Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript) => {
                // Redis restarted or flushed its scripts since the last call: load it and run
                // it alone (the jobs are off the list and the entries pushed already).
                inv.invoke_async::<redis::Value>(&mut conn).await
            }
            redis::Value::ServerError(e) => Err(e.into()),
            other => Ok(other),
        };
        // The jobs are off the list (the `LREM`s answered): they are acknowledged whatever the
        // script said. A breaker or lane that cannot be read (a corrupt record) is told in the
        // log: the error's own text, never the reply itself (it may hold whole jobs).
        let unread = || (vec![1; endpoints.len()], Vec::new());
        let (per_endpoint, taken): (Vec<i64>, Vec<redis::Value>) = match script {
            Ok(reply) => redis::from_redis_value(reply).unwrap_or_else(|_| {
                tracing::warn!("acknowledged; the breakers' and lanes' step answered in an unexpected shape");
                unread()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "acknowledged; the breakers' and lanes' step failed");
                unread()
            }
        };
        for (k, (key, of_endpoint)) in entries.iter().enumerate() {
            let refused =
                pushed.iter().skip(3 * k).take(3).any(|r| matches!(r, redis::Value::ServerError(_)));
            if refused {
                self.push_history_anyway(key, of_endpoint).await;
            }
        }
        let acked = replies
            .iter()
            .zip(&of_job)
            .map(|(removed, &k)| match (removed, per_endpoint.get(k)) {
                (redis::Value::Int(1), Some(2)) => Acked::BreakerOpen,
                (redis::Value::Int(1), Some(3)) => Acked::LaneWaiting,
                (redis::Value::Int(1), _) => Acked::Done,
                _ => Acked::LeaseLost,
            })
            .collect();
        let fetched = if taken.is_empty() {
            Fetched::default()
        } else {
            Fetched::from_take(taken, first.shared_list())
        };
        Ok((acked, fetched))
    }

    /// [`Queue::ack_delivered`] tried again after a try that failed, whose answer may have been
    /// lost after it ran (`ack_retried.lua`): `entry` joins Recent Deliveries only when the job
    /// was still on the list, so the attempt is recorded once whichever try finished it. Takes
    /// no next job.
    pub async fn ack_delivered_retried(
        &self,
        job: &Claim,
        endpoint: &crate::ids::EndpointId,
        entry: &str,
    ) -> Result<Acked, QueueError> {
        let (keep, ms) = history::history_bounds();
        let mut conn = self.conn.clone();
        let answer: i64 = self
            .scripts
            .ack_retried
            .key(job.list())
            .key(self.keys.breaker(endpoint.as_str()))
            .key(self.keys.lane(endpoint.as_str()))
            .key(self.keys.history(endpoint.as_str()))
            .arg(job.bytes())
            .arg(entry)
            .arg(keep)
            .arg(ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer {
            0 => Acked::LeaseLost,
            2 => Acked::BreakerOpen,
            3 => Acked::LaneWaiting,
            _ => Acked::Done,
        })
    }

    /// Pushes delivered attempts' entries a plain `LPUSH` could not (Redis at its maxmemory
    /// refuses it; `history_push.lua` is allowed then, as every script a worker runs). Recent
    /// Deliveries is a record, not the delivery: when this fails too, the entries are told in the
    /// log and dropped.
    async fn push_history_anyway(&self, key: &str, entries: &[&str]) {
        let (keep, ms) = history::history_bounds();
        let mut inv = self.scripts.history_push.key(key);
        inv.arg(keep).arg(ms);
        for entry in entries {
            inv.arg(*entry);
        }
        let mut conn = self.conn.clone();
        if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
            tracing::warn!(error = %e, entries = entries.len(), "Recent Deliveries entries not recorded");
        }
    }

    /// Replaces a job by `next`, due after `delay`. `false` if the lease was lost.
    pub async fn retry_later(&self, job: &Claim, next: &[u8], delay: Duration) -> Result<bool, QueueError> {
        Ok(self.retry_later_recorded(job, next, delay, None, 0).await?.0)
    }

    /// [`Queue::retry_later`], and the failed attempt's history entry (see
    /// [`crate::history::encode_attempt`]) joins the endpoint's Recent Deliveries in the same
    /// step. In the same step too, up to `take` next jobs are taken onto the processing list
    /// for the slot the delivery frees, as [`Queue::ack_delivered_many`] takes them (none when
    /// the lease was lost).
    pub async fn retry_later_recorded(
        &self,
        job: &Claim,
        next: &[u8],
        delay: Duration,
        history: Option<(&crate::ids::EndpointId, &str)>,
        take: usize,
    ) -> Result<(bool, Fetched), QueueError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.retry.key(job.list());
        inv.key(self.keys.delayed())
            .arg(job.bytes())
            .arg(next)
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        match history {
            Some((endpoint, entry)) => {
                history::history_args(&mut inv, self.keys.history(endpoint.as_str()), entry)
            }
            None => {
                inv.arg("").arg(0).arg(0);
            }
        }
        inv.arg(take).arg(MAX_JOB_BYTES);
        if take > 0 {
            inv.key(self.keys.ready()).key(self.keys.retry()).key(self.keys.flows());
            if self.home {
                inv.key(self.keys.endpoints_rev());
            }
        }
        let (due, taken): (i64, Vec<redis::Value>) = inv.invoke_async(&mut conn).await?;
        Ok((due != 0, Fetched::from_take(taken, job.shared_list())))
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
}
