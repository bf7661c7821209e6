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

/// Event text an attacker could write, one case per entry: what the hostile goldens and the
/// text-safety tests put in every string field (issue 24). Only `\n` and `\t` among control
/// characters: the others are refused at publish.
/// Thirteen, a prime: cycled over the four or five strings of each finding, every case reaches
/// every field.
pub(crate) const HOSTILE: [&str; 13] = [
    "line one\n• *CRITICAL* FAKE-999 spoofed entry",
    "line one\n- CRITICAL FAKE-999 spoofed entry\n\n# Heading",
    "line one\n  CRITICAL FAKE-999 spoofed entry\n\tindented",
    "&amp; and &lt;b&gt; shown as typed",
    "invoice\u{202E}gnp.exe \u{2066}isolated\u{2069} \u{200F}marked\u{061C}",
    "<script>alert(1)</script>",
    "a|b <https://evil.example|click here>",
    "*bold* _italic_ ~struck~ svc_backup",
    "`code` ```block``` `",
    "<!here> <!channel> <@U0123ABC>",
    "[click](https://evil.example) ![img](https://evil.example/x.png)",
    "- 1. > {{DATE(2017-02-14T06:08:39Z, SHORT)}}",
    "line\u{2028}separator, paragraph\u{2029}separator",
];

/// `event` with every string field it carries (envelope and body; a digest's findings too)
/// replaced by the next of `strings`, and every event-made URL given one as its last path
/// segment. Severities, counts and the rest stay: the message's structure must not change.
pub(crate) fn with_strings(event: &Event, strings: &mut dyn FnMut() -> String) -> Event {
    let mut e = event.clone();
    let url_with = |u: &url::Url, s: String| {
        let mut u = u.clone();
        if let Ok(mut segments) = u.path_segments_mut() {
            segments.push(&s);
        }
        u
    };
    e.tenant_id = strings();
    e.tenant_name = e.tenant_name.map(|_| strings());
    e.scan_id = e.scan_id.map(|_| strings());
    match &mut e.body {
        EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
            finding.id = strings();
            finding.title = strings();
            finding.category = strings();
            for a in &mut finding.affected {
                *a = strings();
            }
            finding.remediation_url = url_with(&finding.remediation_url, strings());
        }
        EventBody::ScanCompleted { scan } => {
            scan.run_id = strings();
            scan.environment = strings();
        }
        EventBody::ScanFailed { scan } => {
            scan.run_id = strings();
            scan.environment = strings();
            scan.error.message = strings();
        }
        EventBody::ComplianceReportReady { report } => {
            report.id = strings();
            report.url = url_with(&report.url, strings());
        }
        EventBody::EndpointHealthChanged { endpoint } => {
            endpoint.id = strings();
            endpoint.name = strings();
            endpoint.last_error = endpoint.last_error.take().map(|_| strings());
        }
        EventBody::FindingDigest { digest } => {
            for f in &mut digest.findings {
                f.id = strings();
                f.title = strings();
                f.category = strings();
                f.remediation_url = url_with(&f.remediation_url, strings());
            }
            digest.scan_url = digest.scan_url.take().map(|u| url_with(&u, strings()));
        }
    }
    e
}

/// A digest of `n` findings as the worker builds it (the most severe [`DIGEST_LISTED`] listed,
/// the rest counted), severities cycling from critical to info, every string from `strings`.
///
/// [`DIGEST_LISTED`]: entraguard_core::digest::DIGEST_LISTED
pub(crate) fn digest_of(n: usize, strings: &mut dyn FnMut() -> String) -> Event {
    use entraguard_core::digest::{DigestItem, DigestReason, DigestRef, build};
    let severities = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info];
    let base = url("https://entraguard.example.com/api/entraguard/findings/");
    let items: Vec<DigestItem> = (0..n)
        .map(|i| {
            let severity = severities[i % severities.len()];
            DigestItem {
                kind: if i % 7 == 3 {
                    entraguard_core::event::EventKind::FindingSeverityChanged
                } else {
                    entraguard_core::event::EventKind::FindingNew
                },
                id: format!("F-{i}"),
                title: format!("finding {i}"),
                severity,
                previous_severity: (i % 7 == 3).then_some(Severity::Low),
                category: "c".into(),
                affected_count: 1,
                remediation_url: base.join(&format!("F-{i}")).unwrap_or_else(|_| base.clone()),
            }
        })
        .collect();
    let template = scan_failed();
    let r = DigestRef::new(
        "ep_01JSAMPLE0000000000000000".parse().expect("sample endpoint id"),
        &template,
        "scan_2026-04-28T07:00Z",
    );
    let built = build(&r, DigestReason::ScanCompleted, items);
    with_strings(&envelope(built.body), strings)
}

/// One event of every kind with the [`HOSTILE`] cases in its strings, in turn.
pub(crate) fn hostile_all() -> Vec<(&'static str, Event)> {
    let mut i = 0;
    let mut next = || {
        let s = HOSTILE[i % HOSTILE.len()].to_owned();
        i += 1;
        s
    };
    let mut out: Vec<(&'static str, Event)> =
        all().into_iter().map(|(kind, e)| (kind, with_strings(&e, &mut next))).collect();
    for (kind, e) in &mut out {
        if *kind == "finding.digest" {
            // Every title and id of a full digest hostile: 53 findings, 50 listed.
            *e = digest_of(53, &mut next);
        }
    }
    out
}
