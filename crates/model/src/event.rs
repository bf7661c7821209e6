//! The five EntraGuard events (spec §1): an envelope (`event`, `id`, `timestamp`, tenant, scan)
//! and one body per kind. The JSON form is the custom-webhook body, shaped like the seed's
//! sample; fields are only ever added.
//!
//! Parse untrusted input with [`Event::from_json`]: it checks the JSON, the kind, every field's
//! range and the size limits, and says which field is wrong.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::EventId;
use crate::timestamp::Timestamp;

mod bodies;
mod de;
mod digest;

pub use bodies::{
    EndpointHealth, Finding, Framework, Grade, Report, ScanCompleted, ScanError, ScanErrorKind, ScanFailed,
    ScanKind, SeverityCounts,
};
pub use digest::{DIGEST_LISTED, Digest, DigestItem, DigestReason};

/// Largest accepted event, as JSON bytes.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most entries accepted in a finding's `affected` list.
pub const MAX_AFFECTED: usize = 10_000;
/// Longest accepted free-text field (titles, messages, names), in bytes.
pub const MAX_TEXT: usize = 4096;

/// Why an event was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is {size} bytes; the limit is {MAX_EVENT_BYTES}")]
    TooLarge { size: usize },
    #[error("invalid event JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid event: field `{field}` {reason}")]
    Field { field: &'static str, reason: String },
    /// A kind only the notifier makes (`finding.digest`, `endpoint.health_changed`): the one
    /// refusal the producer, the CLI and the workers give.
    #[error(
        "invalid event: `{0}` is made only by the notifier and cannot be published; publishable kinds: {list}",
        list = EventKind::publishable_list()
    )]
    NotifierOnly(EventKind),
}

fn field_err(field: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Field { field, reason: reason.into() }
}

/// The event kinds, named exactly as on the wire.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "scan.completed")]
    ScanCompleted,
    #[serde(rename = "scan.failed")]
    ScanFailed,
    #[serde(rename = "finding.new")]
    FindingNew,
    #[serde(rename = "finding.severity_changed")]
    FindingSeverityChanged,
    #[serde(rename = "compliance.report_ready")]
    ComplianceReportReady,
    #[serde(rename = "endpoint.health_changed")]
    EndpointHealthChanged,
    /// The notifier's own: findings collected per scan by an endpoint's digest rule, sent as one
    /// message. Made by workers, never published.
    #[serde(rename = "finding.digest")]
    FindingDigest,
}

impl EventKind {
    /// The kinds an endpoint may subscribe to (`--events all`): every kind but `finding.digest`,
    /// which an endpoint's digest rule sends.
    pub const SUBSCRIBABLE: [EventKind; 6] = [
        EventKind::ScanCompleted,
        EventKind::ScanFailed,
        EventKind::FindingNew,
        EventKind::FindingSeverityChanged,
        EventKind::ComplianceReportReady,
        EventKind::EndpointHealthChanged,
    ];

    /// The kinds a producer may publish: every kind the notifier does not make itself.
    pub const PUBLISHABLE: [EventKind; 5] = [
        EventKind::ScanCompleted,
        EventKind::ScanFailed,
        EventKind::FindingNew,
        EventKind::FindingSeverityChanged,
        EventKind::ComplianceReportReady,
    ];

    pub const ALL: [EventKind; 7] = [
        EventKind::ScanCompleted,
        EventKind::ScanFailed,
        EventKind::FindingNew,
        EventKind::FindingSeverityChanged,
        EventKind::ComplianceReportReady,
        EventKind::EndpointHealthChanged,
        EventKind::FindingDigest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ScanCompleted => "scan.completed",
            EventKind::ScanFailed => "scan.failed",
            EventKind::FindingNew => "finding.new",
            EventKind::FindingSeverityChanged => "finding.severity_changed",
            EventKind::ComplianceReportReady => "compliance.report_ready",
            EventKind::EndpointHealthChanged => "endpoint.health_changed",
            EventKind::FindingDigest => "finding.digest",
        }
    }

    /// Whether only the notifier makes this kind: its own news about an endpoint's health, and
    /// the digests an endpoint's digest rule sends. Such kinds are never published: the producer,
    /// the CLI and the workers (for an event job the notifier did not make) refuse them.
    pub const fn is_notifier_only(self) -> bool {
        matches!(self, EventKind::EndpointHealthChanged | EventKind::FindingDigest)
    }

    /// The publishable kinds, comma-separated, for error messages.
    pub fn publishable_list() -> String {
        Self::PUBLISHABLE.map(EventKind::as_str).join(", ")
    }

    /// The subscribable kinds, comma-separated, for error messages.
    pub fn subscribable_list() -> String {
        Self::SUBSCRIBABLE.map(EventKind::as_str).join(", ")
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name that is not one of ours. It lists the kinds an endpoint may subscribe to
/// (where people type kind names); an event's `event` field gets the publishable ones instead
/// (see `de`). Neither lists `finding.digest`, which cannot be published or subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}: expected one of {list}", list = EventKind::subscribable_list())]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| UnknownEventKind(s.chars().take(64).collect()))
    }
}

