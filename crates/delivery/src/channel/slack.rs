//! Slack incoming webhooks: the seed's message shape (headline `text`, one coloured attachment
//! with fields and a deep link), within Slack's limits, and Slack's answers read the way Slack
//! writes them: `200 ok`, or a bare error string whose meaning decides retry or dead letter.

use std::time::Duration;

use entraguard_core::event::Event;
use serde_json::{Value, json};

use super::summary::{Summary, summarize};
use super::text::{slack as esc, slack_plain};
use crate::outcome::Outcome;

pub fn render(event: &Event) -> Value {
    render_summary(&summarize(event), event)
}

fn render_summary(s: &Summary, event: &Event) -> Value {
    let mut text = format!("{} {} — *{}*", s.emoji, esc(&s.label), esc(&s.subject));
    if let Some(d) = &s.detail {
        text.push(' ');
        text.push_str(&esc(d));
    }
    let mut fields: Vec<Value> = s
        .facts
        .iter()
        .map(|(name, value)| json!({ "title": name, "value": esc(value), "short": value.chars().count() <= 40 }))
        .collect();
    if let Some(affected) = s.affected_text("\n") {
        fields.push(json!({ "title": "Affected", "value": esc(&affected), "short": false }));
    }
    if let Some((lines, more)) = &s.findings {
        let mut list: Vec<String> = lines
            .iter()
            .map(|l| {
                let change = l.change.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
                format!(
                    "• *{}* {} {}{}",
                    l.severity.as_str().to_uppercase(),
                    esc(&l.id),
                    esc(&l.title),
                    esc(&change)
                )
            })
            .collect();
        if *more > 0 {
            list.push(format!("… and {more} more"));
        }
        fields.push(json!({ "title": "Findings", "value": list.join("\n"), "short": false }));
    }
    let mut attachment = json!({
        "color": format!("#{}", s.colour),
        "fallback": slack_plain(&s.headline()),
        "fields": fields,
        "footer": "EntraGuard",
        "ts": event.timestamp.unix_seconds(),
    });
    if let Some((label, url)) = &s.link {
        attachment["title"] = json!(slack_plain(&format!("{label}: {}", s.subject)));
        attachment["title_link"] = json!(url);
    }
    json!({ "text": text, "attachments": [attachment] })
}

/// Slack's answers: `200 ok` delivers; the documented client errors cannot succeed on retry;
/// `429` waits for `Retry-After`; 5xx (`rollup_error`) and anything else retries.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    let error: String = body.trim().chars().take(200).collect();
    let error = if error.is_empty() { format!("HTTP {status}") } else { error };
    match status {
        200..=299 => Outcome::Delivered { status: Some(status) },
        429 => Outcome::Retryable { status: Some(status), error: format!("slack: 429 {error}"), retry_after },
        400 | 401 | 403 | 404 | 410 => Outcome::permanent(Some(status), format!("slack: {status} {error}")),
        _ => Outcome::Retryable {
            status: Some(status),
            error: format!("slack: {status} {error}"),
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::samples;

    #[test]
    fn the_seed_shape_with_colour_fields_and_link() {
        let v = render(&samples::finding_new());
        assert_eq!(
            v["text"],
            ":rotating_light: EntraGuard finding — *PIM-002 Excessive permanent privileged roles*"
        );
        let a = &v["attachments"][0];
        assert_eq!(a["color"], "#dc2626");
        let titles: Vec<&str> =
            a["fields"].as_array().expect("fields").iter().filter_map(|f| f["title"].as_str()).collect();
        assert!(titles.starts_with(&["Severity", "Tenant"]) && titles.contains(&"Affected"), "{titles:?}");
        assert_eq!(a["title_link"], "https://entraguard.example.com/api/entraguard/findings/PIM-002");
    }

    #[test]
    fn long_affected_lists_end_in_and_n_more_and_text_is_escaped() {
        let mut e = samples::finding_new();
        if let entraguard_core::event::EventBody::FindingNew { finding } = &mut e.body {
            finding.affected = (0..25).map(|i| format!("user{i}@contoso.com")).collect();
            finding.title = "<script> & friends".into();
        }
        let v = render(&e);
        let affected = v["attachments"][0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["title"] == "Affected")
            .expect("affected field")["value"]
            .as_str()
            .expect("str")
            .to_owned();
        assert!(affected.ends_with("… and 15 more"), "{affected}");
        assert!(v["text"].as_str().expect("text").contains("&lt;script&gt; &amp; friends"));
    }

    #[test]
    fn slack_answers_are_classified_as_slack_documents_them() {
        assert_eq!(classify(200, "ok", None), Outcome::Delivered { status: Some(200) });
        for (status, body) in [
            (400, "invalid_payload"),
            (400, "no_text"),
            (403, "action_prohibited"),
            (404, "channel_not_found"),
            (404, "no_service"),
            (410, "channel_is_archived"),
        ] {
            match classify(status, body, None) {
                Outcome::Permanent { error, .. } => assert!(error.contains(body), "{error}"),
                other => panic!("{status} {body} should be permanent, got {other:?}"),
            }
        }
        let ra = Some(Duration::from_secs(30));
        assert!(
            matches!(classify(429, "rate_limited", ra), Outcome::Retryable { retry_after, .. } if retry_after == ra)
        );
        assert!(matches!(classify(500, "rollup_error", None), Outcome::Retryable { .. }));
        assert!(matches!(classify(503, "", None), Outcome::Retryable { .. }));
    }
}
