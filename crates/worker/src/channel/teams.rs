//! Microsoft Teams. (Placeholder being replaced by the channels work.)

use std::time::Duration;

use entraguard_core::endpoint::{Endpoint, TeamsFormat};
use entraguard_core::event::Event;

use crate::outcome::Outcome;

pub fn render(event: &Event, _format: TeamsFormat) -> serde_json::Value {
    serde_json::json!({ "@type": "MessageCard", "summary": format!("EntraGuard {}", event.kind()) })
}

pub fn format_for(endpoint: &Endpoint) -> TeamsFormat {
    endpoint.teams_format.unwrap_or(TeamsFormat::MessageCard)
}

pub fn format_for_webhook_url(_endpoint: &Endpoint) -> Option<TeamsFormat> {
    None
}

pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    super::webhook::classify(status, body, retry_after)
}
