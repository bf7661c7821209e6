//! The dead-letter queue: deliveries that failed for good, and jobs that could not be read.
//!
//! `{p}:dlq` lists the ids, newest first; `{p}:dlq:<id>` is a hash an engineer can read with
//! `HGETALL`. A delivery's entry keeps its ids, attempts, replays and `body`, the id of its
//! event's JSON in `{p}:bodies` (kept once however many deliveries of the event wait or died;
//! see [`crate::job::StoredDelivery`]): the job as it died (`dlq show`) and the job a replay
//! re-enqueues (same delivery id, fresh attempt count, pushed to the retry list, or the ready
//! list when that is empty) are built from them in Redis. A job that could not be decoded keeps
//! its bytes in `job`; entries written before bodies were kept once have `job` and `replay_job`.
//!
//! Readers never carry a job whole: a poison job is dead-lettered as it came, at any size. Lists
//! are [`DeadLetterSummary`]s read with `HMGET` (no `job`, no `replay_job`, texts cut to
//! [`SUMMARY_TEXT_MAX`]); one entry read in full has its `job` cut to [`JOB_SHOW_MAX`] in Redis.

use std::collections::HashSet;

use redis::AsyncCommands;
use serde::Serialize;

use super::{Claim, Fetched, MAX_JOB_BYTES, Queue, QueueError};
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

/// Most bytes of a summary's `reason` and `last_error`; longer ones are cut and end in `…`.
pub const SUMMARY_TEXT_MAX: usize = 1024;

/// Most bytes of the `job` of a dead letter read in full ([`Queue::dead_letter_by_id`]).
pub const JOB_SHOW_MAX: usize = 64 * 1024;

/// The fields a summary reads, in this order (`read_dead.lua` reads the same, in the same order).
const SUMMARY_FIELDS: [&str; 7] =
    ["reason", "failed_at", "delivery_id", "event_id", "event_kind", "endpoint_id", "attempts"];

/// A dead letter as read back from Redis, its job cut to [`JOB_SHOW_MAX`] bytes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The job as it was when it died (raw, possibly not even JSON for a poison job): its first
    /// [`JOB_SHOW_MAX`] bytes at most.
    pub job: String,
    /// Whether `job` is only the start of the stored job.
    pub job_truncated: bool,
    /// The stored job's length in bytes.
    pub job_bytes: u64,
    /// Whether `replay` can re-enqueue it.
    pub replayable: bool,
}

/// One line of a dead-letter list: what failed, when, why, and how the last attempt ended —
/// never the job itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterSummary {
    pub id: String,
    /// Cut to [`SUMMARY_TEXT_MAX`] bytes.
    pub reason: String,
    pub failed_at: String,
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event_kind: Option<String>,
    pub endpoint_id: Option<String>,
    /// How many attempts were made.
    pub attempt_count: usize,
    /// The last attempt's HTTP status or SMTP reply code, when the receiver answered.
    pub last_status: Option<u16>,
    /// The last attempt's error, cut to [`SUMMARY_TEXT_MAX`] bytes.
    pub last_error: Option<String>,
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

/// Which dead letters a bulk replay (or a filtered list) takes: every one, or those of one
/// endpoint, or those that failed at or after a time, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    pub endpoint_id: Option<EndpointId>,
    pub since: Option<Timestamp>,
}

