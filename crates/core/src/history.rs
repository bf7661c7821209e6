//! Recent Deliveries: every attempt to an endpoint (delivered or not), newest first, so a team
//! can see what was sent, what the receiver answered, and send it again.
//!
//! `{p}:history:<endpoint id>` is a LIST of [`DeliveryRecord`] JSON, newest first: each write is
//! `LPUSH`, `LTRIM` to [`HISTORY_MAX_ENTRIES`] and `PEXPIRE` [`HISTORY_MAX_AGE`], in the script
//! that records the attempt's outcome (so it costs no extra round trip), or as one `MULTI`
//! ([`crate::queue::Queue::record_history`]). Reads skip entries older than [`HISTORY_MAX_AGE`].
//!
//! A record is bounded: the response body is cut to [`RESPONSE_BODY_KEPT`] bytes, the error to
//! [`ERROR_KEPT`], and the event (kept so a delivery can be redelivered) only when its JSON is at
//! most [`EVENT_KEPT_MAX`] bytes. So one endpoint's history holds at most about
//! 200 × (16 KiB + 2 KiB) ≈ 3.6 MiB, and typically 200 × 2 KiB.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::job::{AttemptRecord, DeliveryJob};
use crate::timestamp::Timestamp;

/// Most entries one endpoint's history keeps (`LTRIM 0 199`).
pub const HISTORY_MAX_ENTRIES: usize = 200;

/// How long an entry is shown; the list also expires this long after its last write.
pub const HISTORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most bytes of the receiver's answer a record keeps.
pub const RESPONSE_BODY_KEPT: usize = 1024;

/// Most bytes of an attempt's error a record keeps.
pub const ERROR_KEPT: usize = 1024;

/// Largest event (as JSON) a record keeps for Redeliver; a bigger one is left out
/// (`event: null`, `event_omitted: true`) and that entry cannot be redelivered (its dead letter,
/// if it died, still can be replayed).
pub const EVENT_KEPT_MAX: usize = 16 * 1024;

/// Request headers whose values are signatures: shown as `****`.
pub const MASKED_HEADERS: [&str; 2] = ["x-coderaft-signature", "webhook-signature"];

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The receiver took it.
    Delivered,
    /// It failed and another attempt is scheduled.
    Retry,
    /// It failed for good: the delivery is in the dead-letter queue.
    Dead,
    /// It failed while the endpoint's breaker is open: the delivery waits in its lane.
    Parked,
    /// A Send test from the admin page or API (delivered or not: see `status` and `error`).
    Test,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry => "retry",
            AttemptResult::Dead => "dead",
            AttemptResult::Parked => "parked",
            AttemptResult::Test => "test",
        }
    }
}

impl std::fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt as Recent Deliveries shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryRecord {
    /// When the attempt started.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2026-04-28T07:12:43Z"))]
    pub at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "finding.new"))]
    pub event_kind: crate::event::EventKind,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub event_id: EventId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub delivery_id: DeliveryId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub endpoint_id: EndpointId,
    /// 1-based attempt number (counted afresh after a replay or redeliver).
    pub attempt: u32,
    pub result: AttemptResult,
    /// HTTP status or SMTP reply code, when the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, cut to [`ERROR_KEPT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The request headers we sent, in order, signature values masked. Empty for email.
    #[serde(default)]
    pub request_headers: Vec<(String, String)>,
    /// The first [`RESPONSE_BODY_KEPT`] bytes of the receiver's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Whether `response_body` is only the start of the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub response_truncated: bool,
    /// The event, for Redeliver; absent when larger than [`EVENT_KEPT_MAX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub event: Option<Event>,
    /// Whether the event was left out for its size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_omitted: bool,
}

impl DeliveryRecord {
    /// Builds the record of `attempt` of `job`: `headers` as sent (signature values are masked
    /// here), `response_body` as received (cut here).
    pub fn new<'h>(
        job: &DeliveryJob,
        attempt: &AttemptRecord,
        result: AttemptResult,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        response_body: Option<&str>,
    ) -> Self {
        let request_headers = headers
            .into_iter()
            .map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                let value = if MASKED_HEADERS.contains(&name.as_str()) {
                    "****".to_owned()
                } else {
                    value.to_owned()
                };
                (name, value)
            })
            .collect();
        let event_len = serde_json::to_vec(&job.event).map(|v| v.len()).unwrap_or(usize::MAX);
        let keep_event = event_len <= EVENT_KEPT_MAX;
        DeliveryRecord {
            at: attempt.at,
            event_kind: job.event.kind(),
            event_id: job.event.id.clone(),
            delivery_id: job.delivery_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            attempt: attempt.attempt,
            result,
            status: attempt.status,
            error: attempt.error.as_deref().map(|e| cut(e, ERROR_KEPT).0),
            duration_ms: attempt.duration_ms,
            request_headers,
            response_truncated: response_body.is_some_and(|b| b.len() > RESPONSE_BODY_KEPT),
            response_body: response_body.map(|b| cut(b, RESPONSE_BODY_KEPT).0),
            event: keep_event.then(|| job.event.clone()),
            event_omitted: !keep_event,
        }
    }

    /// The compact JSON stored in the history list.
    pub fn encode(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a stored entry; `None` for one that does not parse (skipped by readers).
    pub fn decode(raw: &[u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }

    /// Whether Redeliver can rebuild the delivery from this record.
    pub fn redeliverable(&self) -> bool {
        self.event.is_some() && self.result != AttemptResult::Test
    }

    /// The job Redeliver enqueues: the same delivery id, endpoint and event, a fresh attempt
    /// count (like a dead-letter replay). `None` when the event was not kept.
    pub fn redelivery_job(&self) -> Option<DeliveryJob> {
        let event = self.event.clone()?;
        Some(DeliveryJob {
            delivery_id: self.delivery_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event,
            attempts: Vec::new(),
            replays: 1,
            traceparent: None,
            slot: None,
        })
    }

    /// Whether the record is recent enough to show at `now`.
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now.unix_seconds() - self.at.unix_seconds() <= HISTORY_MAX_AGE.as_secs() as i64
    }
}

