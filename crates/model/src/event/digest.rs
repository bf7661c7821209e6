//! The body of a `finding.digest` event: the findings a scan digest collected (built by
//! [`crate::digest::build`]).

use serde::{Deserialize, Serialize};

use super::{Event, EventKind, Finding, Severity, SeverityCounts};

/// Findings a digest lists in full; the rest are counted ("and N more").
pub const DIGEST_LISTED: usize = 50;

/// Why a digest was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestReason {
    #[serde(rename = "scan.completed")]
    ScanCompleted,
    #[serde(rename = "scan.failed")]
    ScanFailed,
    /// The scan did not end within the rule's `max_wait`.
    #[serde(rename = "max_wait")]
    MaxWait,
}

impl DigestReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestReason::ScanCompleted => "scan completed",
            DigestReason::ScanFailed => "scan failed",
            DigestReason::MaxWait => "scan still running after the longest wait",
        }
    }
}

/// One collected finding, as a digest lists it (and as it waits in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestItem {
    /// `finding.new` or `finding.severity_changed`.
    pub kind: EventKind,
    pub id: String,
    pub title: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_severity: Option<Severity>,
    pub category: String,
    pub affected_count: u64,
    pub remediation_url: url::Url,
}

impl DigestItem {
    /// The digest entry of a finding event; `None` for any other event.
    pub fn of(event: &Event) -> Option<DigestItem> {
        let f: &Finding = event.finding()?;
        Some(DigestItem {
            kind: event.kind(),
            id: f.id.clone(),
            title: f.title.clone(),
            severity: f.severity,
            previous_severity: f.previous_severity,
            category: f.category.clone(),
            affected_count: u64::try_from(f.affected.len()).unwrap_or(u64::MAX),
            remediation_url: f.remediation_url.clone(),
        })
    }
}

/// `digest` of a `finding.digest` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub reason: DigestReason,
    /// Every collected finding, counted by severity.
    pub counts: SeverityCounts,
    pub total: u64,
    /// The first [`DIGEST_LISTED`], most severe first (in arrival order within a severity).
    pub findings: Vec<DigestItem>,
    /// How many more were collected than listed.
    pub more: u64,
    /// The scan's page, when the findings' links show where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_url: Option<url::Url>,
}
