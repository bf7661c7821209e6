//! One message design per event kind, independent of the channel: the headline, the colour, the
//! facts and the link every channel shows. Slack, Teams and email only lay it out their way, so
//! every kind reads the same everywhere.

use entraguard_core::breaker::BreakerState;
use entraguard_core::digest::DIGEST_LISTED;
use entraguard_core::event::{Event, EventBody, Finding, Severity, SeverityCounts};

/// Longest value a fact may show; longer ones are cut with `…`.
pub const MAX_FACT: usize = 1000;
/// Most `affected` entries listed before "… and N more".
pub const MAX_AFFECTED_SHOWN: usize = 10;

/// What a message says about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Slack emoji shortcode for the headline.
    pub emoji: &'static str,
    /// Short label of the kind: "EntraGuard finding".
    pub label: String,
    /// The subject of the message: "PIM-002 Excessive permanent privileged roles".
    pub subject: String,
    /// Extra words after the subject: "(medium → high)".
    pub detail: Option<String>,
    /// Hex colour without `#`.
    pub colour: &'static str,
    pub severity: Option<Severity>,
    pub tenant: String,
    /// (name, value), in display order; values already cut to [`MAX_FACT`].
    pub facts: Vec<(&'static str, String)>,
    /// Affected entries shown (at most [`MAX_AFFECTED_SHOWN`]) and how many more there are.
    pub affected: Option<(Vec<String>, usize)>,
    /// (label, URL) of the deep link.
    pub link: Option<(&'static str, String)>,
    /// A digest's findings, most severe first, and how many more there are.
    pub findings: Option<(Vec<DigestLine>, u64)>,
}

/// One finding as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestLine {
    pub severity: Severity,
    pub id: String,
    pub title: String,
    /// "medium → high" for a severity change.
    pub change: Option<String>,
    pub url: String,
}

impl DigestLine {
    /// "HIGH PIM-002 Excessive permanent privileged roles (medium → high)".
    pub fn text(&self) -> String {
        let mut t = format!("{} {} {}", self.severity.as_str().to_uppercase(), self.id, self.title);
        if let Some(c) = &self.change {
            t.push_str(&format!(" ({c})"));
        }
        t
    }
}

/// Longest finding title a digest line shows.
pub const MAX_DIGEST_TITLE: usize = 120;

impl Summary {
    /// "EntraGuard finding — PIM-002 Excessive permanent privileged roles (medium → high)".
    pub fn headline(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} — {} {d}", self.label, self.subject),
            None => format!("{} — {}", self.label, self.subject),
        }
    }

    /// The affected list as one line: "a, b, c … and 7 more".
    pub fn affected_text(&self, separator: &str) -> Option<String> {
        let (shown, more) = self.affected.as_ref()?;
        // Cut the list, never the count: "… and N more" must survive any entry lengths.
        let mut s = cut(&shown.join(separator), MAX_FACT - 40);
        if *more > 0 {
            s.push_str(&format!("{separator}… and {more} more"));
        }
        Some(s)
    }
}

pub fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "dc2626",
        Severity::Medium => "f59e0b",
        Severity::Low => "2563eb",
        Severity::Info => "6b7280",
    }
}

const GREEN: &str = "16a34a";
const RED: &str = "dc2626";
const BLUE: &str = "0078d4";
const GREY: &str = "6b7280";

/// Cuts `s` to at most `max` characters, ending in `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn counts_text(c: &SeverityCounts) -> String {
    let parts = c.nonzero();
    if parts.is_empty() {
        return "none".to_owned();
    }
    let detail: Vec<String> = parts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} ({})", c.total(), detail.join(", "))
}

fn finding_facts(event: &Event, f: &Finding, severity: String) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Severity", severity),
        ("Tenant", event.tenant_display().to_owned()),
        ("Category", f.category.clone()),
        ("Finding", f.id.clone()),
    ];
    if let Some(scan) = &event.scan_id {
        facts.push(("Scan", scan.clone()));
    }
    facts
}

