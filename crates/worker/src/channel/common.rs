//! What every human-facing channel (Slack, Teams, email) says about an event, before any markup:
//! the headline, the colour, the facts, the deep link, and the text-shortening rules. Each
//! renderer escapes these for its own markup; keeping the wording here keeps the channels alike.

use std::borrow::Cow;

use entraguard_core::event::{
    Event, EventBody, EventKind, Finding, ScanErrorKind, ScanKind, Severity, SeverityCounts,
};

/// The colour family of an event: a finding's severity, or what happened to a scan or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Critical,
    High,
    Medium,
    Low,
    Info,
    /// scan.completed
    Success,
    /// scan.failed
    Failure,
    /// compliance.report_ready: news, not an alarm.
    Notice,
}

impl Tone {
    pub(crate) fn of(event: &Event) -> Tone {
        match &event.body {
            EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
                match finding.severity {
                    Severity::Critical => Tone::Critical,
                    Severity::High => Tone::High,
                    Severity::Medium => Tone::Medium,
                    Severity::Low => Tone::Low,
                    Severity::Info => Tone::Info,
                }
            }
            EventBody::ScanCompleted { .. } => Tone::Success,
            EventBody::ScanFailed { .. } => Tone::Failure,
            EventBody::ComplianceReportReady { .. } => Tone::Notice,
        }
    }

    /// The accent colour, `#rrggbb` (spec §3: critical and high red, medium amber, low blue,
    /// info grey, completed green, failed red; reports in the seed's Teams blue).
    pub(crate) fn hex(self) -> &'static str {
        match self {
            Tone::Critical | Tone::High | Tone::Failure => "#dc2626",
            Tone::Medium => "#f59e0b",
            Tone::Low => "#2563eb",
            Tone::Info => "#6b7280",
            Tone::Success => "#16a34a",
            Tone::Notice => "#0078d4",
        }
    }

    /// A darker shade of [`Tone::hex`] for text on white: amber and green text at the accent
    /// shade are too faint to read (WCAG contrast), so text gets its own colour.
    pub(crate) fn ink(self) -> &'static str {
        match self {
            Tone::Critical | Tone::High | Tone::Failure => "#b91c1c",
            Tone::Medium => "#b45309",
            Tone::Low => "#1d4ed8",
            Tone::Info => "#4b5563",
            Tone::Success => "#15803d",
            Tone::Notice => "#005a9e",
        }
    }

    /// Whether this event calls for attention now (Teams' `attention` colour, Slack's siren).
    pub(crate) fn is_alarm(self) -> bool {
        matches!(self, Tone::Critical | Tone::High | Tone::Failure)
    }
}

/// Which way a `finding.severity_changed` went. [`Severity`] sorts most severe first, so a
/// smaller new severity is an escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
    /// Recomputed to the same level, or the previous level is unknown.
    Same,
}

pub(crate) fn direction(finding: &Finding) -> Direction {
    match finding.previous_severity {
        Some(prev) if finding.severity < prev => Direction::Up,
        Some(prev) if finding.severity > prev => Direction::Down,
        _ => Direction::Same,
    }
}

/// An event's headline in three parts, plain text, so each channel can emphasise the subject
/// its own way: `lead — subject: detail`, e.g. "Scan completed — Contoso production: 82/100 (B)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Headline {
    /// Our own words (never event text): safe in any markup.
    pub lead: String,
    /// Event text (a finding's id and title, an environment name), one line, shortened.
    pub subject: String,
    /// A short outcome (score, severity move, error), partly event text.
    pub detail: Option<String>,
}

impl Headline {
    pub(crate) fn of(event: &Event, subject_chars: usize) -> Headline {
        let subject = |s: &str| truncate(&one_line(s), subject_chars).into_owned();
        match &event.body {
            EventBody::FindingNew { finding } => Headline {
                lead: format!("New {} finding", finding.severity),
                subject: subject(&finding_name(finding)),
                detail: None,
            },
            EventBody::FindingSeverityChanged { finding } => Headline {
                lead: match direction(finding) {
                    Direction::Up => "Finding escalated",
                    Direction::Down => "Finding downgraded",
                    Direction::Same => "Finding severity recomputed",
                }
                .to_owned(),
                subject: subject(&finding_name(finding)),
                detail: Some(severity_move(finding)),
            },
            EventBody::ScanCompleted { scan } => Headline {
                lead: "Scan completed".to_owned(),
                subject: subject(&scan.environment),
                detail: Some(format!(
                    "{}/100 ({}), {}",
                    scan.score,
                    scan.grade,
                    new_findings_phrase(&scan.new_findings)
                )),
            },
            EventBody::ScanFailed { scan } => Headline {
                lead: "Scan failed".to_owned(),
                subject: subject(&scan.environment),
                detail: Some(error_summary(scan.error.kind).to_owned()),
            },
            EventBody::ComplianceReportReady { report } => Headline {
                lead: "Compliance report ready".to_owned(),
                subject: report.framework.to_string(),
                detail: Some(format!("{}/100", report.score)),
            },
        }
    }

