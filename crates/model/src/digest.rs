//! Scan digests (issue 15, rule 4): findings an endpoint's digest rule collects per (endpoint,
//! tenant, scan), and the `finding.digest` event they become when the scan ends or the digest's
//! longest wait runs out. The Redis side (collect with the event's acknowledgement, flush
//! atomically) is in `queue::digest`; this module is the data and the pure build.

use serde::{Deserialize, Serialize};

pub use crate::event::{DIGEST_LISTED, Digest, DigestItem, DigestReason};
use crate::event::{Event, EventBody, Severity, SeverityCounts};
use crate::ids::{EndpointId, EventId};
use crate::timestamp::Timestamp;

/// How long after its scan's end a digest is sent: findings of the scan that other workers are
/// still fanning out join it.
pub const SCAN_END_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a digest opened after its scan's end waits: findings fanned out after the end (a
/// failed scan is urgent and can overtake them under a backlog) are gathered this long and sent
/// together, so stragglers spread over a backlog make one message per this interval at most,
/// not one each.
pub const LATE_FINDINGS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which digest a job is about: an endpoint, a tenant, a scan. `flush` names this flush of it
/// (a fresh id), so two flushes of the same scan's digests never share a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRef {
    pub endpoint_id: EndpointId,
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
    pub scan_id: String,
    pub flush: String,
}

impl DigestRef {
    pub fn new(endpoint_id: EndpointId, event: &Event, scan_id: &str) -> DigestRef {
        DigestRef {
            endpoint_id,
            tenant_id: event.tenant_id.clone(),
            tenant_name: event.tenant_name.clone(),
            scan_id: scan_id.to_owned(),
            flush: crate::ids::new_ulid().to_string().to_lowercase(),
        }
    }

    #[cfg(feature = "hashing")]
    /// The digest's id: `<endpoint>:<hash of tenant and scan>` (ids of any length and
    /// characters make a short key).
    pub fn id(&self) -> String {
        digest_id(&self.endpoint_id, &self.tenant_id, &self.scan_id)
    }
}

#[cfg(feature = "hashing")]
/// `<endpoint>:<first 128 bits of SHA-256(tenant, scan) in hex>`.
pub fn digest_id(endpoint: &EndpointId, tenant: &str, scan: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0x1f]);
    h.update(scan.as_bytes());
    format!("{endpoint}:{}", hex::encode(&h.finalize()[..16]))
}

/// The `finding.digest` event of collected `items` (in arrival order).
pub fn build(r: &DigestRef, reason: DigestReason, items: Vec<DigestItem>) -> Event {
    let mut counts = SeverityCounts::default();
    for i in &items {
        let n = match i.severity {
            Severity::Critical => &mut counts.critical,
            Severity::High => &mut counts.high,
            Severity::Medium => &mut counts.medium,
            Severity::Low => &mut counts.low,
            Severity::Info => &mut counts.info,
        };
        *n = n.saturating_add(1);
    }
    let total = u64::try_from(items.len()).unwrap_or(u64::MAX);
    let scan_url = items.first().and_then(|i| scan_url(&i.remediation_url, &r.scan_id));
    let mut items = items;
    // Stable: arrival order within a severity.
    items.sort_by_key(|i| i.severity);
    items.truncate(DIGEST_LISTED);
    let more = total.saturating_sub(u64::try_from(items.len()).unwrap_or(0));
    Event {
        body: EventBody::FindingDigest {
            digest: Digest { reason, counts, total, findings: items, more, scan_url },
        },
        id: EventId::generate(),
        timestamp: Timestamp::now(),
        tenant_id: r.tenant_id.clone(),
        tenant_name: r.tenant_name.clone(),
        scan_id: Some(r.scan_id.clone()),
    }
}

/// The scan's page beside its findings': `…/findings/<id>` becomes `…/scans/<scan id>`. `None`
/// when a finding's link does not have that shape.
fn scan_url(finding_url: &url::Url, scan: &str) -> Option<url::Url> {
    let path = finding_url.path();
    let at = path.rfind("/findings/")?;
    let mut u = finding_url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.set_path(&format!("{}/scans/", &path[..at]));
    u.join(&url_segment(scan)).ok()
}

fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn item(id: &str, severity: Severity) -> DigestItem {
        DigestItem {
            kind: EventKind::FindingNew,
            id: id.into(),
            title: format!("finding {id}"),
            severity,
            previous_severity: None,
            category: "c".into(),
            affected_count: 1,
            remediation_url: url::Url::parse(&format!("https://eg.example.com/api/entraguard/findings/{id}"))
                .expect("url"),
        }
    }

    #[test]
    fn counts_all_lists_the_most_severe_fifty_and_links_the_scan() {
        let r = DigestRef {
            endpoint_id: EndpointId::generate(),
            tenant_id: "t".into(),
            tenant_name: None,
            scan_id: "scan_2026-04-28T07:00Z".into(),
            flush: "f".into(),
        };
        let mut items: Vec<DigestItem> = (0..120).map(|i| item(&format!("L-{i}"), Severity::Low)).collect();
        items.insert(60, item("M-1", Severity::Medium));
        let e = build(&r, DigestReason::ScanCompleted, items);
        let EventBody::FindingDigest { digest } = &e.body else { panic!("a digest") };
        assert_eq!((digest.counts.low, digest.counts.medium, digest.total), (120, 1, 121));
        assert_eq!(digest.findings.len(), DIGEST_LISTED);
        assert_eq!(digest.more, 71);
        assert_eq!(digest.findings[0].id, "M-1");
        assert_eq!(digest.findings[1].id, "L-0");
        assert_eq!(
            digest.scan_url.as_ref().map(url::Url::as_str),
            Some("https://eg.example.com/api/entraguard/scans/scan_2026-04-28T07%3A00Z")
        );
        assert_eq!(e.kind(), EventKind::FindingDigest);
        let json = serde_json::to_string(&e).expect("json");
        assert!(json.contains(r#""event":"finding.digest""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).expect("round trip"), e);
        assert!(e.validate().is_err(), "a digest cannot be published");
    }

    #[test]
    fn the_id_is_stable_and_short() {
        let ep = EndpointId::generate();
        assert_eq!(digest_id(&ep, "t", "s"), digest_id(&ep, "t", "s"));
        assert_ne!(digest_id(&ep, "t", "s"), digest_id(&ep, "ts", ""));
        assert!(digest_id(&ep, &"x".repeat(4000), "s").len() < 80);
    }
}