/// Finding severity, most severe first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tenant id of the notifier's own events (`endpoint.health_changed`).
pub const NOTIFIER_TENANT: &str = "entraguard-notify";

/// The kind-specific part of an event; the `event` field on the wire is its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum EventBody {
    #[serde(rename = "scan.completed")]
    ScanCompleted { scan: ScanCompleted },
    #[serde(rename = "scan.failed")]
    ScanFailed { scan: ScanFailed },
    #[serde(rename = "finding.new")]
    FindingNew { finding: Finding },
    #[serde(rename = "finding.severity_changed")]
    FindingSeverityChanged { finding: Finding },
    #[serde(rename = "compliance.report_ready")]
    ComplianceReportReady { report: Report },
    #[serde(rename = "endpoint.health_changed")]
    EndpointHealthChanged { endpoint: EndpointHealth },
    #[serde(rename = "finding.digest")]
    FindingDigest { digest: Digest },
}

/// One event: the envelope and its body. Read by the hand-written [`Deserialize`] in `de` (the
/// same JSON the derived one read, without serde's buffering of a flattened tagged body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(flatten)]
    pub body: EventBody,
    /// Generated by the producer when the input has none.
    pub id: EventId,
    /// Set to now by the producer when the input has none.
    pub timestamp: Timestamp,
    pub tenant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
}

impl Event {
    /// Whether the event jumps the queue: a failed scan, or a finding that is (now) critical
    /// or high. Urgent events and their deliveries go to the front of the ready list.
    pub fn is_urgent(&self) -> bool {
        match &self.body {
            EventBody::ScanFailed { .. } => true,
            EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
                matches!(finding.severity, Severity::Critical | Severity::High)
            }
            _ => false,
        }
    }

    /// Parses and validates untrusted JSON (the CLI's input, a scanner's payload): a kind only
    /// the notifier makes is refused ([`EventError::NotifierOnly`]).
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { size: bytes.len() });
        }
        let event: Event = serde_json::from_slice(bytes)?;
        event.validate()?;
        Ok(event)
    }

    pub fn kind(&self) -> EventKind {
        match self.body {
            EventBody::ScanCompleted { .. } => EventKind::ScanCompleted,
            EventBody::ScanFailed { .. } => EventKind::ScanFailed,
            EventBody::FindingNew { .. } => EventKind::FindingNew,
            EventBody::FindingSeverityChanged { .. } => EventKind::FindingSeverityChanged,
            EventBody::ComplianceReportReady { .. } => EventKind::ComplianceReportReady,
            EventBody::EndpointHealthChanged { .. } => EventKind::EndpointHealthChanged,
            EventBody::FindingDigest { .. } => EventKind::FindingDigest,
        }
    }

    /// The endpoint this event is about (`endpoint.health_changed`): fan-out never sends it
    /// there.
    pub fn about_endpoint(&self) -> Option<&str> {
        match &self.body {
            EventBody::EndpointHealthChanged { endpoint } => Some(&endpoint.id),
            _ => None,
        }
    }

    /// An `endpoint.health_changed` event, stamped now.
    pub fn endpoint_health(health: EndpointHealth) -> Event {
        Event {
            body: EventBody::EndpointHealthChanged { endpoint: health },
            id: EventId::generate(),
            timestamp: Timestamp::now(),
            tenant_id: NOTIFIER_TENANT.to_owned(),
            tenant_name: None,
            scan_id: None,
        }
    }

    /// The finding this event is about, for finding events.
    pub fn finding(&self) -> Option<&Finding> {
        match &self.body {
            EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
                Some(finding)
            }
            _ => None,
        }
    }

    /// The severity a message should be coloured and titled with: the finding's, or for a
    /// completed scan the highest new finding's.
    pub fn severity(&self) -> Option<Severity> {
        match &self.body {
            EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
                Some(finding.severity)
            }
            EventBody::ScanCompleted { scan } => scan.new_findings.highest(),
            EventBody::FindingDigest { digest } => digest.counts.highest(),
            _ => None,
        }
    }

    /// The tenant as a person knows it: its name when given, else its id.
    pub fn tenant_display(&self) -> &str {
        self.tenant_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&self.tenant_id)
    }

    /// Checks a published event: its kind may be published ([`EventKind::is_notifier_only`]),
    /// and every field's presence, range and size (serde has checked the types already).
    pub fn validate(&self) -> Result<(), EventError> {
        if self.kind().is_notifier_only() {
            return Err(EventError::NotifierOnly(self.kind()));
        }
        self.validate_fields()
    }

    /// Checks every field's presence, range and size, whatever the kind: for the notifier's own
    /// `endpoint.health_changed` event jobs. A `finding.digest` is never an event job (workers
    /// make it from collected findings for one delivery), so it is refused here too.
    pub fn validate_fields(&self) -> Result<(), EventError> {
        text("tenant_id", &self.tenant_id, true)?;
        if let Some(n) = &self.tenant_name {
            text("tenant_name", n, false)?;
        }
        if let Some(s) = &self.scan_id {
            text("scan_id", s, true)?;
        }
        match &self.body {
            EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
                text("finding.id", &finding.id, true)?;
                text("finding.title", &finding.title, true)?;
                text("finding.category", &finding.category, true)?;
                if finding.affected.len() > MAX_AFFECTED {
                    return Err(field_err(
                        "finding.affected",
                        format!("has {} entries; the limit is {MAX_AFFECTED}", finding.affected.len()),
                    ));
                }
                for a in &finding.affected {
                    text("finding.affected", a, false)?;
                }
                http_url("finding.remediation_url", &finding.remediation_url)?;
                if self.kind() == EventKind::FindingSeverityChanged && finding.previous_severity.is_none() {
                    return Err(field_err(
                        "finding.previous_severity",
                        "is required for finding.severity_changed",
                    ));
                }
            }
            EventBody::ScanCompleted { scan } => {
                text("scan.run_id", &scan.run_id, true)?;
                text("scan.environment", &scan.environment, false)?;
                if scan.score > 100 {
                    return Err(field_err("scan.score", format!("is {}; expected 0 to 100", scan.score)));
                }
            }
            EventBody::ScanFailed { scan } => {
                text("scan.run_id", &scan.run_id, true)?;
                text("scan.environment", &scan.environment, false)?;
                text("scan.error.message", &scan.error.message, false)?;
            }
            EventBody::ComplianceReportReady { report } => {
                text("report.id", &report.id, true)?;
                if report.score > 100 {
                    return Err(field_err("report.score", format!("is {}; expected 0 to 100", report.score)));
                }
                http_url("report.url", &report.url)?;
            }
            EventBody::EndpointHealthChanged { endpoint } => {
                text("endpoint.id", &endpoint.id, true)?;
                text("endpoint.name", &endpoint.name, false)?;
                if let Some(e) = &endpoint.last_error {
                    text("endpoint.last_error", e, false)?;
                }
            }
            // Workers make digests from findings validated when they were published.
            EventBody::FindingDigest { .. } => return Err(EventError::NotifierOnly(self.kind())),
        }
        Ok(())
    }
}