impl ReplayFilter {
    /// Whether it picks every dead letter.
    pub fn is_empty(&self) -> bool {
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Entries put back on the ready list.
    pub replayed: usize,
    /// Matching entries left in place: poison jobs with nothing decodable to replay.
    pub not_replayable: usize,
}

/// How many entries' fields a bulk replay reads per round trip when it filters.
const FILTER_CHUNK: usize = 500;

/// The [`SUMMARY_FIELDS`] of one entry, as read.
struct Fields(Vec<Option<Vec<u8>>>);

impl Fields {
    /// Field `i` of [`SUMMARY_FIELDS`] as text (a poison job's fields need not be UTF-8).
    fn text(&self, i: usize) -> Option<String> {
        self.0.get(i).cloned().flatten().map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn attempts(&self) -> Vec<AttemptRecord> {
        self.0
            .get(6)
            .and_then(Option::as_deref)
            .and_then(|a| serde_json::from_slice(a).ok())
            .unwrap_or_default()
    }
}

impl DeadLetterSummary {
    fn from_fields(id: String, f: &Fields, replayable: bool) -> Self {
        let attempts = f.attempts();
        let last = attempts.last();
        DeadLetterSummary {
            id,
            reason: cut(f.text(0).unwrap_or_default(), SUMMARY_TEXT_MAX),
            failed_at: f.text(1).unwrap_or_default(),
            delivery_id: f.text(2),
            event_id: f.text(3),
            event_kind: f.text(4),
            endpoint_id: f.text(5),
            attempt_count: attempts.len(),
            last_status: last.and_then(|a| a.status),
            last_error: last.and_then(|a| a.error.clone()).map(|e| cut(e, SUMMARY_TEXT_MAX)),
            replayable,
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// The start of a job as text: bytes cut inside a UTF-8 character at the end are dropped, other
/// invalid bytes shown as U+FFFD.
fn job_text(mut head: Vec<u8>, truncated: bool) -> String {
    if truncated
        && let Err(e) = std::str::from_utf8(&head)
        && e.error_len().is_none()
    {
        head.truncate(e.valid_up_to());
    }
    String::from_utf8_lossy(&head).into_owned()
}

impl Queue {
    /// Moves a job from the worker's processing list into the dead-letter queue.
    /// `false` if the lease was lost (someone else holds the job now).
    pub async fn dead_letter(&self, job: &Claim, draft: &DeadLetterDraft) -> Result<bool, QueueError> {
        self.dead_letter_recorded(job, draft, None).await
    }

    /// [`Queue::dead_letter`], and the last attempt's history entry (see
    /// [`crate::history::encode_attempt`]) joins the endpoint's Recent Deliveries in the same
    /// step.
    pub async fn dead_letter_recorded(
        &self,
        job: &Claim,
        draft: &DeadLetterDraft,
        history: Option<(&crate::ids::EndpointId, &str)>,
    ) -> Result<bool, QueueError> {
        Ok(self.dead_letter_taking(job, draft, history, 0).await?.0)
    }

    /// [`Queue::dead_letter_recorded`], taking up to `take` next jobs for the slot the job frees
    /// in the same step, as an acknowledgement does (see [`Queue::ack_delivered_many`]).
    pub async fn dead_letter_taking(
        &self,
        job: &Claim,
        draft: &DeadLetterDraft,
        history: Option<(&crate::ids::EndpointId, &str)>,
        take: usize,
    ) -> Result<(bool, Fetched), QueueError> {
        // A delivery's entry keeps no copy of its job: its ids, attempts and replays, and its
        // event once in `{p}:bodies` (`body`), build it again for `dlq show` and a replay
        // (`delivery_job` in prelude.lua). A job that could not be decoded is kept as it came.
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("id", draft.id.clone().into_bytes()),
            ("reason", draft.reason.clone().into_bytes()),
            ("failed_at", Timestamp::now().to_string().into_bytes()),
        ];
        let mut body = None;
        match &draft.delivery {
            Some(d) => {
                let stored = d.stored();
                fields.push(("delivery_id", d.delivery_id.to_string().into_bytes()));
                fields.push(("event_id", d.event.id.to_string().into_bytes()));
                fields.push(("event_kind", d.event.kind().to_string().into_bytes()));
                fields.push(("endpoint_id", d.endpoint_id.to_string().into_bytes()));
                fields.push(("attempts", serde_json::to_vec(&d.attempts).unwrap_or_default()));
                fields.push(("replays", d.replays.to_string().into_bytes()));
                body = Some((stored.body_id, stored.body));
            }
            None => fields.push(("job", job.bytes().to_vec())),
        }
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.dead.key(job.list());
        inv.key(self.keys.dlq()).key(self.keys.dlq_entry(&draft.id)).arg(job.bytes()).arg(&draft.id);
        match history {
            Some((endpoint, entry)) => {
                super::history::history_args(&mut inv, self.keys.history(endpoint.as_str()), entry);
            }
            // No entry: the list is named (every script's keys are declared) but not written.
            None => {
                inv.key(self.keys.dlq()).arg("").arg(0).arg(0);
            }
        }
        let (body_id, body) = body.unwrap_or_default();
        inv.key(self.keys.bodies()).key(self.keys.body_refs()).arg(body_id).arg(body);
        inv.arg(take).arg(MAX_JOB_BYTES);
        if take > 0 {
            inv.key(self.keys.ready()).key(self.keys.retry()).key(self.keys.flows());
            if self.home {
                inv.key(self.keys.endpoints_rev());
            }
        }
        for (k, v) in &fields {
            inv.arg(*k).arg(v);
        }
        let (done, taken): (i64, Vec<redis::Value>) = inv.invoke_async(&mut conn).await?;
        Ok((done == 1, Fetched::from_take(taken, job.shared_list())))
    }

    /// The ids of dead letters, newest first, `count` of them from `offset`.
    async fn dead_letter_ids(&self, offset: usize, count: usize) -> Result<Vec<String>, QueueError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let stop = isize::try_from(offset.saturating_add(count)).unwrap_or(isize::MAX) - 1;
        Ok(conn.lrange(self.keys.dlq(), isize::try_from(offset).unwrap_or(isize::MAX), stop).await?)
    }

    /// Summaries of dead letters, newest first, `count` of them from `offset`: what lists show.
    /// One round trip for the ids, one for the fields (`HMGET` and `HEXISTS replay_job`).
    pub async fn dead_letter_summaries(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetterSummary>, QueueError> {
        let ids = self.dead_letter_ids(offset, count).await?;
        self.summaries_of(ids).await
    }

    /// Summaries of the dead letters `filter` picks (an endpoint, failed since a time), newest
    /// first, `count` of them from `offset` among the matching: what `dlq list --endpoint
    /// --since` and `GET /api/dlq?endpoint_id=&since=` show. Reads the id list and two fields per
    /// entry (in chunks), then the page's summaries.
    pub async fn dead_letter_summaries_matching(
        &self,
        filter: &ReplayFilter,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetterSummary>, QueueError> {
        if filter.is_empty() {
            return self.dead_letter_summaries(offset, count).await;
        }
        let ids = self.matching_ids(filter).await?;
        self.summaries_of(ids.into_iter().skip(offset).take(count).collect()).await
    }

    /// The ids of the dead letters `filter` picks, newest first, each once.
    async fn matching_ids(&self, filter: &ReplayFilter) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn.lrange(self.keys.dlq(), 0, -1).await?;
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        if filter.is_empty() {
            return Ok(ids);
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hmget(self.keys.dlq_entry(id), &["endpoint_id", "failed_at"]);
            }
            let fields: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
            out.extend(
                chunk
                    .iter()
                    .zip(fields)
                    .filter(|(_, (endpoint, failed_at))| {
                        filter.matches(endpoint.as_deref(), failed_at.as_deref())
                    })
                    .map(|(id, _)| id.clone()),
            );
        }
        Ok(out)
    }

    /// The summaries of these entries, in this order (entries gone since are left out).
    async fn summaries_of(&self, ids: Vec<String>) -> Result<Vec<DeadLetterSummary>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hmget(self.keys.dlq_entry(id), &SUMMARY_FIELDS)
                .hexists(self.keys.dlq_entry(id), "replay_job")
                .hexists(self.keys.dlq_entry(id), "body");
        }
        let mut conn = self.conn.clone();
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, pair) in ids.into_iter().zip(replies.chunks(3)) {
            let [fields, replay_job, body] = pair else { continue };
            let fields = Fields(redis::from_redis_value_ref(fields).map_err(redis::RedisError::from)?);
            // An entry purged or replayed since the ids were read has no fields left.
            if fields.0.iter().all(Option::is_none) {
                continue;
            }
            let replay_job: bool =
                redis::from_redis_value_ref(replay_job).map_err(redis::RedisError::from)?;
            let body: bool = redis::from_redis_value_ref(body).map_err(redis::RedisError::from)?;
            let replayable = replay_job || body;
            out.push(DeadLetterSummary::from_fields(id, &fields, replayable));
        }
        Ok(out)
    }

