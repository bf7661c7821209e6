//! Fixed sample events, one per kind, for golden and unit tests: a fixed id and timestamp so a
//! rendered payload is the same on every run. Shaped after the seed page's samples.

use entraguard_core::event::{
    EndpointHealth, Event, EventBody, Finding, Framework, Grade, Report, ScanCompleted, ScanError,
    ScanErrorKind, ScanFailed, ScanKind, Severity, SeverityCounts,
};
use entraguard_core::ids::EventId;
use entraguard_core::timestamp::Timestamp;

fn envelope(body: EventBody) -> Event {
    Event {
        body,
        id: "evt_01JSAMPLE0000000000000000".parse::<EventId>().expect("sample event id"),
        timestamp: "2026-04-28T07:12:43Z".parse::<Timestamp>().expect("sample timestamp"),
        tenant_id: "8d6310d1-5e4b-4e1c-9d7a-3f0f7a4f2b11".to_owned(),
        tenant_name: Some("contoso.onmicrosoft.com".to_owned()),
        scan_id: Some("scan_2026-04-28T07:00Z".to_owned()),
    }
}

fn url(s: &str) -> url::Url {
    s.parse().expect("sample url")
}

/// The seed's finding.new sample.
pub(crate) fn finding_new() -> Event {
    envelope(EventBody::FindingNew {
        finding: Finding {
            id: "PIM-002".into(),
            title: "Excessive permanent privileged roles".into(),
            severity: Severity::High,
            previous_severity: None,
            category: "privileged-access".into(),
            affected: vec!["admin@contoso.com".into(), "ops@contoso.com".into()],
            remediation_url: url("https://entraguard.example.com/api/entraguard/findings/PIM-002"),
        },
    })
}

pub(crate) fn finding_severity_changed() -> Event {
    envelope(EventBody::FindingSeverityChanged {
        finding: Finding {
            id: "CA-014".into(),
            title: "Legacy authentication not blocked".into(),
            severity: Severity::Critical,
            previous_severity: Some(Severity::Medium),
            category: "conditional-access".into(),
            affected: vec!["Policy: Block legacy auth (report-only)".into()],
            remediation_url: url("https://entraguard.example.com/api/entraguard/findings/CA-014"),
        },
    })
}

/// The seed's Teams sample: Contoso production, 82/100 (B), 1 high and 2 medium new findings.
pub(crate) fn scan_completed() -> Event {
    envelope(EventBody::ScanCompleted {
        scan: ScanCompleted {
            run_id: "scan_2026-04-28T07:00Z".into(),
            kind: ScanKind::Full,
            environment: "Contoso production".into(),
            score: 82,
            grade: Grade::B,
            new_findings: SeverityCounts { high: 1, medium: 2, ..Default::default() },
        },
    })
}

pub(crate) fn scan_failed() -> Event {
    envelope(EventBody::ScanFailed {
        scan: ScanFailed {
            run_id: "scan_2026-04-28T07:00Z".into(),
            kind: ScanKind::Incremental,
            environment: "Contoso production".into(),
            error: ScanError {
                kind: ScanErrorKind::TokenExpired,
                message: "The Microsoft Graph access token expired; re-consent the EntraGuard app.".into(),
            },
        },
    })
}

pub(crate) fn compliance_report_ready() -> Event {
    envelope(EventBody::ComplianceReportReady {
        report: Report {
            framework: Framework::Cis,
            id: "rpt_2026-04-28_cis".into(),
            score: 78,
            url: url("https://entraguard.example.com/reports/rpt_2026-04-28_cis"),
        },
    })
}

pub(crate) fn endpoint_health_changed() -> Event {
    envelope(EventBody::EndpointHealthChanged {
        endpoint: EndpointHealth {
            id: "ep_01JSAMPLE0000000000000000".into(),
            name: "SOAR webhook".into(),
            state: entraguard_core::breaker::BreakerState::Open,
            last_error: Some("HTTP 503 Service Unavailable".into()),
            parked: 12,
            since: "2026-04-28T07:12:40Z".parse::<Timestamp>().expect("sample timestamp"),
        },
    })
}

/// One sample of every kind, with its kind's name (`finding.new`, …).
pub(crate) fn all() -> Vec<(&'static str, Event)> {
    [
        scan_completed(),
        scan_failed(),
        finding_new(),
        finding_severity_changed(),
        compliance_report_ready(),
        endpoint_health_changed(),
        finding_digest(),
    ]
    .into_iter()
    .map(|e| (e.kind().as_str(), e))
    .collect()
}

/// A digest of one scan: one medium and 52 low findings (50 listed, "and 3 more").
pub(crate) fn finding_digest() -> Event {
    let item = |i: usize, severity: Severity| entraguard_core::digest::DigestItem {
        kind: entraguard_core::event::EventKind::FindingNew,
        id: format!("APP-{i:03}"),
        title: format!("Application with unused credentials #{i}"),
        severity,
        previous_severity: None,
        category: "applications".into(),
        affected_count: 1,
        remediation_url: url(&format!("https://entraguard.example.com/api/entraguard/findings/APP-{i:03}")),
    };
    let mut items: Vec<_> = (1..=52).map(|i| item(i, Severity::Low)).collect();
    items.insert(7, item(100, Severity::Medium));
    let template = envelope(EventBody::ScanFailed {
        scan: ScanFailed {
            run_id: "r".into(),
            kind: ScanKind::Full,
            environment: "e".into(),
            error: ScanError { kind: ScanErrorKind::Network, message: "m".into() },
        },
    });
    let r = entraguard_core::digest::DigestRef::new(
        "ep_01JSAMPLE0000000000000000".parse().expect("sample endpoint id"),
        &template,
        "scan_2026-04-28T07:00Z",
    );
    let built =
        entraguard_core::digest::build(&r, entraguard_core::digest::DigestReason::ScanCompleted, items);
    envelope(built.body)
}