fn text(field: &'static str, value: &str, required: bool) -> Result<(), EventError> {
    if required && value.trim().is_empty() {
        return Err(field_err(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(field_err(field, format!("is {} bytes; the limit is {MAX_TEXT}", value.len())));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(field_err(field, "contains control characters"));
    }
    Ok(())
}

fn http_url(field: &'static str, url: &url::Url) -> Result<(), EventError> {
    match url.scheme() {
        "https" | "http" => Ok(()),
        other => Err(field_err(field, format!("has scheme {other:?}; expected https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
      "event": "finding.new",
      "timestamp": "2026-04-28T07:12:43Z",
      "tenant_id": "8d6310d1-0000",
      "scan_id": "scan_2026-04-28T07:00Z",
      "finding": {
        "id": "PIM-002",
        "title": "Excessive permanent privileged roles",
        "severity": "high",
        "category": "privileged-access",
        "affected": ["admin@contoso.com", "ops@contoso.com"],
        "remediation_url": "https://your-host/api/entraguard/findings/PIM-002"
      }
    }"#;

    #[test]
    fn the_seed_sample_parses_and_gets_an_id() {
        let e = Event::from_json(SEED.as_bytes()).expect("seed parses");
        assert_eq!(e.kind(), EventKind::FindingNew);
        assert!(e.id.as_str().starts_with("evt_"));
        assert_eq!(e.timestamp.to_string(), "2026-04-28T07:12:43Z");
        let json = serde_json::to_value(&e).expect("serializes");
        assert_eq!(json["event"], "finding.new");
        assert_eq!(json["finding"]["severity"], "high");
        assert_eq!(json["scan_id"], "scan_2026-04-28T07:00Z");
        let back: Event = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_kind_is_named_in_the_error() {
        let bad = SEED.replace("finding.new", "finding.gone");
        let err = Event::from_json(bad.as_bytes()).expect_err("refused").to_string();
        assert!(err.contains("finding.gone"), "{err}");
    }

    #[test]
    fn severity_changed_needs_previous_severity() {
        let bad = SEED.replace("finding.new", "finding.severity_changed");
        let err = Event::from_json(bad.as_bytes()).expect_err("refused").to_string();
        assert!(err.contains("previous_severity"), "{err}");
    }

    #[test]
    fn bad_severity_and_missing_fields_are_refused() {
        assert!(Event::from_json(SEED.replace("\"high\"", "\"urgent\"").as_bytes()).is_err());
        assert!(Event::from_json(SEED.replace("\"tenant_id\": \"8d6310d1-0000\",", "").as_bytes()).is_err());
        assert!(Event::from_json(b"not json").is_err());
        assert!(Event::from_json(SEED.replace("\"PIM-002\",", "\"\",").as_bytes()).is_err());
    }

    #[test]
    fn oversize_event_is_refused_before_parsing() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(Event::from_json(&big), Err(EventError::TooLarge { .. })));
    }

    #[test]
    fn kinds_round_trip_through_strings() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
        assert!("scan.exploded".parse::<EventKind>().is_err());
    }

    #[test]
    fn a_health_event_round_trips_and_names_its_endpoint() {
        let e = Event::endpoint_health(EndpointHealth {
            id: "ep_01JSAMPLE".into(),
            name: "SOAR".into(),
            state: crate::health::BreakerState::Open,
            last_error: Some("HTTP 503".into()),
            parked: 3,
            since: Timestamp::now(),
        });
        let json = serde_json::to_vec(&e).expect("json");
        let back: Event = serde_json::from_slice(&json).expect("reads back");
        back.validate_fields().expect("the notifier's own event is well formed");
        assert_eq!(back.kind(), EventKind::EndpointHealthChanged);
        assert_eq!(back.about_endpoint(), Some("ep_01JSAMPLE"));
        assert_eq!(serde_json::to_value(&back).expect("json")["endpoint"]["state"], "open");
    }

    /// Issue 24 (7): every field docs/channels.md lists is present in every state; `last_error` is
    /// `null` when there is none (a closing).
    #[test]
    fn a_health_event_carries_every_field_in_every_state() {
        for state in [
            crate::health::BreakerState::Open,
            crate::health::BreakerState::Closed,
            crate::health::BreakerState::Disabled,
        ] {
            let last_error = (state != crate::health::BreakerState::Closed).then(|| "HTTP 503".to_owned());
            let e = Event::endpoint_health(EndpointHealth {
                id: "ep_01JSAMPLE".into(),
                name: "SOAR".into(),
                state,
                last_error,
                parked: 1,
                since: Timestamp::now(),
            });
            let v = serde_json::to_value(&e).expect("json");
            for field in ["id", "name", "state", "last_error", "parked", "since"] {
                assert!(v["endpoint"].get(field).is_some(), "{state}: {field} missing in {v}");
            }
            let EventBody::EndpointHealthChanged { endpoint } = &e.body else { unreachable!("health event") };
            let text = endpoint.text();
            assert!(text.contains(&format!("is {state}: 1 delivery parked")), "{text}");
        }
    }

    /// Kinds only the notifier makes are refused with one error, whatever the path: parsing
    /// untrusted JSON, or validating an event built in code (the producer's `publish`).
    #[test]
    fn kinds_only_the_notifier_makes_cannot_be_published() {
        let health = r#"{"event":"endpoint.health_changed","tenant_id":"8d6310d1-0000",
            "endpoint":{"id":"ep_01JSAMPLE","name":"SOAR","state":"disabled","parked":999,
            "since":"2026-04-28T07:12:43Z"}}"#;
        let err = Event::from_json(health.as_bytes()).expect_err("refused");
        assert!(matches!(err, EventError::NotifierOnly(EventKind::EndpointHealthChanged)), "{err}");
        let text = err.to_string();
        assert!(text.contains("`endpoint.health_changed` is made only by the notifier"), "{text}");
        assert!(!text.contains("finding.digest") && text.contains("compliance.report_ready"), "{text}");
        let parsed: Event = serde_json::from_str(health).expect("reads");
        assert!(matches!(parsed.validate(), Err(EventError::NotifierOnly(_))));
        for k in EventKind::ALL {
            assert_eq!(k.is_notifier_only(), !EventKind::PUBLISHABLE.contains(&k), "{k}");
        }
    }

    /// Issue 23: error messages listing kinds never list one that cannot be used there.
    #[test]
    fn unknown_kind_errors_list_only_usable_kinds() {
        let bad = SEED.replace("finding.new", "finding.gone");
        let err = Event::from_json(bad.as_bytes()).expect_err("refused").to_string();
        assert!(err.contains("expected one of scan.completed"), "{err}");
        assert!(!err.contains("finding.digest") && !err.contains("endpoint.health_changed"), "{err}");
        let err = "finding.gone".parse::<EventKind>().expect_err("unknown").to_string();
        assert!(!err.contains("finding.digest") && err.contains("endpoint.health_changed"), "{err}");
    }
}
