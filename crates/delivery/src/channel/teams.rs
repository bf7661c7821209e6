//! Microsoft Teams: a MessageCard for Office 365 connector URLs (`*.webhook.office.com`, as in the
//! seed) and an Adaptive Card 1.4 message for Teams Workflows URLs (`*.logic.azure.com`,
//! `*.powerplatform.com`), which replace the retired connectors. The format follows the URL
//! unless the endpoint sets it. Connector URLs report failures as `200` with an error text,
//! which is read as the failure it is.

use std::time::Duration;

use entraguard_core::endpoint::{Endpoint, TeamsFormat};
use entraguard_core::event::Event;
use serde_json::{Value, json};

use super::summary::{Summary, summarize};
// Teams renders card text as markdown (and MessageCards some HTML): event text goes through the
// text-safety layer's Teams escape, so `svc_backup` stays `svc_backup`, `&lt;b&gt;` stays that
// text and a `[label](url)` in a title is not a link.
use super::text::teams as esc;
use crate::outcome::Outcome;

/// Teams refuses messages over about 28 KB; stay well under.
pub const MAX_CARD_BYTES: usize = 24 * 1024;

fn host_of(endpoint: &Endpoint) -> String {
    endpoint.target.url().and_then(|u| u.host_str()).unwrap_or("").to_ascii_lowercase()
}

fn on(host: &str, suffix: &str) -> bool {
    host == suffix || host.ends_with(&format!(".{suffix}"))
}

fn is_connector_host(host: &str) -> bool {
    on(host, "webhook.office.com") || host == "outlook.office.com" || host == "outlook.office365.com"
}

/// The card format of a Teams endpoint: its explicit setting, else Workflows hosts get an
/// Adaptive Card and everything else (connector hosts, proxies) a MessageCard.
pub fn format_for(endpoint: &Endpoint) -> TeamsFormat {
    if let Some(f) = endpoint.teams_format {
        return f;
    }
    let host = host_of(endpoint);
    if on(&host, "logic.azure.com") || on(&host, "powerplatform.com") {
        TeamsFormat::AdaptiveCard
    } else {
        TeamsFormat::MessageCard
    }
}

/// For the generic webhook channel: a card when the URL is unmistakably a Teams connector, or
/// when the endpoint asks for one. Logic Apps and Power Automate URLs stay plain JSON there:
/// they are as often a SOAR playbook (Sentinel runs on Logic Apps) as a Teams flow; a Teams
/// Workflows URL belongs in the Teams channel, or sets its format.
pub fn format_for_webhook_url(endpoint: &Endpoint) -> Option<TeamsFormat> {
    endpoint
        .teams_format
        .or_else(|| is_connector_host(&host_of(endpoint)).then_some(TeamsFormat::MessageCard))
}

pub fn render(event: &Event, format: TeamsFormat) -> Value {
    let s = summarize(event);
    let card = match format {
        TeamsFormat::MessageCard => message_card(&s),
        TeamsFormat::AdaptiveCard => adaptive_card(&s),
    };
    if serde_json::to_vec(&card).map_or(0, |b| b.len()) <= MAX_CARD_BYTES {
        return card;
    }
    // Too large (huge fact values): keep the headline and the link, shorten every fact.
    let mut small = s.clone();
    small.facts = small.facts.into_iter().map(|(k, v)| (k, super::summary::cut(&v, 200))).collect();
    small.affected = small.affected.map(|(shown, more)| (shown.into_iter().take(3).collect(), more + 7));
    small.findings = small.findings.map(|(lines, more)| {
        let cut = lines.len().saturating_sub(10) as u64;
        (lines.into_iter().take(10).collect(), more + cut)
    });
    match format {
        TeamsFormat::MessageCard => message_card(&small),
        TeamsFormat::AdaptiveCard => adaptive_card(&small),
    }
}

fn facts(s: &Summary) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = s.facts.iter().map(|(k, v)| ((*k).to_owned(), esc(v))).collect();
    if let Some(a) = s.affected_text(", ") {
        f.push(("Affected".to_owned(), esc(&a)));
    }
    f
}

/// A digest's findings as a markdown list, one line each, then "… and N more".
fn findings_text(s: &Summary) -> Option<String> {
    let (lines, more) = s.findings.as_ref()?;
    let mut out: Vec<String> = lines.iter().map(|l| format!("- {}", esc(&l.text()))).collect();
    if *more > 0 {
        out.push(format!("- … and {more} more"));
    }
    Some(out.join("\n"))
}

