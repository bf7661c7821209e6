//! Fixed sample events, one per kind, for golden and unit tests: fixed ids and timestamps so a
//! rendered payload is the same on every run. Shaped after the seed page's samples.

use entraguard_core::event::{
    Event, EventBody, Finding, Framework, Grade, Report, ScanCompleted, ScanError, ScanErrorKind,
    ScanFailed, ScanKind, Severity, SeverityCounts,
};
use entraguard_core::ids::EventId;
use entraguard_core::timestamp::Timestamp;

pub(crate) const TENANT_ID: &str = "8d6310d1-4f0e-4c2b-9a57-3f1c2b7e9d10";
pub(crate) const TENANT_NAME: &str = "contoso.onmicrosoft.com";
pub(crate) const SCAN_ID: &str = "scan_2026-04-28T07:00Z";

fn envelope(body: EventBody, id: &str, at: &str) -> Event {
    Event {
        body,
        id: id.parse::<EventId>().expect("sample event id"),
        timestamp: at.parse::<Timestamp>().expect("sample timestamp"),
        tenant_id: TENANT_ID.to_owned(),
        tenant_name: Some(TENANT_NAME.to_owned()),
        scan_id: Some(SCAN_ID.to_owned()),
    }
}

/// The seed's finding: PIM-002, high, five affected accounts.
pub(crate) fn finding() -> Finding {
    Finding {
        id: "PIM-002".into(),
        title: "Excessive permanent privileged roles".into(),
        severity: Severity::High,
        previous_severity: None,
        category: "privileged-access".into(),
        affected: vec![
            "admin@contoso.onmicrosoft.com".into(),
            "ops.lead@contoso.com".into(),
            "svc_backup@contoso.com".into(),
            "j.doe@contoso.com".into(),
            "break-glass-02@contoso.onmicrosoft.com".into(),
        ],
        remediation_url: "https://your-host/api/entraguard/findings/PIM-002"
            .parse()
            .expect("sample url"),
    }
}

pub(crate) fn finding_new() -> Event {
    envelope(
        EventBody::FindingNew { finding: finding() },
        "evt_01JSX7QK3Z8D4W6VJ5N2R9T0AB",
        "2026-04-28T07:12:43Z",
    )
}

/// An escalation with a long affected list (shortened with "… and N more") and an entry with
/// `&`, `<`, `>` and `_` (escaped per channel).
pub(crate) fn finding_severity_changed() -> Event {
    let mut affected: Vec<String> = vec!["Group: R&D <Privileged> Admins".into()];
    affected.extend((1..=13).map(|i| format!("contractor{i:02}@contoso.com")));
    envelope(
        EventBody::FindingSeverityChanged {
            finding: Finding {
                id: "CA-014".into(),
                title: "Legacy authentication not blocked for all users".into(),
                severity: Severity::Critical,
                previous_severity: Some(Severity::Medium),
                category: "conditional-access".into(),
                affected,
                remediation_url: "https://your-host/api/entraguard/findings/CA-014"
                    .parse()
                    .expect("sample url"),
            },
        },
        "evt_01JSX7QK3Z8D4W6VJ5N2R9T0AC",
        "2026-04-28T07:13:05Z",
    )
}

/// The seed's Teams sample: Contoso production, 82/100 (B), 3 new findings.
pub(crate) fn scan_completed() -> Event {
    envelope(
        EventBody::ScanCompleted {
            scan: ScanCompleted {
                run_id: SCAN_ID.into(),
                kind: ScanKind::Full,
                environment: "Contoso production".into(),
                score: 82,
                grade: Grade::B,
                new_findings: SeverityCounts {
                    high: 1,
                    medium: 2,
                    ..Default::default()
                },
            },
        },
        "evt_01JSX7QK3Z8D4W6VJ5N2R9T0AD",
        "2026-04-28T07:14:10Z",
    )
}

pub(crate) fn scan_failed() -> Event {
    envelope(
        EventBody::ScanFailed {
            scan: ScanFailed {
                run_id: "scan_2026-04-28T08:00Z".into(),
                kind: ScanKind::Incremental,
                environment: "Contoso production".into(),
                error: ScanError {
                    kind: ScanErrorKind::TokenExpired,
                    message: "AADSTS700082: The refresh token has expired due to inactivity. \
                              Re-consent the EntraGuard app in the tenant."
                        .into(),
                },
            },
        },
        "evt_01JSX7QK3Z8D4W6VJ5N2R9T0AE",
        "2026-04-28T08:02:31Z",
    )
}

pub(crate) fn compliance_report_ready() -> Event {
    let mut e = envelope(
        EventBody::ComplianceReportReady {
            report: Report {
                framework: Framework::Cis,
                id: "rpt_cis_2026-04-28".into(),
                score: 74,
                url: "https://your-host/api/entraguard/reports/rpt_cis_2026-04-28"
                    .parse()
                    .expect("sample url"),
            },
        },
        "evt_01JSX7QK3Z8D4W6VJ5N2R9T0AF",
        "2026-04-28T07:20:00Z",
    );
    // Reports are not tied to one scan.
    e.scan_id = None;
    e
}

/// One sample of every kind, named by kind (`finding.new`, …).
pub(crate) fn all() -> Vec<(&'static str, Event)> {
    [
        scan_completed(),
        scan_failed(),
        finding_new(),
        finding_severity_changed(),
        compliance_report_ready(),
    ]
    .into_iter()
    .map(|e| (e.kind().as_str(), e))
    .collect()
}
