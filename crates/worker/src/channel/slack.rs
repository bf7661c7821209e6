//! Slack incoming webhooks. (Placeholder being replaced by the channels work.)

use std::time::Duration;

use entraguard_core::event::Event;

use crate::outcome::Outcome;

pub fn render(event: &Event) -> serde_json::Value {
    serde_json::json!({ "text": format!("EntraGuard {}", event.kind()) })
}

pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    super::webhook::classify(status, body, retry_after)
}