fn message_card(s: &Summary) -> Value {
    let facts: Vec<Value> =
        facts(s).into_iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
    let mut card = json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "summary": s.headline(),
        "themeColor": s.colour,
        "sections": [{
            "activityTitle": esc(&s.headline()),
            "activitySubtitle": esc(&s.tenant),
            "facts": facts,
        }],
    });
    if let (Some(text), Some(sections)) = (findings_text(s), card["sections"].as_array_mut()) {
        sections.push(json!({ "title": "Findings", "text": text }));
    }
    if let Some((label, url)) = &s.link {
        card["potentialAction"] =
            json!([{ "@type": "OpenUri", "name": label, "targets": [{ "os": "default", "uri": url }] }]);
    }
    card
}

fn adaptive_card(s: &Summary) -> Value {
    // Adaptive Cards name colours instead of taking hex: map ours onto theirs.
    let colour = match s.colour {
        "dc2626" => "Attention",
        "f59e0b" => "Warning",
        "16a34a" => "Good",
        _ => "Default",
    };
    let facts: Vec<Value> =
        facts(s).into_iter().map(|(title, value)| json!({ "title": title, "value": value })).collect();
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            { "type": "TextBlock", "text": esc(&s.headline()), "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true },
            { "type": "TextBlock", "text": esc(&s.tenant), "isSubtle": true, "spacing": "None", "wrap": true },
            { "type": "FactSet", "facts": facts },
        ],
    });
    if let (Some(text), Some(body)) = (findings_text(s), content["body"].as_array_mut()) {
        body.push(json!({ "type": "TextBlock", "text": "Findings", "weight": "Bolder", "wrap": true }));
        body.push(json!({ "type": "TextBlock", "text": text, "wrap": true, "spacing": "Small" }));
    }
    if let Some((label, url)) = &s.link {
        content["actions"] = json!([{ "type": "Action.OpenUrl", "title": label, "url": url }]);
    }
    json!({
        "type": "message",
        "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": content }],
    })
}

/// Teams' answers. Connectors: `200` with body `1` delivers, but a `200` whose body says
/// "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error
/// 429" is a failure with that inner code. Workflows: `202` with an empty body delivers.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    let text: String = body.trim().chars().take(300).collect();
    let code = if (200..300).contains(&status) {
        match inner_failure_code(&text) {
            Some(inner) => inner,
            None => {
                return Outcome::Delivered { status: Some(status) };
            }
        }
    } else {
        status
    };
    let error =
        if text.is_empty() { format!("teams: HTTP {code}") } else { format!("teams: HTTP {code}: {text}") };
    match code {
        429 => Outcome::Retryable { status: Some(status), error, retry_after },
        400 | 401 | 403 | 404 | 410 | 413 => Outcome::permanent(Some(status), error),
        _ => Outcome::Retryable { status: Some(status), error, retry_after },
    }
}

