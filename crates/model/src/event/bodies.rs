//! The kind-specific bodies an event carries (a finding, a scan's outcome, a compliance report,
//! the notifier's news of an endpoint), and the values they are made of.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Severity;
use crate::health::BreakerState;
use crate::timestamp::Timestamp;

/// A finding, as carried by `finding.new` and `finding.severity_changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_severity: Option<Severity>,
    pub category: String,
    #[serde(default)]
    pub affected: Vec<String>,
    pub remediation_url: url::Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanKind {
    Full,
    Incremental,
}

impl fmt::Display for ScanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanKind::Full => "full",
            ScanKind::Incremental => "incremental",
        })
    }
}

/// Letter grade of a completed scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
    E,
    F,
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// New findings of a completed scan, counted by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl SeverityCounts {
    pub fn total(&self) -> u64 {
        [self.critical, self.high, self.medium, self.low, self.info].iter().map(|&n| u64::from(n)).sum()
    }

    /// The non-zero counts, most severe first: `[(High, 1), (Medium, 2)]`.
    pub fn nonzero(&self) -> Vec<(Severity, u32)> {
        [
            (Severity::Critical, self.critical),
            (Severity::High, self.high),
            (Severity::Medium, self.medium),
            (Severity::Low, self.low),
            (Severity::Info, self.info),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// The most severe level with at least one new finding.
    pub fn highest(&self) -> Option<Severity> {
        self.nonzero().first().map(|(s, _)| *s)
    }
}

/// `scan` of a `scan.completed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCompleted {
    pub run_id: String,
    pub kind: ScanKind,
    pub environment: String,
    pub score: u8,
    pub grade: Grade,
    #[serde(default)]
    pub new_findings: SeverityCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanErrorKind {
    GraphThrottled,
    TokenExpired,
    Network,
    Internal,
}

impl fmt::Display for ScanErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanErrorKind::GraphThrottled => "graph_throttled",
            ScanErrorKind::TokenExpired => "token_expired",
            ScanErrorKind::Network => "network",
            ScanErrorKind::Internal => "internal",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanError {
    pub kind: ScanErrorKind,
    pub message: String,
}

/// `scan` of a `scan.failed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanFailed {
    pub run_id: String,
    pub kind: ScanKind,
    pub environment: String,
    pub error: ScanError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Framework {
    #[serde(rename = "CIS")]
    Cis,
    #[serde(rename = "NIST")]
    Nist,
    #[serde(rename = "ISO27001")]
    Iso27001,
    #[serde(rename = "SOC2")]
    Soc2,
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framework::Cis => "CIS",
            Framework::Nist => "NIST",
            Framework::Iso27001 => "ISO 27001",
            Framework::Soc2 => "SOC 2",
        })
    }
}

/// `report` of a `compliance.report_ready` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub framework: Framework,
    pub id: String,
    pub score: u8,
    pub url: url::Url,
}

/// `endpoint` of an `endpoint.health_changed` event: the notifier's own news about one of its
/// endpoints (its circuit breaker opened, closed, or disabled it). Emitted by workers, fanned
/// out like any event, never to the endpoint it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// The endpoint's id (`ep_…`).
    pub id: String,
    pub name: String,
    /// `open`, `closed` or `disabled`.
    pub state: BreakerState,
    /// The failure that opened (or disabled) it; `null` for `closed`. Always present.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Deliveries waiting in its lane, counting the failing delivery that parks as it opens
    /// (for `closed`: released to be delivered now).
    pub parked: u64,
    /// Since when it is in this state.
    pub since: Timestamp,
}

impl EndpointHealth {
    /// The news in one line, for a log: "endpoint Billing hook (ep_…) is open: 3 deliveries
    /// parked, last error: HTTP 503, since 2026-…".
    pub fn text(&self) -> String {
        let mut t = format!(
            "endpoint {} ({}) is {}: {} deliver{} parked",
            self.name,
            self.id,
            self.state,
            self.parked,
            if self.parked == 1 { "y" } else { "ies" }
        );
        if let Some(e) = &self.last_error {
            t.push_str(&format!(", last error: {e}"));
        }
        t.push_str(&format!(", since {}", self.since));
        t
    }
}
