//! The dead-letter queue: deliveries that failed for good, and jobs that could not be read.
//!
//! `{p}:dlq` lists the ids, newest first; `{p}:dlq:<id>` is a hash an engineer can read with
//! `HGETALL`. Its `replay_job` field is the job to re-enqueue (same delivery id, fresh attempt
//! count), so a replay is one `RPUSH` of that field to the ready list.

use std::collections::{HashMap, HashSet};

use redis::AsyncCommands;
use serde::Serialize;

use super::{Queue, QueueError, WorkerId};
use crate::ids::EndpointId;
use crate::job::{AttemptRecord, DeliveryJob};
use crate::timestamp::Timestamp;

/// What the worker writes when it gives up on a job.
#[derive(Debug, Clone)]
pub struct DeadLetterDraft {
    /// The delivery id, or a fresh `job_<ULID>` for a job that could not be decoded.
    pub id: String,
    pub reason: String,
    /// The delivery, when the job could be decoded as one.
    pub delivery: Option<DeliveryJob>,
}

/// A dead letter as read back from Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub reason: String,
    pub failed_at: String,
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event_kind: Option<String>,
    pub endpoint_id: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    /// The job as it was when it died (raw, possibly not even JSON for a poison job).
    pub job: String,
    /// Whether `replay` can re-enqueue it.
    pub replayable: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    Replayed,
    NotFound,
    /// A poison job with nothing decodable to replay.
    NotReplayable,
}

/// Which dead letters a bulk replay takes: every one, or those of one endpoint, or those that
/// failed at or after a time, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    pub endpoint_id: Option<EndpointId>,
    pub since: Option<Timestamp>,
}

impl ReplayFilter {
    fn is_empty(&self) -> bool {
        self.endpoint_id.is_none() && self.since.is_none()
    }

    /// Whether an entry with these `endpoint_id` and `failed_at` fields is taken.
    fn matches(&self, endpoint_id: Option<&str>, failed_at: Option<&str>) -> bool {
        let endpoint_ok = self.endpoint_id.as_ref().is_none_or(|e| endpoint_id == Some(e.as_str()));
        let time_ok = self
            .since
            .is_none_or(|t| failed_at.and_then(|f| f.parse::<Timestamp>().ok()).is_some_and(|f| f >= t));
        endpoint_ok && time_ok
    }
}

/// What a bulk replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Entries put back on the ready list.
    pub replayed: usize,
    /// Matching entries left in place: poison jobs with nothing decodable to replay.
    pub not_replayable: usize,
}

/// How many entries' fields a bulk replay reads per round trip when it filters.
const FILTER_CHUNK: usize = 500;

impl DeadLetter {
    fn from_hash(id: String, raw: HashMap<String, Vec<u8>>) -> Self {
        // Fields are read as bytes: a poison job's `job` field need not be UTF-8.
        let mut h: HashMap<String, String> =
            raw.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
        let attempts = h.get("attempts").and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default();
        DeadLetter {
            id,
            reason: h.remove("reason").unwrap_or_default(),
            failed_at: h.remove("failed_at").unwrap_or_default(),
            delivery_id: h.remove("delivery_id"),
            event_id: h.remove("event_id"),
            event_kind: h.remove("event_kind"),
            endpoint_id: h.remove("endpoint_id"),
            attempts,
            job: h.remove("job").unwrap_or_default(),
            replayable: h.contains_key("replay_job"),
        }
    }
}

impl Queue {
    /// Moves a job from the worker's processing list into the dead-letter queue.
    /// `false` if the lease was lost (someone else holds the job now).
    pub async fn dead_letter(
        &self,
        worker: &WorkerId,
        raw: &[u8],
        draft: &DeadLetterDraft,
    ) -> Result<bool, QueueError> {
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("id", draft.id.clone().into_bytes()),
            ("reason", draft.reason.clone().into_bytes()),
            ("failed_at", Timestamp::now().to_string().into_bytes()),
            ("job", raw.to_vec()),
        ];
        if let Some(d) = &draft.delivery {
            fields.push(("delivery_id", d.delivery_id.to_string().into_bytes()));
            fields.push(("event_id", d.event.id.to_string().into_bytes()));
            fields.push(("event_kind", d.event.kind().to_string().into_bytes()));
            fields.push(("endpoint_id", d.endpoint_id.to_string().into_bytes()));
            fields.push(("attempts", serde_json::to_vec(&d.attempts).unwrap_or_default()));
            fields.push(("replay_job", crate::job::Job::Delivery(d.for_replay()).encode().into_bytes()));
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.dead.key(self.keys.processing(worker.as_str()));
        inv.key(self.keys.dlq()).key(self.keys.dlq_entry(&draft.id)).arg(raw).arg(&draft.id);
        for (k, v) in &fields {
            inv.arg(*k).arg(v);
        }
        let done: i64 = inv.invoke_async(&mut conn).await?;
        Ok(done == 1)
    }