    /// `lead — subject`, the title of a card.
    pub(crate) fn title(&self) -> String {
        format!("{} — {}", self.lead, self.subject)
    }
}

/// `PIM-002 Excessive permanent privileged roles`
pub(crate) fn finding_name(finding: &Finding) -> String {
    format!("{} {}", finding.id, finding.title)
}

/// `medium → high`, or just `high` when there is no previous level.
pub(crate) fn severity_move(finding: &Finding) -> String {
    match finding.previous_severity {
        Some(prev) => format!("{prev} → {}", finding.severity),
        None => finding.severity.to_string(),
    }
}

/// `3 (1 high, 2 medium)`, or `none`.
pub(crate) fn counts_text(counts: &SeverityCounts) -> String {
    let parts: Vec<String> = counts
        .nonzero()
        .iter()
        .map(|(sev, n)| format!("{n} {sev}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        format!("{} ({})", counts.total(), parts.join(", "))
    }
}

/// `3 new findings`, `1 new finding`, `no new findings`.
pub(crate) fn new_findings_phrase(counts: &SeverityCounts) -> String {
    match counts.total() {
        0 => "no new findings".to_owned(),
        1 => "1 new finding".to_owned(),
        n => format!("{n} new findings"),
    }
}

/// What a scan error kind means to the person reading the alert.
pub(crate) fn error_summary(kind: ScanErrorKind) -> &'static str {
    match kind {
        ScanErrorKind::GraphThrottled => "Microsoft Graph throttled the scan",
        ScanErrorKind::TokenExpired => "access token expired",
        ScanErrorKind::Network => "network error",
        ScanErrorKind::Internal => "internal error",
    }
}

fn scan_kind_text(kind: ScanKind) -> &'static str {
    match kind {
        ScanKind::Full => "full",
        ScanKind::Incremental => "incremental",
    }
}

/// One labelled value of a message. Values are plain text (the renderer escapes them); `short`
/// is Slack's hint that two fit side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fact {
    pub name: &'static str,
    pub value: String,
    pub short: bool,
}

fn fact(name: &'static str, value: impl Into<String>, short: bool) -> Fact {
    Fact {
        name,
        value: value.into(),
        short,
    }
}

/// The name of the tenant fact, so a channel that shows the tenant elsewhere can skip it.
pub(crate) const TENANT: &str = "Tenant";

/// The facts of an event, most telling first; a finding's affected list is not among them
/// (each channel lists it its own way, see [`shown`]). Every value is one line of at most
/// `text_chars` characters, except a failed scan's message, which keeps its line breaks.
pub(crate) fn facts(event: &Event, text_chars: usize) -> Vec<Fact> {
    let short = |s: &str| truncate(&one_line(s), text_chars).into_owned();
    let tenant = fact(TENANT, short(event.tenant_display()), true);
    let scan_id = event
        .scan_id
        .as_deref()
        .map(|id| fact("Scan", short(id), true));
    match &event.body {
        EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
            let severity = if event.kind() == EventKind::FindingNew {
                finding.severity.to_string()
            } else {
                severity_move(finding)
            };
            let mut out = vec![
                fact("Severity", severity, true),
                tenant,
                fact("Finding", short(&finding.id), true),
                fact("Category", short(&finding.category), true),
            ];
            out.extend(scan_id);
            out
        }
        EventBody::ScanCompleted { scan } => vec![
            fact(
                "Score",
                format!("{} / 100 ({})", scan.score, scan.grade),
                true,
            ),
            fact("New findings", counts_text(&scan.new_findings), true),
            tenant,
            fact("Environment", short(&scan.environment), true),
            fact("Run id", short(&scan.run_id), true),
            fact("Scan type", scan_kind_text(scan.kind), true),
        ],
        EventBody::ScanFailed { scan } => vec![
            fact("Error", scan.error.kind.to_string(), true),
            tenant,
            fact("Environment", short(&scan.environment), true),
            fact("Run id", short(&scan.run_id), true),
            fact("Scan type", scan_kind_text(scan.kind), true),
            fact(
                "Message",
                truncate(scan.error.message.trim(), text_chars).into_owned(),
                false,
            ),
        ],
        EventBody::ComplianceReportReady { report } => vec![
            fact("Framework", report.framework.to_string(), true),
            fact("Score", format!("{} / 100", report.score), true),
            tenant,
            fact("Report", short(&report.id), true),
        ],
    }
}