    /// Dead letters in full (each job cut to [`JOB_SHOW_MAX`]), newest first, `count` of them
    /// from `offset`: one round trip per entry, for tools and tests that need every attempt.
    /// Lists for people use [`Queue::dead_letter_summaries`].
    pub async fn dead_letters(&self, offset: usize, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        for id in self.dead_letter_ids(offset, count).await? {
            out.extend(self.dead_letter_by_id(&id).await?);
        }
        Ok(out)
    }

    /// One dead letter by id, its job cut to [`JOB_SHOW_MAX`] bytes in Redis (`read_dead.lua`),
    /// so a huge poison job never crosses the wire whole.
    pub async fn dead_letter_by_id(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let mut conn = self.conn.clone();
        let reply: Option<Vec<Option<Vec<u8>>>> = self
            .scripts
            .read_dead
            .key(self.keys.dlq_entry(id))
            .key(self.keys.bodies())
            .arg(JOB_SHOW_MAX)
            .invoke_async(&mut conn)
            .await?;
        let Some(mut reply) = reply else { return Ok(None) };
        // SUMMARY_FIELDS, then replayable, the job's head, the job's length.
        reply.resize(SUMMARY_FIELDS.len() + 3, None);
        let rest = reply.split_off(SUMMARY_FIELDS.len());
        let f = Fields(reply);
        let [replayable, head, len] = <[Option<Vec<u8>>; 3]>::try_from(rest).unwrap_or_default();
        let job_bytes = len.and_then(|l| String::from_utf8(l).ok()).and_then(|l| l.parse().ok()).unwrap_or(0);
        let head = head.unwrap_or_default();
        let job_truncated = (head.len() as u64) < job_bytes;
        Ok(Some(DeadLetter {
            id: id.to_owned(),
            reason: f.text(0).unwrap_or_default(),
            failed_at: f.text(1).unwrap_or_default(),
            delivery_id: f.text(2),
            event_id: f.text(3),
            event_kind: f.text(4),
            endpoint_id: f.text(5),
            attempts: f.attempts(),
            job: job_text(head, job_truncated),
            job_truncated,
            job_bytes,
            replayable: replayable.as_deref() == Some(b"1"),
        }))
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
            .key(self.keys.retry())
            .key(self.keys.bodies())
            .key(self.keys.body_refs())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok(match r {
            1 => ReplayOutcome::Replayed,
            0 => ReplayOutcome::NotFound,
            _ => ReplayOutcome::NotReplayable,
        })
    }

