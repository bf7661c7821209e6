//! Jobs as they sit in Redis: a tagged, versioned JSON enum. A new shape gets a new tag
//! (`delivery.v2`) rather than changing an old one, so jobs already queued still decode during
//! a rolling deploy. Jobs carry the event itself, so a delivery needs no other key to run.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::{DeliveryId, EndpointId};
use crate::timestamp::Timestamp;

/// One job in the ready list, a processing list, the delayed set or a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Job {
    /// An accepted event, to be fanned out to its endpoints.
    #[serde(rename = "event.v1")]
    Event(EventJob),
    /// One (event, endpoint) delivery.
    #[serde(rename = "delivery.v1")]
    Delivery(DeliveryJob),
    /// A digest is due (its longest wait ran out, or its scan ended a short grace ago): flush it
    /// if its deadline is still this one.
    #[serde(rename = "digest_due.v1")]
    DigestDue(DigestDueJob),
    /// A flushed digest: turn its collected findings into one `finding.digest` delivery.
    #[serde(rename = "digest.v1")]
    Digest(DigestJob),
}

/// See [`Job::DigestDue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDueJob {
    pub digest: crate::digest::DigestRef,
    /// Why it is due: the longest wait ran out (default), or the scan ended.
    #[serde(default = "max_wait")]
    pub reason: crate::digest::DigestReason,
}

fn max_wait() -> crate::digest::DigestReason {
    crate::digest::DigestReason::MaxWait
}

/// See [`Job::Digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestJob {
    pub digest: crate::digest::DigestRef,
    pub reason: crate::digest::DigestReason,
}

impl Job {
    /// Decodes a job read from Redis. An error here marks a poison job.
    pub fn decode(raw: &[u8]) -> Result<Job, serde_json::Error> {
        serde_json::from_slice(raw)
    }

    pub fn encode(&self) -> String {
        // Serializing these plain data types cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJob {
    pub event: Event,
}

/// The state of one delivery, carried from attempt to attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event: Event,
    /// Every attempt so far, oldest first; `attempts.len()` is the number made.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// How many times this delivery was replayed from the dead-letter queue.
    #[serde(default)]
    pub replays: u32,
}

impl DeliveryJob {
    pub fn new(event: Event, endpoint_id: EndpointId) -> Self {
        Self { delivery_id: DeliveryId::generate(), endpoint_id, event, attempts: Vec::new(), replays: 0 }
    }

    /// The number of the next attempt, 1-based.
    pub fn next_attempt(&self) -> u32 {
        u32::try_from(self.attempts.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The job to re-enqueue on replay: same delivery id, a fresh attempt count.
    pub fn for_replay(&self) -> DeliveryJob {
        DeliveryJob { attempts: Vec::new(), replays: self.replays.saturating_add(1), ..self.clone() }
    }
}

/// One attempt: when, how long, and what came back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub at: Timestamp,
    pub duration_ms: u64,
    /// HTTP status, or SMTP reply code, when the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, for a failed attempt (receiver's error text, timeout, connection error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