fn affected(f: &Finding) -> Option<(Vec<String>, usize)> {
    if f.affected.is_empty() {
        return None;
    }
    let shown: Vec<String> = f.affected.iter().take(MAX_AFFECTED_SHOWN).map(|a| cut(a, 200)).collect();
    Some((shown, f.affected.len().saturating_sub(MAX_AFFECTED_SHOWN)))
}

/// The design of `event`'s message.
pub fn summarize(event: &Event) -> Summary {
    let tenant = event.tenant_display().to_owned();
    let mut s = match &event.body {
        EventBody::FindingNew { finding } => Summary {
            emoji: match finding.severity {
                Severity::Critical | Severity::High => ":rotating_light:",
                Severity::Medium => ":warning:",
                Severity::Low | Severity::Info => ":information_source:",
            },
            label: "EntraGuard finding".into(),
            subject: format!("{} {}", finding.id, finding.title),
            detail: None,
            colour: severity_colour(finding.severity),
            severity: Some(finding.severity),
            tenant: tenant.clone(),
            facts: finding_facts(event, finding, finding.severity.to_string()),
            affected: affected(finding),
            link: Some(("View finding", finding.remediation_url.to_string())),
            findings: None,
        },
        EventBody::FindingSeverityChanged { finding } => {
            let prev = finding.previous_severity.unwrap_or(finding.severity);
            // Severity orders most severe first: a smaller value is more severe.
            let (emoji, verb) = if finding.severity < prev {
                (":arrow_up:", "raised")
            } else if finding.severity > prev {
                (":arrow_down:", "lowered")
            } else {
                (":left_right_arrow:", "recomputed")
            };
            Summary {
                emoji,
                label: format!("EntraGuard severity {verb}"),
                subject: format!("{} {}", finding.id, finding.title),
                detail: Some(format!("({prev} → {})", finding.severity)),
                colour: severity_colour(finding.severity),
                severity: Some(finding.severity),
                tenant: tenant.clone(),
                facts: finding_facts(event, finding, format!("{prev} → {}", finding.severity)),
                affected: affected(finding),
                link: Some(("View finding", finding.remediation_url.to_string())),
                findings: None,
            }
        }
        EventBody::ScanCompleted { scan } => Summary {
            emoji: ":white_check_mark:",
            label: "EntraGuard scan completed".into(),
            subject: scan.environment.clone(),
            detail: Some(format!("({} / 100, {})", scan.score, scan.grade)),
            colour: GREEN,
            severity: scan.new_findings.highest(),
            tenant: tenant.clone(),
            facts: vec![
                ("Score", format!("{} / 100 ({})", scan.score, scan.grade)),
                ("New findings", counts_text(&scan.new_findings)),
                ("Tenant", tenant.clone()),
                ("Scan", format!("{} ({})", scan.run_id, scan.kind)),
            ],
            affected: None,
            link: None,
            findings: None,
        },
        EventBody::ScanFailed { scan } => Summary {
            emoji: ":x:",
            label: "EntraGuard scan failed".into(),
            subject: scan.environment.clone(),
            detail: Some(format!("({})", scan.error.kind)),
            colour: RED,
            severity: None,
            tenant: tenant.clone(),
            facts: vec![
                ("Error", format!("{}: {}", scan.error.kind, scan.error.message)),
                ("Tenant", tenant.clone()),
                ("Scan", format!("{} ({})", scan.run_id, scan.kind)),
            ],
            affected: None,
            link: None,
            findings: None,
        },
        EventBody::ComplianceReportReady { report } => Summary {
            emoji: ":clipboard:",
            label: "EntraGuard compliance report".into(),
            subject: format!("{} report ready", report.framework),
            detail: Some(format!("({} / 100)", report.score)),
            colour: BLUE,
            severity: None,
            tenant: tenant.clone(),
            facts: vec![
                ("Framework", report.framework.to_string()),
                ("Score", format!("{} / 100", report.score)),
                ("Tenant", tenant.clone()),
                ("Report", report.id.clone()),
            ],
            affected: None,
            link: Some(("Open report", report.url.to_string())),
            findings: None,
        },
        EventBody::EndpointHealthChanged { endpoint } => {
            let (emoji, colour, detail) = match endpoint.state {
                BreakerState::Closed => (":large_green_circle:", GREEN, "recovered: deliveries resume"),
                BreakerState::Disabled => {
                    (":no_entry:", GREY, "disabled: deliveries kept until it is enabled")
                }
                BreakerState::Open | BreakerState::HalfOpen => {
                    (":red_circle:", RED, "failing: deliveries parked")
                }
            };
            let mut facts = vec![
                ("State", endpoint.state.to_string()),
                ("Endpoint", format!("{} ({})", endpoint.name, endpoint.id)),
                ("Parked deliveries", endpoint.parked.to_string()),
            ];
            if let Some(e) = &endpoint.last_error {
                facts.push(("Last error", e.clone()));
            }
            facts.push(("Since", endpoint.since.to_string()));
            Summary {
                emoji,
                label: "EntraGuard endpoint health".into(),
                subject: endpoint.name.clone(),
                detail: Some(format!("({detail})")),
                colour,
                severity: None,
                tenant: tenant.clone(),
                facts,
                affected: None,
                link: None,
                findings: None,
            }
        }
        EventBody::FindingDigest { digest } => {
            let highest = digest.counts.highest();
            let mut facts = vec![("Findings", counts_text(&digest.counts)), ("Tenant", tenant.clone())];
            if let Some(scan) = &event.scan_id {
                facts.push(("Scan", scan.clone()));
            }
            facts.push(("Sent because", digest.reason.as_str().to_owned()));
            // A digest lists at most DIGEST_LISTED (the worker builds it so); one made otherwise
            // still shows no more, and counts the rest.
            let listed = digest.findings.len().min(DIGEST_LISTED);
            let unlisted = u64::try_from(digest.findings.len() - listed).unwrap_or(u64::MAX);
            let lines = digest.findings[..listed]
                .iter()
                .map(|f| DigestLine {
                    severity: f.severity,
                    id: cut(&f.id, 100),
                    title: cut(&f.title, MAX_DIGEST_TITLE),
                    change: f.previous_severity.map(|p| format!("{p} → {}", f.severity)),
                    url: f.remediation_url.to_string(),
                })
                .collect();
            Summary {
                emoji: ":bookmark_tabs:",
                label: "EntraGuard findings digest".into(),
                subject: format!("{} finding{}", digest.total, if digest.total == 1 { "" } else { "s" }),
                detail: event.scan_id.as_ref().map(|s| format!("in scan {s}")),
                colour: highest.map_or(GREY, severity_colour),
                severity: highest,
                tenant: tenant.clone(),
                facts,
                affected: None,
                link: digest.scan_url.as_ref().map(|u| ("View scan", u.to_string())),
                findings: Some((lines, digest.more.saturating_add(unlisted))),
            }
        }
    };
    one_line_each(&mut s);
    s.subject = cut(&s.subject, 300);
    s.tenant = cut(&s.tenant, 200);
    s.facts = s.facts.into_iter().map(|(k, v)| (k, cut(&v, MAX_FACT))).collect();
    s
}

/// The text-safety layer's first step on every string of the summary, all of which came from
/// the event or are built around its values: one line of visible text each
/// ([`text::line`](super::text::line)). Renderers then escape for their channel.
fn one_line_each(s: &mut Summary) {
    use super::text::line;
    s.label = line(&s.label);
    s.subject = line(&s.subject);
    s.detail = s.detail.as_deref().map(line);
    s.tenant = line(&s.tenant);
    for (_, v) in &mut s.facts {
        *v = line(v);
    }
    if let Some((shown, _)) = &mut s.affected {
        for a in shown {
            *a = line(a);
        }
    }
    if let Some((lines, _)) = &mut s.findings {
        for l in lines {
            l.id = line(&l.id);
            l.title = line(&l.title);
            l.change = l.change.as_deref().map(line);
            l.url = line(&l.url);
        }
    }
    if let Some((_, url)) = &mut s.link {
        *url = line(url);
    }
}
