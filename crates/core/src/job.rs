//! Jobs as they sit in Redis: a tagged, versioned JSON enum. A new shape gets a new tag
//! (`delivery.v2`) rather than changing an old one, so jobs already queued still decode during
//! a rolling deploy. Jobs on the ready and retry lists carry the event itself, so a delivery
//! needs no other key to run; a delivery that waits in a lane or lies in the dead-letter queue
//! keeps its event once, by reference ([`StoredDelivery`]).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::{DeliveryId, EndpointId};
use crate::timestamp::Timestamp;
use crate::trace::TraceParent;

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

/// How [`Job::encode`] starts a [`Job::Delivery`]: `{"type":"delivery.v1",` (serde writes an
/// internally tagged enum's tag first).
const DELIVERY_V1_START: &[u8] = br#"{"type":"delivery.v1","#;

impl EventJob {
    /// A published event's job.
    pub fn new(event: Event) -> Self {
        Self { event, endpoints: None, origin: None, traceparent: None }
    }

    /// A published event's job in the trace of `traceparent` (the publish span).
    pub fn traced(event: Event, traceparent: Option<TraceParent>) -> Self {
        Self { traceparent, ..Self::new(event) }
    }

    /// The notifier's own event's job (a breaker's announcement).
    pub fn notifier(event: Event) -> Self {
        Self { event, endpoints: None, origin: Some(JobOrigin::Notifier), traceparent: None }
    }

    /// Checks the event as its origin allows: a published event as [`Event::validate`] does
    /// (kinds only the notifier makes refused), the notifier's own by its fields alone.
    pub fn validate(&self) -> Result<(), crate::event::EventError> {
        match self.origin {
            Some(JobOrigin::Notifier) => self.event.validate_fields(),
            None => self.event.validate(),
        }
    }
}

impl Job {
    /// Decodes a job read from Redis. An error here marks a poison job.
    pub fn decode(raw: &[u8]) -> Result<Job, serde_json::Error> {
        // serde reads an internally tagged enum by first copying the whole job into an untyped
        // buffer, then reading that: most of the cost of a delivery job's decode. A delivery job
        // as `encode` writes it names its tag first, so it is read straight into its struct
        // (which ignores the `type` field); any other spelling takes the general path.
        if raw.starts_with(DELIVERY_V1_START) {
            return serde_json::from_slice(raw).map(Job::Delivery);
        }
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
    /// Queue shards: set on the copy another shard's fan-out forwarded to this one (see
    /// [`crate::shards`]): only these endpoints (those homed here when it was routed) get it.
    /// Absent on a published event, which goes to every subscribed endpoint of its shard and is
    /// forwarded to the other shards' endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<EndpointId>>,
    /// `"notifier"` on the notifier's own event jobs (a breaker's `endpoint.health_changed`
    /// announcement, and copies forwarded to other shards); absent on published ones. A kind
    /// only the notifier makes ([`crate::event::EventKind::is_notifier_only`]) in a job without
    /// it was pushed by hand: workers dead-letter it, never deliver it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<JobOrigin>,
    /// W3C trace context of the publish (the producer's span, or the caller's own), when the
    /// publisher traces: fan-out's span is its child. Absent otherwise (and in jobs written
    /// before traces): fan-out then starts a trace of its own, when the worker traces.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub traceparent: Option<TraceParent>,
}

/// A job's trace context as read: one that is not a valid `traceparent` (written by hand, by
/// some other tool) is dropped, never a reason to refuse the job (it is traced as a new root).
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TraceParent>, D::Error> {
    let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// Who made an event job (see [`EventJob::origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobOrigin {
    Notifier,
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
    /// W3C trace context of the fan-out that made this delivery, when the worker traced it:
    /// every attempt's span is its child, on every retry, park and replay. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub traceparent: Option<TraceParent>,
    /// The send slot (Unix µs, Redis clock) its endpoint's lane gave it when it released it for
    /// its turn under the rate limit (`release.lua` writes it into the released job); never
    /// written back: a job the worker writes again takes a new slot.
    #[serde(default, skip_serializing)]
    pub slot: Option<u64>,
}

impl DeliveryJob {
    pub fn new(event: Event, endpoint_id: EndpointId) -> Self {
        Self {
            delivery_id: DeliveryId::generate(),
            endpoint_id,
            event,
            attempts: Vec::new(),
            replays: 0,
            traceparent: None,
            slot: None,
        }
    }

