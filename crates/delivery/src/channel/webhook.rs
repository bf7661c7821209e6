//! The custom webhook channel: the event envelope as JSON, exactly as the seed's sample shapes
//! it. A Teams URL pasted into this channel still gets a Teams card (the seed's troubleshooting
//! note), never raw JSON.

use std::time::Duration;

use entraguard_core::endpoint::Endpoint;
use entraguard_core::event::Event;

use super::{HttpStyle, Payload, teams};
use crate::outcome::Outcome;

pub fn render(event: &Event, endpoint: &Endpoint) -> Payload {
    if let Some(format) = teams::format_for_webhook_url(endpoint) {
        return Payload::Json {
            body: super::json_bytes(&teams::render(event, format)),
            style: HttpStyle::Teams,
        };
    }
    Payload::Json { body: body(event), style: HttpStyle::Webhook }
}

/// The envelope bytes: what is signed and sent.
pub fn body(event: &Event) -> Vec<u8> {
    // Room for a typical event up front: no regrowing (and copying) while writing.
    let mut out = Vec::with_capacity(TYPICAL_BODY);
    match serde_json::to_writer(&mut out, event) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// A finding event's envelope is well under this; larger ones grow the buffer as usual.
const TYPICAL_BODY: usize = 1024;

/// Any 2xx delivers; everything else is retried (the receiver may be redeploying), with
/// `Retry-After` honoured.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered { status: Some(status) };
    }
    let text: String = body.chars().take(300).collect();
    let error = if text.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", text.trim())
    };
    Outcome::Retryable { status: Some(status), error, retry_after }
}