    /// Replays each dead letter that matches `filter`, once. The ids are read once, up front:
    /// a replayed delivery that fails again while this runs goes back to the head of the list,
    /// and must wait for the next call rather than be replayed again by this one.
    pub async fn replay_matching(&self, filter: &ReplayFilter) -> Result<ReplaySummary, QueueError> {
        let mut summary = ReplaySummary::default();
        for id in self.matching_ids(filter).await? {
            match self.replay(&id).await? {
                ReplayOutcome::Replayed => summary.replayed += 1,
                ReplayOutcome::NotReplayable => summary.not_replayable += 1,
                ReplayOutcome::NotFound => {}
            }
        }
        Ok(summary)
    }

    /// Deletes one dead letter. `false` if there was none.
    pub async fn purge(&self, id: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let removed: i64 = self
            .scripts
            .purge
            .key(self.keys.dlq())
            .key(self.keys.dlq_entry(id))
            .key(self.keys.bodies())
            .key(self.keys.body_refs())
            .arg(id)
            .invoke_async(&mut conn)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(cut("short".into(), 10), "short");
        let cut_text = cut("é".repeat(10), 10);
        assert_eq!(cut_text, "ééé…");
    }

    #[test]
    fn a_job_cut_inside_a_character_drops_the_partial_character() {
        let bytes = "aé".as_bytes()[..2].to_vec();
        assert_eq!(job_text(bytes.clone(), true), "a");
        assert_eq!(job_text(bytes, false), "a\u{FFFD}");
    }
}