    /// The number of the next attempt, 1-based.
    pub fn next_attempt(&self) -> u32 {
        u32::try_from(self.attempts.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The job to re-enqueue on replay: same delivery id, a fresh attempt count.
    pub fn for_replay(&self) -> DeliveryJob {
        DeliveryJob {
            attempts: Vec::new(),
            replays: self.replays.saturating_add(1),
            slot: None,
            ..self.clone()
        }
    }
}

/// The tag of a [`StoredDelivery`]'s job; the scripts that read one back (`unref` in
/// `queue/prelude.lua`) look for exactly this start.
pub const DELIVERY_REF_START: &str = r#"{"type":"delivery_ref.v1","#;

#[cfg(feature = "consume")]
/// A delivery as it waits in an endpoint's lane or lies in the dead-letter queue: the job with
/// its event replaced by a reference, `"event":{"$ref":"<body_id>"}`, and the event's JSON kept
/// once in `{p}:bodies` under `body_id` (counted in `{p}:body_refs`), however many deliveries
/// of that event wait or died. The scripts that take it out of the lane or replay it put the
/// body back (`unref` in `queue/prelude.lua`): byte for byte the job [`Job::encode`] writes, so
/// the worker only ever reads full jobs. `body_id` is the event id and a hash of the body, so
/// an id published again later with other content never borrows the first one's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub job: String,
    pub body_id: String,
    pub body: String,
}

#[cfg(feature = "consume")]
/// The shape of a [`StoredDelivery`]'s job: [`DeliveryJob`]'s fields in its order, the event a
/// reference.
#[derive(Serialize)]
#[serde(tag = "type", rename = "delivery_ref.v1")]
struct DeliveryRef<'a> {
    delivery_id: &'a DeliveryId,
    endpoint_id: &'a EndpointId,
    event: EventRef<'a>,
    attempts: &'a [AttemptRecord],
    replays: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a TraceParent>,
}

#[cfg(feature = "consume")]
#[derive(Serialize)]
struct EventRef<'a> {
    #[serde(rename = "$ref")]
    body_id: &'a str,
}

#[cfg(feature = "consume")]
impl DeliveryJob {
    /// This delivery as a lane or a dead letter keeps it (see [`StoredDelivery`]).
    pub fn stored(&self) -> StoredDelivery {
        let body = serde_json::to_string(&self.event).unwrap_or_default();
        let body_id = body_id(&self.event, &body);
        let job = serde_json::to_string(&DeliveryRef {
            delivery_id: &self.delivery_id,
            endpoint_id: &self.endpoint_id,
            event: EventRef { body_id: &body_id },
            attempts: &self.attempts,
            replays: self.replays,
            traceparent: self.traceparent.as_ref(),
        })
        .unwrap_or_default();
        StoredDelivery { job, body_id, body }
    }
}

#[cfg(feature = "consume")]
/// The id `body` (`event`'s JSON) is kept under in `{p}:bodies` (see [`StoredDelivery`]): the
/// event id and the first 64 bits of the SHA-256 of the body, hex.
pub fn body_id(event: &Event, body: &str) -> String {
    use sha2::Digest as _;
    format!("{}:{}", event.id, hex::encode(&sha2::Sha256::digest(body.as_bytes())[..8]))
}

#[cfg(feature = "consume")]
/// A [`StoredDelivery`]'s job as read back from a lane (by tools and tests: workers never see
/// one, the release puts the body back first).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WaitingDelivery {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    /// The body id its event is kept under in `{p}:bodies`.
    pub body_id: String,
    pub attempts: Vec<AttemptRecord>,
    pub replays: u32,
}

