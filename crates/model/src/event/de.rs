//! Reading an [`Event`]: the envelope's fields and the body for its `event` tag, straight into
//! their types.
//!
//! The derived reading (`#[serde(flatten)]` over an internally tagged body) first copied every
//! field into serde's untyped buffer, then read the buffer: most of a delivery job's decode
//! (issue 13). Here the tag, which our own JSON writes first, picks the body's type before the
//! body is read. A body that comes before the tag (hand-written JSON) is held as a JSON value
//! until the tag is known. Unknown fields are ignored, as before (fields are only ever added);
//! a duplicate field, a missing `event`, `tenant_id` or body is refused, as before.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Event, EventBody, EventKind};
use crate::ids::EventId;
use crate::timestamp::Timestamp;

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

/// The field that carries each kind's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKey {
    Scan,
    Finding,
    Report,
    Endpoint,
    Digest,
}

impl BodyKey {
    fn of(kind: EventKind) -> BodyKey {
        match kind {
            EventKind::ScanCompleted | EventKind::ScanFailed => BodyKey::Scan,
            EventKind::FindingNew | EventKind::FindingSeverityChanged => BodyKey::Finding,
            EventKind::ComplianceReportReady => BodyKey::Report,
            EventKind::EndpointHealthChanged => BodyKey::Endpoint,
            EventKind::FindingDigest => BodyKey::Digest,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BodyKey::Scan => "scan",
            BodyKey::Finding => "finding",
            BodyKey::Report => "report",
            BodyKey::Endpoint => "endpoint",
            BodyKey::Digest => "digest",
        }
    }
}

/// A key of the event object.
enum Key {
    Event,
    Id,
    Timestamp,
    TenantId,
    TenantName,
    ScanId,
    Body(BodyKey),
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "event" => Key::Event,
                    "id" => Key::Id,
                    "timestamp" => Key::Timestamp,
                    "tenant_id" => Key::TenantId,
                    "tenant_name" => Key::TenantName,
                    "scan_id" => Key::ScanId,
                    "scan" => Key::Body(BodyKey::Scan),
                    "finding" => Key::Body(BodyKey::Finding),
                    "report" => Key::Body(BodyKey::Report),
                    "endpoint" => Key::Body(BodyKey::Endpoint),
                    "digest" => Key::Body(BodyKey::Digest),
                    _ => Key::Other,
                })
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => self.visit_str(s),
                    Err(_) => Ok(Key::Other),
                }
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// Reads the body of an event of `kind`.
struct BodySeed(EventKind);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = EventBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventBody, D::Error> {
        Ok(match self.0 {
            EventKind::ScanCompleted => EventBody::ScanCompleted { scan: Deserialize::deserialize(d)? },
            EventKind::ScanFailed => EventBody::ScanFailed { scan: Deserialize::deserialize(d)? },
            EventKind::FindingNew => EventBody::FindingNew { finding: Deserialize::deserialize(d)? },
            EventKind::FindingSeverityChanged => {
                EventBody::FindingSeverityChanged { finding: Deserialize::deserialize(d)? }
            }
            EventKind::ComplianceReportReady => {
                EventBody::ComplianceReportReady { report: Deserialize::deserialize(d)? }
            }
            EventKind::EndpointHealthChanged => {
                EventBody::EndpointHealthChanged { endpoint: Deserialize::deserialize(d)? }
            }
            EventKind::FindingDigest => EventBody::FindingDigest { digest: Deserialize::deserialize(d)? },
        })
    }
}

/// The `event` tag: any kind (jobs carry the notifier's own kinds too), but an unknown name's
/// error lists only the kinds that can be published.
struct KindTag(EventKind);

impl<'de> Deserialize<'de> for KindTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl Visitor<'_> for KindVisitor {
            type Value = KindTag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event kind")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KindTag, E> {
                EventKind::ALL.into_iter().find(|k| k.as_str() == s).map(KindTag).ok_or_else(|| {
                    E::custom(format_args!(
                        "unknown event kind {:?}: expected one of {}",
                        s.chars().take(64).collect::<String>(),
                        EventKind::publishable_list()
                    ))
                })
            }
        }
        d.deserialize_str(KindVisitor)
    }
}

