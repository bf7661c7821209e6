//! Email: a subject naming tenant, event and severity, and a multipart body (plain text and
//! HTML with inline styles only, no external resources, every event string escaped). Sender,
//! recipient, Message-ID and Date are the SMTP transport's.

use entraguard_core::event::{Event, EventBody};

use super::summary::{Summary, cut, summarize};
use super::text::{html as esc, line};

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn render(event: &Event) -> EmailMessage {
    let s = summarize(event);
    EmailMessage { subject: subject(event, &s), text: text(&s), html: html(&s) }
}

/// One line, at most 200 characters, nothing from the event able to break the header.
fn subject(event: &Event, s: &Summary) -> String {
    let tenant = &s.tenant;
    let raw = match &event.body {
        EventBody::FindingNew { finding } => {
            format!(
                "[EntraGuard] {} finding in {tenant}: {} {}",
                finding.severity.as_str().to_uppercase(),
                finding.id,
                finding.title
            )
        }
        EventBody::FindingSeverityChanged { finding } => format!(
            "[EntraGuard] Severity {} to {} in {tenant}: {} {}",
            if s.emoji == ":arrow_down:" { "lowered" } else { "raised" },
            finding.severity.as_str().to_uppercase(),
            finding.id,
            finding.title
        ),
        EventBody::ScanCompleted { scan } => format!(
            "[EntraGuard] Scan completed for {} ({tenant}): {}/100 ({}){}",
            scan.environment,
            scan.score,
            scan.grade,
            scan.new_findings
                .highest()
                .map(|h| format!(", highest new finding {}", h.as_str().to_uppercase()))
                .unwrap_or_default()
        ),
        EventBody::ScanFailed { scan } => {
            format!("[EntraGuard] Scan FAILED for {} ({tenant}): {}", scan.environment, scan.error.kind)
        }
        EventBody::ComplianceReportReady { report } => {
            format!(
                "[EntraGuard] {} compliance report ready for {tenant}: {}/100",
                report.framework, report.score
            )
        }
        EventBody::FindingDigest { digest } => format!(
            "[EntraGuard] Digest for {tenant}: {} finding{}{}{}",
            digest.total,
            if digest.total == 1 { "" } else { "s" },
            digest
                .counts
                .highest()
                .map(|h| format!(", highest {}", h.as_str().to_uppercase()))
                .unwrap_or_default(),
            event.scan_id.as_ref().map(|s| format!(" in scan {s}")).unwrap_or_default()
        ),
        EventBody::EndpointHealthChanged { endpoint } => format!(
            "[EntraGuard] Endpoint {} is {}: {} deliver{} parked",
            endpoint.name,
            endpoint.state.as_str().to_uppercase(),
            endpoint.parked,
            if endpoint.parked == 1 { "y" } else { "ies" }
        ),
    };
    cut(&line(&raw), 200)
}

fn text(s: &Summary) -> String {
    let mut out = format!("{}\n\n", s.headline());
    let width = s.facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &s.facts {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    if let Some((shown, more)) = &s.affected {
        out.push_str("\nAffected:\n");
        for a in shown {
            out.push_str(&format!("  - {a}\n"));
        }
        if *more > 0 {
            out.push_str(&format!("  … and {more} more\n"));
        }
    }
    if let Some((lines, more)) = &s.findings {
        out.push_str("\nFindings:\n");
        for l in lines {
            out.push_str(&format!("  {}\n", l.text()));
        }
        if *more > 0 {
            out.push_str(&format!("  … and {more} more\n"));
        }
    }
    if let Some((label, url)) = &s.link {
        out.push_str(&format!("\n{label}: {url}\n"));
    }
    out.push_str("\n-- \nEntraGuard Notify. Webhook payloads are notifications; the EntraGuard API is the system of record.\n");
    out
}

fn html(s: &Summary) -> String {
    let mut rows = String::new();
    for (k, v) in &s.facts {
        rows.push_str(&format!(
            "<tr><td style=\"padding:4px 12px 4px 0;color:#6b7280;vertical-align:top\">{}</td><td style=\"padding:4px 0\">{}</td></tr>",
            esc(k),
            esc(v)
        ));
    }
    let mut affected = String::new();
    if let Some((shown, more)) = &s.affected {
        affected.push_str("<p style=\"margin:16px 0 4px;font-weight:bold\">Affected</p><ul style=\"margin:0;padding-left:20px\">");
        for a in shown {
            affected.push_str(&format!("<li>{}</li>", esc(a)));
        }
        if *more > 0 {
            affected.push_str(&format!("<li>… and {more} more</li>"));
        }
        affected.push_str("</ul>");
    }
    if let Some((lines, more)) = &s.findings {
        let cell = "padding:4px 12px 4px 0;border-bottom:1px solid #e5e7eb;vertical-align:top";
        affected.push_str(&format!(
            "<table style=\"border-collapse:collapse;margin-top:16px\"><tr><th style=\"{cell};text-align:left\">Severity</th><th style=\"{cell};text-align:left\">Finding</th><th style=\"{cell};text-align:left\">Title</th></tr>"
        ));
        for l in lines {
            let change = l.change.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
            affected.push_str(&format!(
                "<tr><td style=\"{cell};color:#{}\">{}</td><td style=\"{cell}\"><a href=\"{}\">{}</a></td><td style=\"{cell}\">{}{}</td></tr>",
                super::summary::severity_colour(l.severity),
                esc(l.severity.as_str()),
                esc(&l.url),
                esc(&l.id),
                esc(&l.title),
                esc(&change)
            ));
        }
        if *more > 0 {
            affected.push_str(&format!("<tr><td colspan=\"3\" style=\"{cell}\">… and {more} more</td></tr>"));
        }
        affected.push_str("</table>");
    }
    let button = s
        .link
        .as_ref()
        .map(|(label, url)| {
            format!(
                "<p style=\"margin:20px 0\"><a href=\"{}\" style=\"background:#{};color:#ffffff;padding:10px 16px;border-radius:4px;text-decoration:none\">{}</a></p>",
                esc(url),
                s.colour,
                esc(label)
            )
        })
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html><html><body style=\"margin:0;font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#111827\">\
<div style=\"border-top:6px solid #{colour};padding:16px 24px\">\
<h2 style=\"margin:0 0 4px;font-size:18px\">{headline}</h2>\
<p style=\"margin:0 0 16px;color:#6b7280\">{tenant}</p>\
<table style=\"border-collapse:collapse\">{rows}</table>{affected}{button}\
<p style=\"margin-top:24px;color:#9ca3af;font-size:12px\">EntraGuard Notify</p>\
</div></body></html>",
        colour = s.colour,
        headline = esc(&s.headline()),
        tenant = esc(&s.tenant),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::samples;

    #[test]
    fn subjects_name_tenant_event_and_severity() {
        let m = render(&samples::finding_new());
        assert_eq!(
            m.subject,
            "[EntraGuard] HIGH finding in contoso.onmicrosoft.com: PIM-002 Excessive permanent privileged roles"
        );
        let m = render(&samples::scan_failed());
        assert!(
            m.subject.contains("FAILED") && m.subject.contains("contoso.onmicrosoft.com"),
            "{}",
            m.subject
        );
    }

    #[test]
    fn header_injection_and_html_injection_are_neutralised() {
        let mut e = samples::finding_new();
        if let EventBody::FindingNew { finding } = &mut e.body {
            finding.title = "x\r\nBcc: victim@example.com <img src=x onerror=alert(1)>".into();
        }
        let m = render(&e);
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        assert!(!m.html.contains("<img"), "{}", m.html);
        assert!(m.html.contains("&lt;img"));
    }
}