#[cfg(feature = "consume")]
impl WaitingDelivery {
    /// Reads a lane entry: a stored delivery (`delivery_ref.v1`), or a full delivery job (as
    /// lanes held before bodies were kept once).
    pub fn decode(raw: &[u8]) -> Result<WaitingDelivery, serde_json::Error> {
        #[derive(Deserialize)]
        struct Shape {
            delivery_id: DeliveryId,
            endpoint_id: EndpointId,
            event: EventRefOwned,
            #[serde(default)]
            attempts: Vec<AttemptRecord>,
            #[serde(default)]
            replays: u32,
        }
        #[derive(Deserialize)]
        struct EventRefOwned {
            #[serde(rename = "$ref")]
            body_id: String,
        }
        if raw.starts_with(DELIVERY_REF_START.as_bytes()) {
            let s: Shape = serde_json::from_slice(raw)?;
            return Ok(WaitingDelivery {
                delivery_id: s.delivery_id,
                endpoint_id: s.endpoint_id,
                body_id: s.event.body_id,
                attempts: s.attempts,
                replays: s.replays,
            });
        }
        match Job::decode(raw)? {
            Job::Delivery(d) => {
                let body_id = d.stored().body_id;
                Ok(WaitingDelivery {
                    delivery_id: d.delivery_id,
                    endpoint_id: d.endpoint_id,
                    body_id,
                    attempts: d.attempts,
                    replays: d.replays,
                })
            }
            _ => Err(serde::de::Error::custom("not a delivery job")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> DeliveryJob {
        let event = Event::from_json(
            br#"{"event":"finding.new","tenant_id":"t1","finding":{"id":"F-1","title":"t",
                 "severity":"high","category":"c","affected":["a"],"remediation_url":"https://x.example/f"}}"#,
        )
        .expect("a valid event");
        let mut job = DeliveryJob::new(event, "ep_01JTEST".parse().expect("id"));
        job.attempts.push(AttemptRecord {
            attempt: 1,
            at: Timestamp::now(),
            duration_ms: 3,
            status: Some(503),
            error: Some("HTTP 503".into()),
        });
        job
    }

    #[test]
    fn a_delivery_job_takes_the_direct_path_and_reads_back_the_same() {
        let job = Job::Delivery(delivery());
        let raw = job.encode();
        assert!(raw.as_bytes().starts_with(DELIVERY_V1_START), "tag first: {raw}");
        assert_eq!(Job::decode(raw.as_bytes()).expect("decodes"), job);
        // The general reading of the same bytes agrees.
        assert_eq!(serde_json::from_slice::<Job>(raw.as_bytes()).expect("decodes"), job);
    }

    #[test]
    fn a_delivery_job_spelled_otherwise_still_decodes() {
        let job = Job::Delivery(delivery());
        let value = serde_json::to_value(&job).expect("a value");
        let serde_json::Value::Object(map) = value else { unreachable!("a job is an object") };
        // The tag last, keys in reverse order, spaces: the general path.
        let mut reordered: Vec<(String, serde_json::Value)> = map.into_iter().collect();
        reordered.reverse();
        let text = format!(
            "{{ {} }}",
            reordered.iter().map(|(k, v)| format!("{k:?} : {v}")).collect::<Vec<_>>().join(" , ")
        );
        assert!(!text.as_bytes().starts_with(DELIVERY_V1_START));
        assert_eq!(Job::decode(text.as_bytes()).expect("decodes"), job);
    }

    /// What `unref` in `queue/prelude.lua` does, for the test below.
    fn unref(stored: &StoredDelivery) -> String {
        let job = stored.job.strip_prefix(DELIVERY_REF_START).expect("the ref tag first");
        let reference = format!(r#""event":{{"$ref":"{}"}}"#, stored.body_id);
        let at = job.find(&reference).expect("the reference");
        format!(
            "{}{}\"event\":{}{}",
            std::str::from_utf8(DELIVERY_V1_START).expect("ASCII"),
            &job[..at],
            stored.body,
            &job[at + reference.len()..]
        )
    }

    #[test]
    fn a_stored_delivery_put_back_together_is_the_job_byte_for_byte() {
        let d = delivery();
        let stored = d.stored();
        assert!(stored.job.starts_with(DELIVERY_REF_START), "{}", stored.job);
        assert!(!stored.job.contains("finding.new"), "no event in the reference: {}", stored.job);
        assert!(stored.body_id.starts_with(&format!("{}:", d.event.id)));
        assert_eq!(unref(&stored), Job::Delivery(d.clone()).encode());
        let waiting = WaitingDelivery::decode(stored.job.as_bytes()).expect("reads back");
        assert_eq!((&waiting.delivery_id, &waiting.body_id), (&d.delivery_id, &stored.body_id));
        assert_eq!(waiting.attempts, d.attempts);
        let full = WaitingDelivery::decode(Job::Delivery(d.clone()).encode().as_bytes()).expect("a full job");
        assert_eq!(full, waiting);
        // Another body under the same event id gets another body id.
        let mut other = d.clone();
        other.event.tenant_id = "t2".into();
        assert_ne!(other.stored().body_id, stored.body_id);
        // The replay form keeps the body id.
        assert_eq!(d.for_replay().stored().body_id, stored.body_id);
    }

    #[test]
    fn a_trace_context_is_carried_and_absent_when_not_traced() {
        let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("tp");
        let mut d = delivery();
        assert!(!Job::Delivery(d.clone()).encode().contains("traceparent"), "absent when not traced");
        d.traceparent = Some(tp);
        let raw = Job::Delivery(d.clone()).encode();
        assert!(raw.contains(r#""traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01""#));
        assert_eq!(Job::decode(raw.as_bytes()).expect("decodes"), Job::Delivery(d.clone()));
        // Through a lane or the dead-letter queue, and a replay, byte for byte.
        let stored = d.stored();
        assert_eq!(unref(&stored), raw);
        assert_eq!(d.for_replay().traceparent, Some(tp));
        let event = Job::Event(EventJob::traced(d.event.clone(), Some(tp)));
        assert_eq!(Job::decode(event.encode().as_bytes()).expect("decodes"), event);
        // An invalid one is dropped, not a reason to refuse the delivery.
        let bad = raw.replace("4bf92f3577b34da6", "nothex");
        let Job::Delivery(read) = Job::decode(bad.as_bytes()).expect("still decodes") else {
            panic!("a delivery")
        };
        assert_eq!((read.traceparent, read.delivery_id), (None, d.delivery_id));
    }

    #[test]
    fn other_jobs_and_poison_take_the_general_path() {
        let event = delivery().event;
        let job = Job::Event(EventJob::new(event));
        assert_eq!(Job::decode(job.encode().as_bytes()).expect("decodes"), job);
        assert!(Job::decode(br#"{"type":"delivery.v1","delivery_id":"dlv_1"}"#).is_err());
        assert!(Job::decode(br#"{"type":"delivery.v1","#).is_err());
        assert!(Job::decode(b"not json").is_err());
    }
}