/// The HTTP code inside a connector's "delivery failed" body, if the body is one.
fn inner_failure_code(body: &str) -> Option<u16> {
    let lower = body.to_ascii_lowercase();
    if !lower.contains("failed") {
        return None;
    }
    let after = lower.split("http error").nth(1).unwrap_or(&lower);
    let code = after.split(|c: char| !c.is_ascii_digit()).find(|t| t.len() == 3)?.parse().ok();
    Some(code.unwrap_or(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::samples;
    use entraguard_core::endpoint::{EndpointDraft, TargetPolicy};

    fn endpoint(channel: &str, url: &str, format: Option<&str>) -> Endpoint {
        EndpointDraft {
            name: "t".into(),
            channel: channel.into(),
            target: url.into(),
            events: vec!["finding.new".into()],
            enabled: true,
            secret: None,
            ed25519: None,
            teams_format: format.map(str::to_owned),
            rate_limit: None,
            rules: Default::default(),
        }
        .validate(TargetPolicy::default())
        .expect("valid")
    }

    #[test]
    fn format_follows_the_url_and_the_endpoint_can_override() {
        let o365 = "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456";
        let flow =
            "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x";
        assert_eq!(format_for(&endpoint("teams", o365, None)), TeamsFormat::MessageCard);
        assert_eq!(format_for(&endpoint("teams", flow, None)), TeamsFormat::AdaptiveCard);
        assert_eq!(format_for(&endpoint("teams", o365, Some("adaptive_card"))), TeamsFormat::AdaptiveCard);
        assert_eq!(format_for_webhook_url(&endpoint("webhook", o365, None)), Some(TeamsFormat::MessageCard));
        assert_eq!(
            format_for_webhook_url(&endpoint("webhook", flow, None)),
            None,
            "a Logic App may be a SOAR playbook"
        );
        assert_eq!(format_for_webhook_url(&endpoint("webhook", "https://soar.example.com/x", None)), None);
    }

    #[test]
    fn adaptive_card_is_version_1_4_and_message_card_has_the_seed_fields() {
        let a = render(&samples::finding_new(), TeamsFormat::AdaptiveCard);
        assert_eq!(a["attachments"][0]["content"]["version"], "1.4");
        assert_eq!(a["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let m = render(&samples::scan_completed(), TeamsFormat::MessageCard);
        assert_eq!(m["@type"], "MessageCard");
        assert_eq!(m["themeColor"], "16a34a");
        assert_eq!(m["sections"][0]["facts"][0]["name"], "Score");
        assert_eq!(m["sections"][0]["facts"][0]["value"], "82 / 100 (B)");
        assert_eq!(m["sections"][0]["facts"][1]["value"], "3 (1 high, 2 medium)");
    }

    #[test]
    fn markdown_in_event_text_is_escaped() {
        let mut e = samples::finding_new();
        if let entraguard_core::event::EventBody::FindingNew { finding } = &mut e.body {
            finding.affected = vec!["svc_backup".into()];
            finding.title = "[click](https://evil.example)".into();
        }
        let v = render(&e, TeamsFormat::AdaptiveCard).to_string();
        assert!(v.contains(r"svc\\_backup"), "{v}");
        assert!(v.contains(r"\\[click\\](https://evil.example)"), "{v}");
    }

    #[test]
    fn huge_events_stay_under_the_teams_size_limit() {
        let mut e = samples::finding_new();
        if let entraguard_core::event::EventBody::FindingNew { finding } = &mut e.body {
            finding.affected = (0..5000).map(|i| format!("{i}-{}", "x".repeat(180))).collect();
            finding.title = "t".repeat(4000);
            finding.category = "c".repeat(4000);
        }
        e.tenant_name = Some("n".repeat(4000));
        for f in [TeamsFormat::MessageCard, TeamsFormat::AdaptiveCard] {
            let size = serde_json::to_vec(&render(&e, f)).expect("json").len();
            assert!(size <= MAX_CARD_BYTES, "{f:?} card is {size} bytes");
        }
    }

    #[test]
    fn connector_200_with_an_error_body_is_a_failure() {
        assert_eq!(classify(200, "1", None), Outcome::Delivered { status: Some(200) });
        assert_eq!(classify(202, "", None), Outcome::Delivered { status: Some(202) });
        let r = classify(
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId abc",
            None,
        );
        assert!(matches!(r, Outcome::Retryable { .. }), "{r:?}");
        let p = classify(
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413",
            None,
        );
        assert!(matches!(p, Outcome::Permanent { .. }), "{p:?}");
        for code in [400, 401, 403, 404, 410, 413] {
            assert!(matches!(classify(code, "", None), Outcome::Permanent { .. }), "{code}");
        }
        assert!(matches!(
            classify(429, "", Some(Duration::from_secs(5))),
            Outcome::Retryable { retry_after: Some(_), .. }
        ));
        assert!(matches!(classify(502, "", None), Outcome::Retryable { .. }));
    }

    #[test]
    fn a_digest_of_fifty_long_findings_stays_within_the_card_limit() {
        let mut e = samples::finding_digest();
        if let entraguard_core::event::EventBody::FindingDigest { digest } = &mut e.body {
            for f in &mut digest.findings {
                f.title = "T".repeat(4000);
                f.id = "I".repeat(4000);
            }
        }
        for format in [TeamsFormat::MessageCard, TeamsFormat::AdaptiveCard] {
            let n = serde_json::to_vec(&render(&e, format)).expect("json").len();
            assert!(n <= MAX_CARD_BYTES, "{format:?}: {n} bytes");
        }
        let slack = serde_json::to_vec(&crate::channel::slack::render(&e)).expect("json").len();
        assert!(slack < 40_000, "slack: {slack} bytes");
    }
}