/// The one place a message links to, with the words for its button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link<'a> {
    pub label: &'static str,
    pub url: &'a str,
}

/// The finding's remediation page or the report; scans carry no link. Only `http(s)` URLs are
/// linked: core validates this at the edge, and a renderer must not turn anything else (a
/// `javascript:` URL, say) into a clickable button if an unvalidated event ever gets here.
pub(crate) fn link(event: &Event) -> Option<Link<'_>> {
    let (label, url) = match &event.body {
        EventBody::FindingNew { finding } | EventBody::FindingSeverityChanged { finding } => {
            ("View finding", &finding.remediation_url)
        }
        EventBody::ComplianceReportReady { report } => ("Open report", &report.url),
        EventBody::ScanCompleted { .. } | EventBody::ScanFailed { .. } => return None,
    };
    matches!(url.scheme(), "https" | "http").then_some(Link {
        label,
        url: url.as_str(),
    })
}

/// The finding's affected entries, or none for other kinds.
pub(crate) fn affected(event: &Event) -> &[String] {
    event.finding().map_or(&[], |f| f.affected.as_slice())
}

/// Control characters and line breaks become single spaces: for titles, subjects and list
/// entries, where a newline from the input would break the layout (or an email header).
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() || c.is_control() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// At most `max` characters: a longer `s` is cut and ends in `…` (which counts as one).
pub(crate) fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    Cow::Owned(format!("{}…", kept.trim_end()))
}

/// How much of a list a channel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListLimits {
    /// Most entries shown.
    pub items: usize,
    /// Longest entry, in characters, before escaping.
    pub item_chars: usize,
    /// The shown entries together (escaped, with a separator allowance) stay under this.
    pub total_chars: usize,
}

/// What of a list fits: the entries, already one-line, shortened and escaped, and how many
/// were left out (render them as [`more_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub items: Vec<String>,
    pub more: usize,
}

impl Shown {
    /// The entries and, when some were left out, a last "… and N more" entry.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out = self.items.clone();
        if self.more > 0 {
            out.push(more_text(self.more));
        }
        out
    }
}

/// The "… and N more" that ends a shortened list.
pub(crate) fn more_text(n: usize) -> String {
    format!("… and {n} more")
}

/// Room kept for the separator between two shown entries.
const SEPARATOR_ALLOWANCE: usize = 2;
/// Room kept for "… and N more" (N up to 10 000, the event limit).
const MORE_ALLOWANCE: usize = 20;

/// Takes entries from the front of `items` while they fit `limits`. The first entry is always
/// shown (shortened to `item_chars`), so a list is never reduced to just "… and N more".
pub(crate) fn shown(items: &[String], limits: ListLimits, escape: impl Fn(&str) -> String) -> Shown {
    let mut out = Vec::new();
    let mut used = 0;
    for (i, item) in items.iter().enumerate() {
        if out.len() >= limits.items {
            break;
        }
        let entry = escape(&truncate(&one_line(item), limits.item_chars));
        let len = entry.chars().count() + SEPARATOR_ALLOWANCE;
        // Reserve room for "… and N more" unless this is the last entry.
        let reserve = if i + 1 < items.len() {
            MORE_ALLOWANCE
        } else {
            0
        };
        if !out.is_empty() && used + len + reserve > limits.total_chars {
            break;
        }
        used += len;
        out.push(entry);
    }
    let more = items.len() - out.len();
    Shown { items: out, more }
}

