//! Renderers: pure functions from an event (and the endpoint's channel settings) to what the
//! channel sends, plus each HTTP channel's reading of its receiver's answers. No I/O here, so
//! every (channel × event kind) payload is golden-tested.

pub mod email;
pub mod slack;
pub mod summary;
pub mod teams;
pub mod text;
pub mod webhook;

#[cfg(test)]
mod golden;
#[cfg(test)]
pub(crate) mod samples;
#[cfg(test)]
mod structure;

use entraguard_core::endpoint::{Channel, Endpoint};
use entraguard_core::event::Event;

use crate::outcome::Outcome;

/// What a channel sends for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A JSON body to `POST` to the endpoint's URL.
    Json { body: Vec<u8>, style: HttpStyle },
    /// An email to the endpoint's address.
    Email(email::EmailMessage),
}

/// Which receiver's conventions an HTTP payload follows: decides how its answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpStyle {
    /// Our signed webhook: any 2xx is success.
    Webhook,
    Slack,
    Teams,
}

impl HttpStyle {
    /// Reads a receiver's answer. `retry_after` is the parsed `Retry-After` header, if any.
    pub fn classify(self, status: u16, body: &str, retry_after: Option<std::time::Duration>) -> Outcome {
        match self {
            HttpStyle::Webhook => webhook::classify(status, body, retry_after),
            HttpStyle::Slack => slack::classify(status, body, retry_after),
            HttpStyle::Teams => teams::classify(status, body, retry_after),
        }
    }
}

/// Renders `event` for `endpoint`'s channel.
pub fn render(event: &Event, endpoint: &Endpoint) -> Payload {
    match endpoint.channel {
        Channel::Webhook => webhook::render(event, endpoint),
        Channel::Slack => Payload::Json { body: json_bytes(&slack::render(event)), style: HttpStyle::Slack },
        Channel::Teams => Payload::Json {
            body: json_bytes(&teams::render(event, teams::format_for(endpoint))),
            style: HttpStyle::Teams,
        },
        Channel::Email => Payload::Email(email::render(event)),
    }
}

pub(crate) fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