/// Sets a field seen for the first time; a second one is refused.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut kind: Option<EventKind> = None;
        let mut body: Option<EventBody> = None;
        // Body fields read before the tag: kept as JSON until the tag says which one is used.
        let mut early: Vec<(BodyKey, serde_json::Value)> = Vec::new();
        let mut id: Option<EventId> = None;
        let mut timestamp: Option<Timestamp> = None;
        let mut tenant_id: Option<String> = None;
        let mut tenant_name: Option<Option<String>> = None;
        let mut scan_id: Option<Option<String>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Event => once(&mut kind, "event", map.next_value::<KindTag>()?.0)?,
                Key::Id => once(&mut id, "id", map.next_value()?)?,
                Key::Timestamp => once(&mut timestamp, "timestamp", map.next_value()?)?,
                Key::TenantId => once(&mut tenant_id, "tenant_id", map.next_value()?)?,
                Key::TenantName => once(&mut tenant_name, "tenant_name", map.next_value()?)?,
                Key::ScanId => once(&mut scan_id, "scan_id", map.next_value()?)?,
                Key::Body(key) => {
                    if early.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::duplicate_field(key.name()));
                    }
                    match kind {
                        Some(kind) if BodyKey::of(kind) == key => {
                            let read = map.next_value_seed(BodySeed(kind))?;
                            once(&mut body, key.name(), read)?;
                        }
                        // Another kind's body field: ignored, like any unknown field.
                        Some(_) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        None => early.push((key, map.next_value()?)),
                    }
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("event"))?;
        let body = match body {
            Some(body) => body,
            None => {
                let key = BodyKey::of(kind);
                let (_, value) = early
                    .into_iter()
                    .find(|(k, _)| *k == key)
                    .ok_or_else(|| de::Error::missing_field(key.name()))?;
                BodySeed(kind).deserialize(value).map_err(de::Error::custom)?
            }
        };
        Ok(Event {
            body,
            id: id.unwrap_or_else(EventId::generate),
            timestamp: timestamp.unwrap_or_else(Timestamp::now),
            tenant_id: tenant_id.ok_or_else(|| de::Error::missing_field("tenant_id"))?,
            tenant_name: tenant_name.flatten(),
            scan_id: scan_id.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading the hand-written one replaces, for comparison.
    #[derive(Deserialize)]
    struct Derived {
        #[serde(flatten)]
        body: EventBody,
        id: EventId,
        timestamp: Timestamp,
        tenant_id: String,
        #[serde(default)]
        tenant_name: Option<String>,
        #[serde(default)]
        scan_id: Option<String>,
    }

    impl From<Derived> for Event {
        fn from(d: Derived) -> Event {
            Event {
                body: d.body,
                id: d.id,
                timestamp: d.timestamp,
                tenant_id: d.tenant_id,
                tenant_name: d.tenant_name,
                scan_id: d.scan_id,
            }
        }
    }

    const FINDING: &str = r#"{"id":"F-1","title":"t","severity":"high","category":"c","affected":["a"],"remediation_url":"https://x.example/f"}"#;

    fn both(json: &str) -> (Result<Event, String>, Result<Event, String>) {
        let ours = serde_json::from_str::<Event>(json).map_err(|e| e.to_string());
        let derived = serde_json::from_str::<Derived>(json).map(Event::from).map_err(|e| e.to_string());
        (ours, derived)
    }

    #[test]
    fn reads_what_the_derived_reading_read_in_any_field_order() {
        let envelope = r#""id":"evt_1","timestamp":"2026-04-28T07:12:43Z","tenant_id":"t","scan_id":null,"extra":[1,{"a":2}]"#;
        for json in [
            format!(r#"{{"event":"finding.new",{envelope},"finding":{FINDING}}}"#),
            format!(r#"{{"finding":{FINDING},{envelope},"event":"finding.new"}}"#),
            format!(r#"{{{envelope},"finding":{FINDING},"scan":{{"x":1}},"event":"finding.new"}}"#),
            format!(r#"{{"event":"finding.new","scan":7,{envelope},"finding":{FINDING}}}"#),
        ] {
            let (ours, derived) = both(&json);
            let ours = ours.unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(Ok(ours.clone()), derived, "{json}");
            // And what it writes reads back the same.
            let again = serde_json::to_string(&ours).expect("writes");
            assert_eq!(serde_json::from_str::<Event>(&again).expect("reads back"), ours);
        }
    }

    #[test]
    fn refuses_what_the_derived_reading_refused() {
        let envelope = r#""id":"evt_1","timestamp":"2026-04-28T07:12:43Z","tenant_id":"t""#;
        for json in [
            format!(r#"{{{envelope},"finding":{FINDING}}}"#),
            format!(r#"{{"event":"finding.new",{envelope}}}"#),
            format!(r#"{{"event":"finding.new","id":"evt_1","finding":{FINDING}}}"#),
            format!(r#"{{"event":"finding.gone",{envelope},"finding":{FINDING}}}"#),
            format!(r#"{{"event":"finding.new",{envelope},"finding":{FINDING},"finding":{FINDING}}}"#),
            format!(r#"{{"finding":{FINDING},"event":"finding.new",{envelope},"finding":{FINDING}}}"#),
            format!(r#"{{"event":"finding.new","event":"finding.new",{envelope},"finding":{FINDING}}}"#),
            format!(r#"{{"event":"scan.completed",{envelope},"scan":{{"x":1}}}}"#),
            format!(r#"{{"event":"finding.new",{envelope},"finding":{{"id":"F"}}}}"#),
            format!(r#"{{"event":"finding.new",{envelope},"tenant_id":"u","finding":{FINDING}}}"#),
            r#"[1,2]"#.to_owned(),
        ] {
            let (ours, derived) = both(&json);
            assert!(derived.is_err(), "the derived reading took {json}");
            assert!(ours.is_err(), "accepted {json}");
        }
    }

    #[test]
    fn defaults_an_absent_id_and_timestamp() {
        let json = format!(r#"{{"event":"finding.new","tenant_id":"t","finding":{FINDING}}}"#);
        let e: Event = serde_json::from_str(&json).expect("reads");
        assert!(e.id.as_str().starts_with("evt_"));
        assert_eq!(e.tenant_name, None);
    }
}
