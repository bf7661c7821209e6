//! Reading and writing an endpoint's Recent Deliveries (`{p}:history:<endpoint>`, see
//! [`crate::history`]), redelivering one of them, and counting an endpoint's deliveries in
//! flight, for the admin page and the CLI.

use redis::AsyncCommands;

use super::{Queue, QueueError};
use crate::history::{DeliveryRecord, HISTORY_MAX_AGE, HISTORY_MAX_ENTRIES};
use crate::ids::{DeliveryId, EndpointId};
use crate::job::{DeliveryJob, Job};
use crate::timestamp::Timestamp;

/// How many entries a history list keeps and for how many ms: the two ARGV every script that
/// writes one takes after the entry.
pub(super) fn history_bounds() -> (usize, u64) {
    (HISTORY_MAX_ENTRIES, u64::try_from(HISTORY_MAX_AGE.as_millis()).unwrap_or(u64::MAX))
}

/// Adds an attempt's entry to a script call that records it in the same step (`retry.lua`,
/// `dead.lua`, `park.lua`): the history list as the next key, then the entry and the bounds as
/// the next ARGV.
pub(super) fn history_args(inv: &mut redis::ScriptInvocation<'_>, list: String, entry: &str) {
    let (keep, ms) = history_bounds();
    inv.key(list).arg(entry).arg(keep).arg(ms);
}

/// What [`Queue::redeliver_recorded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Enqueued again, with the same delivery id.
    Enqueued,
    /// No attempt of that delivery to that endpoint is recorded (within the last 200 and 7 days).
    NotFound,
    /// Recorded, but a Send test, or its event was over 16 KiB and not kept.
    NotRedeliverable,
}

impl Queue {
    /// Records attempts in an endpoint's history: `LPUSH` (in the order given, so the last one
    /// given is the newest), `LTRIM` to [`HISTORY_MAX_ENTRIES`], `PEXPIRE` [`HISTORY_MAX_AGE`], in
    /// one `MULTI`. The worker records in its delivery scripts instead; this is for Send test and
    /// tests.
    pub async fn record_history(
        &self,
        endpoint: &EndpointId,
        entries: &[DeliveryRecord],
    ) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let encoded: Vec<String> = entries.iter().map(DeliveryRecord::encode).collect();
        self.record_history_encoded(endpoint, &encoded).await
    }

    /// [`Queue::record_history`] of entries already encoded (see
    /// [`crate::history::encode_attempt`]).
    pub async fn record_history_encoded(
        &self,
        endpoint: &EndpointId,
        encoded: &[String],
    ) -> Result<(), QueueError> {
        if encoded.is_empty() {
            return Ok(());
        }
        let key = self.keys.history(endpoint.as_str());
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .lpush(&key, encoded)
            .ignore()
            .ltrim(&key, 0, HISTORY_MAX_ENTRIES as isize - 1)
            .ignore()
            .pexpire(&key, HISTORY_MAX_AGE.as_millis() as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// An endpoint's recorded attempts, newest first, at most `limit` (and at most
    /// [`HISTORY_MAX_ENTRIES`]); entries older than [`HISTORY_MAX_AGE`] or unreadable are skipped.
    pub async fn recent_deliveries(
        &self,
        endpoint: &EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, QueueError> {
        let limit = limit.min(HISTORY_MAX_ENTRIES);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<u8>> =
            conn.lrange(self.keys.history(endpoint.as_str()), 0, limit as isize - 1).await?;
        let now = Timestamp::now();
        Ok(raw.iter().filter_map(|r| DeliveryRecord::decode(r)).filter(|r| r.is_fresh(now)).collect())
    }

    /// Redeliver: enqueues the newest recorded attempt of `delivery` to `endpoint` again, with the
    /// same delivery id (see [`Queue::redeliver`]). The one path of the API, the page and the CLI.
    pub async fn redeliver_recorded(
        &self,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
    ) -> Result<Redelivery, QueueError> {
        let records = self.recent_deliveries(endpoint, HISTORY_MAX_ENTRIES).await?;
        let mut found = false;
        let mut job = None;
        for r in records.into_iter().filter(|r| &r.delivery_id == delivery) {
            found = true;
            if r.redeliverable() {
                job = r.redelivery_job();
                if job.is_some() {
                    break;
                }
            }
        }
        match job {
            Some(job) => {
                self.redeliver(&job).await?;
                Ok(Redelivery::Enqueued)
            }
            None if found => Ok(Redelivery::NotRedeliverable),
            None => Ok(Redelivery::NotFound),
        }
    }

    /// Enqueues `job` again the way a dead-letter replay does (`dlq replay`): the same delivery
    /// id, onto the retry list (the ready list when that is empty); the worker then admits it
    /// like any delivery (lanes, breaker, pacing).
    pub async fn redeliver(&self, job: &DeliveryJob) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .requeue_one
            .key(self.keys.ready())
            .key(self.keys.retry())
            .arg(Job::Delivery(job.clone()).encode())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// How many deliveries to `endpoint` the workers hold now (on their processing lists).
    pub async fn in_flight(&self, endpoint: &EndpointId) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let workers: Vec<String> = conn.zrange(self.keys.leases(), 0, -1).await?;
        if workers.is_empty() {
            return Ok(0);
        }
        let mut inv = self.scripts.count_in_flight.prepare_invoke();
        for w in &workers {
            inv.key(self.keys.processing(w));
        }
        inv.arg(format!("\"endpoint_id\":\"{}\"", endpoint.as_str()));
        Ok(inv.invoke_async(&mut conn).await?)
    }
}