/// Health figures computed from an endpoint's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryHealth {
    /// Attempts recorded over the last 24 hours (at most [`HISTORY_MAX_ENTRIES`] are kept).
    pub attempts_24h: usize,
    /// Of those, delivered.
    pub delivered_24h: usize,
    /// `delivered_24h / attempts_24h`, absent without attempts.
    pub success_rate_24h: Option<f64>,
    /// The newest recorded error and when it happened.
    pub last_error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_error_at: Option<Timestamp>,
}

impl HistoryHealth {
    /// Figures over `records` (newest first) as of `now`. Send tests do not count.
    pub fn from_records(records: &[DeliveryRecord], now: Timestamp) -> Self {
        let day = now.unix_seconds() - 24 * 3600;
        let recent: Vec<&DeliveryRecord> = records
            .iter()
            .filter(|r| r.result != AttemptResult::Test && r.at.unix_seconds() >= day)
            .collect();
        let delivered = recent.iter().filter(|r| r.result == AttemptResult::Delivered).count();
        let last = records.iter().find(|r| r.result != AttemptResult::Test && r.error.is_some());
        HistoryHealth {
            attempts_24h: recent.len(),
            delivered_24h: delivered,
            success_rate_24h: (!recent.is_empty()).then(|| delivered as f64 / recent.len() as f64),
            last_error: last.and_then(|r| r.error.clone()),
            last_error_at: last.map(|r| r.at),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary; whether it was cut.
/// A record as the worker writes it: the same JSON as [`DeliveryRecord`], with the event copied
/// verbatim from the delivery job's bytes (no second serialisation of the event on the hot
/// path).
#[derive(Serialize)]
struct RecordOut<'a> {
    at: Timestamp,
    event_kind: crate::event::EventKind,
    event_id: &'a EventId,
    delivery_id: &'a DeliveryId,
    endpoint_id: &'a EndpointId,
    attempt: u32,
    result: AttemptResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    duration_ms: u64,
    request_headers: Vec<(&'a str, &'a str)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    response_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    event_omitted: bool,
}

/// The event of a delivery job, as raw JSON.
#[derive(Deserialize)]
struct RawJob<'a> {
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
}

/// Encodes the record of one attempt of `job` (fetched as `raw_job`) for the endpoint's history:
/// what [`DeliveryRecord::new`] then [`DeliveryRecord::encode`] give, at a fraction of the cost
/// (the event is copied from the job's bytes, not serialised again).
pub fn encode_attempt(
    raw_job: &[u8],
    job: &DeliveryJob,
    attempt: &AttemptRecord,
    result: AttemptResult,
    headers: &[(&'static str, String)],
    response_body: Option<&str>,
) -> String {
    let event = serde_json::from_slice::<RawJob<'_>>(raw_job).ok().map(|r| r.event);
    let keep = event.filter(|e| e.get().len() <= EVENT_KEPT_MAX);
    let request_headers = headers
        .iter()
        .map(|(name, value)| {
            let value = if MASKED_HEADERS.contains(name) { "****" } else { value.as_str() };
            (*name, value)
        })
        .collect();
    let out = RecordOut {
        at: attempt.at,
        event_kind: job.event.kind(),
        event_id: &job.event.id,
        delivery_id: &job.delivery_id,
        endpoint_id: &job.endpoint_id,
        attempt: attempt.attempt,
        result,
        status: attempt.status,
        error: attempt.error.as_deref().map(|e| prefix(e, ERROR_KEPT)),
        duration_ms: attempt.duration_ms,
        request_headers,
        response_truncated: response_body.is_some_and(|b| b.len() > RESPONSE_BODY_KEPT),
        response_body: response_body.map(|b| prefix(b, RESPONSE_BODY_KEPT)),
        event: keep,
        event_omitted: keep.is_none(),
    };
    // One buffer sized for the whole record up front (the event is most of it): no regrowing.
    let size = 512
        + keep.map_or(0, |e| e.get().len())
        + response_body.map_or(0, |b| b.len().min(RESPONSE_BODY_KEPT));
    let mut buf = Vec::with_capacity(size);
    if serde_json::to_writer(&mut buf, &out).is_err() {
        return String::new();
    }
    // serde_json writes only UTF-8.
    String::from_utf8(buf).unwrap_or_default()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn cut(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_owned(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_owned(), true)
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn the_workers_encoding_reads_back_as_the_same_record() {
        let event = crate::event::Event::from_json(
            br#"{"event":"finding.new","tenant_id":"t","finding":{"id":"F-1","title":"T","severity":"high","category":"c","affected":["a"],"remediation_url":"https://x.example.com/f"}}"#,
        )
        .expect("valid");
        let job = DeliveryJob::new(event, EndpointId::generate());
        let raw = crate::job::Job::Delivery(job.clone()).encode();
        let attempt = AttemptRecord {
            attempt: 1,
            at: Timestamp::now(),
            duration_ms: 12,
            status: Some(503),
            error: Some("é".repeat(ERROR_KEPT)),
        };
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-coderaft-signature", "sha256=abc".to_owned()),
            ("webhook-signature", "v1,abc".to_owned()),
        ];
        let body = "b".repeat(RESPONSE_BODY_KEPT + 10);
        let fast =
            encode_attempt(raw.as_bytes(), &job, &attempt, AttemptResult::Retry, &headers, Some(&body));
        let pairs = headers.iter().map(|(k, v)| (*k, v.as_str()));
        let slow = DeliveryRecord::new(&job, &attempt, AttemptResult::Retry, pairs, Some(&body));
        assert_eq!(DeliveryRecord::decode(fast.as_bytes()), Some(slow.clone()));
        assert!(slow.redeliverable() && slow.response_truncated);
        assert!(!fast.contains("sha256=abc") && !fast.contains("v1,abc"), "signatures masked: {fast}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> DeliveryJob {
        let event = Event::from_json(
            br#"{"event":"finding.new","tenant_id":"t1","finding":{"id":"F-1","title":"t",
                 "severity":"high","category":"c","affected":[],"remediation_url":"https://x.example/f"}}"#,
        )
        .expect("a valid event");
        DeliveryJob::new(event, "ep_01JTEST".parse().expect("id"))
    }

    fn attempt() -> AttemptRecord {
        AttemptRecord {
            attempt: 2,
            at: Timestamp::now(),
            duration_ms: 143,
            status: Some(500),
            error: Some("boom".into()),
        }
    }

    #[test]
    fn signatures_are_masked_and_the_body_cut() {
        let body = "x".repeat(5000);
        let r = DeliveryRecord::new(
            &job(),
            &attempt(),
            AttemptResult::Retry,
            [
                ("Content-Type", "application/json"),
                ("X-Coderaft-Signature", "sha256=abc"),
                ("webhook-signature", "v1,xyz"),
            ],
            Some(&body),
        );
        assert_eq!(r.request_headers[0], ("content-type".into(), "application/json".into()));
        assert_eq!(r.request_headers[1].1, "****");
        assert_eq!(r.request_headers[2].1, "****");
        assert_eq!(r.response_body.as_deref().map(str::len), Some(RESPONSE_BODY_KEPT));
        assert!(r.response_truncated);
        let back = DeliveryRecord::decode(r.encode().as_bytes()).expect("round trip");
        assert_eq!(back, r);
        assert!(!r.encode().contains("sha256=abc") && !r.encode().contains("v1,xyz"));
        assert!(r.redeliverable());
        let again = r.redelivery_job().expect("a job");
        assert_eq!(again.delivery_id, r.delivery_id);
        assert!(again.attempts.is_empty());
    }

    #[test]
    fn health_counts_the_last_day_only() {
        let j = job();
        let now = Timestamp::now();
        let mut old = attempt();
        old.at = Timestamp::from_unix_millis((now.unix_seconds() - 2 * 24 * 3600) * 1000);
        let ok = AttemptRecord { status: Some(200), error: None, ..attempt() };
        let records = vec![
            DeliveryRecord::new(&j, &ok, AttemptResult::Delivered, [], None),
            DeliveryRecord::new(&j, &attempt(), AttemptResult::Retry, [], None),
            DeliveryRecord::new(&j, &old, AttemptResult::Retry, [], None),
        ];
        let h = HistoryHealth::from_records(&records, now);
        assert_eq!((h.attempts_24h, h.delivered_24h), (2, 1));
        assert_eq!(h.success_rate_24h, Some(0.5));
        assert_eq!(h.last_error.as_deref(), Some("boom"));
        assert!(
            !records[2].is_fresh(Timestamp::from_unix_millis((now.unix_seconds() + 6 * 24 * 3600) * 1000))
        );
    }
}
