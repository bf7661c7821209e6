//! Email messages. (Placeholder being replaced by the channels work.)

use entraguard_core::event::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn render(event: &Event) -> EmailMessage {
    EmailMessage {
        subject: format!("EntraGuard {}", event.kind()),
        text: String::new(),
        html: String::new(),
    }
}