/// Lower-cases the first letter, to run a lead on in a sentence: "Scan completed" → "scan
/// completed".
pub(crate) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::samples;

    fn plain(s: &str) -> String {
        s.to_owned()
    }

    fn list(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("user{i}@contoso.com")).collect()
    }

    const TEN: ListLimits = ListLimits {
        items: 10,
        item_chars: 200,
        total_chars: 1000,
    };

    #[test]
    fn short_lists_are_shown_whole() {
        let s = shown(&list(3), TEN, plain);
        assert_eq!(s.items.len(), 3);
        assert_eq!(s.more, 0);
        assert_eq!(s.lines().len(), 3);
        let s = shown(&[], TEN, plain);
        assert!(s.items.is_empty() && s.more == 0);
    }

    #[test]
    fn long_lists_end_in_and_n_more() {
        let s = shown(&list(25), TEN, plain);
        assert_eq!(s.items.len(), 10);
        assert_eq!(s.more, 15);
        assert_eq!(
            s.lines().last().map(String::as_str),
            Some("… and 15 more")
        );
    }

    #[test]
    fn a_list_of_long_entries_stops_at_the_character_budget() {
        let items: Vec<String> = (0..50).map(|i| format!("{i:03}{}", "x".repeat(300))).collect();
        let s = shown(&items, TEN, plain);
        // Each entry is cut to 200 characters; four of them and the "more" line fit in 1000.
        assert!(s.items.iter().all(|i| i.chars().count() == 200), "{s:?}");
        assert_eq!(s.items.len(), 4);
        assert_eq!(s.more, 46);
        let total: usize = s.lines().iter().map(|l| l.chars().count() + 1).sum();
        assert!(total <= 1000, "{total}");
    }

    #[test]
    fn the_first_entry_is_always_shown() {
        let items = vec!["y".repeat(5000), "z".into()];
        let tiny = ListLimits {
            items: 10,
            item_chars: 50,
            total_chars: 10,
        };
        let s = shown(&items, tiny, plain);
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.items[0].chars().count(), 50);
        assert_eq!(s.more, 1);
    }

    #[test]
    fn entries_are_one_line_and_escaped_after_cutting() {
        let items = vec!["a\nb\t c".to_owned(), "R&D".to_owned()];
        let s = shown(&items, TEN, |t| t.replace('&', "&amp;"));
        assert_eq!(s.items, vec!["a b c", "R&amp;D"]);
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 6), "héllo…");
        assert_eq!(truncate("ab", 0), "…");
    }

    #[test]
    fn one_line_folds_breaks_and_controls() {
        assert_eq!(one_line("  a\r\n\r\nb\tc \u{7}d "), "a b c d");
    }

    #[test]
    fn severity_direction_follows_the_ordering() {
        let mut f = samples::finding();
        f.previous_severity = Some(Severity::Medium);
        f.severity = Severity::Critical;
        assert_eq!(direction(&f), Direction::Up);
        f.severity = Severity::Low;
        assert_eq!(direction(&f), Direction::Down);
        f.severity = Severity::Medium;
        assert_eq!(direction(&f), Direction::Same);
        f.previous_severity = None;
        assert_eq!(direction(&f), Direction::Same);
    }

    #[test]
    fn colours_follow_the_spec() {
        let hex = |e: &Event| Tone::of(e).hex();
        assert_eq!(hex(&samples::scan_completed()), "#16a34a");
        assert_eq!(hex(&samples::scan_failed()), "#dc2626");
        assert_eq!(hex(&samples::finding_new()), "#dc2626");
        let mut e = samples::finding_new();
        for (sev, want) in [
            (Severity::Critical, "#dc2626"),
            (Severity::Medium, "#f59e0b"),
            (Severity::Low, "#2563eb"),
            (Severity::Info, "#6b7280"),
        ] {
            if let EventBody::FindingNew { finding } = &mut e.body {
                finding.severity = sev;
            }
            assert_eq!(hex(&e), want, "{sev}");
        }
    }

    #[test]
    fn non_http_links_are_not_linked() {
        let mut e = samples::finding_new();
        if let EventBody::FindingNew { finding } = &mut e.body {
            finding.remediation_url = "javascript:alert(1)".parse().expect("url");
        }
        assert_eq!(link(&e), None);
        assert!(link(&samples::finding_new()).is_some());
        assert_eq!(link(&samples::scan_completed()), None);
    }

    #[test]
    fn counts_read_naturally() {
        let c = SeverityCounts {
            high: 1,
            medium: 2,
            ..Default::default()
        };
        assert_eq!(counts_text(&c), "3 (1 high, 2 medium)");
        assert_eq!(counts_text(&SeverityCounts::default()), "none");
        assert_eq!(new_findings_phrase(&c), "3 new findings");
    }
}