    /// Dead letters, newest first, `count` of them from `offset`.
    pub async fn dead_letters(&self, offset: usize, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let stop = isize::try_from(offset + count).unwrap_or(isize::MAX) - 1;
        let ids: Vec<String> =
            conn.lrange(self.keys.dlq(), isize::try_from(offset).unwrap_or(isize::MAX), stop).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.dlq_entry(id));
        }
        let hashes: Vec<HashMap<String, Vec<u8>>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .map(|(id, h)| DeadLetter::from_hash(id, h))
            .collect())
    }

    /// One dead letter by id.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, Vec<u8>> = conn.hgetall(self.keys.dlq_entry(id)).await?;
        Ok((!h.is_empty()).then(|| DeadLetter::from_hash(id.to_owned(), h)))
    }

    /// Re-enqueues one dead letter with a fresh attempt count and the same delivery id.
    pub async fn replay(&self, id: &str) -> Result<ReplayOutcome, QueueError> {
        let mut conn = self.conn.clone();
        let r: i64 = self
            .scripts
            .replay
            .key(self.keys.dlq())
            .key(self.keys.dlq_entry(id))
            .key(self.keys.ready())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(match r {
            1 => ReplayOutcome::Replayed,
            0 => ReplayOutcome::NotFound,
            _ => ReplayOutcome::NotReplayable,
        })
    }

    /// Replays every replayable dead letter: [`Queue::replay_matching`] with an empty filter.
    pub async fn replay_all(&self) -> Result<ReplaySummary, QueueError> {
        self.replay_matching(&ReplayFilter::default()).await
    }

    /// Replays each dead letter that matches `filter`, once. The ids are read once, up front:
    /// a replayed delivery that fails again while this runs goes back to the head of the list,
    /// and must wait for the next call rather than be replayed again by this one.
    pub async fn replay_matching(&self, filter: &ReplayFilter) -> Result<ReplaySummary, QueueError> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn.lrange(self.keys.dlq(), 0, -1).await?;
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let mut summary = ReplaySummary::default();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let matching: Vec<&String> = if filter.is_empty() {
                chunk.iter().collect()
            } else {
                let mut pipe = redis::pipe();
                for id in chunk {
                    pipe.hmget(self.keys.dlq_entry(id), &["endpoint_id", "failed_at"]);
                }
                let fields: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
                chunk
                    .iter()
                    .zip(fields)
                    .filter(|(_, (endpoint, failed_at))| {
                        filter.matches(endpoint.as_deref(), failed_at.as_deref())
                    })
                    .map(|(id, _)| id)
                    .collect()
            };
            for id in matching {
                match self.replay(id).await? {
                    ReplayOutcome::Replayed => summary.replayed += 1,
                    ReplayOutcome::NotReplayable => summary.not_replayable += 1,
                    ReplayOutcome::NotFound => {}
                }
            }
        }
        Ok(summary)
    }

    /// Deletes one dead letter. `false` if there was none.
    pub async fn purge(&self, id: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let (removed, _): (i64, i64) = redis::pipe()
            .atomic()
            .del(self.keys.dlq_entry(id))
            .lrem(self.keys.dlq(), 0, id)
            .query_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    /// Deletes every dead letter; returns how many.
    pub async fn purge_all(&self) -> Result<usize, QueueError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.lrange(self.keys.dlq(), 0, -1).await?;
        let mut n = 0;
        for id in ids {
            if self.purge(&id).await? {
                n += 1;
            }
        }
        Ok(n)
    }
}
